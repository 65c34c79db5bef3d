// v1 container RPCs.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';
import { parseJsonField } from '../json';
import { DEFAULT_REMOVE_TIMEOUT_S, formatProcessList } from './defaults';
import { statsToWire, storageFromWire } from '../common-wire';

type Group =
  | 'CreateContainer' | 'StartContainer' | 'RemoveContainer' | 'PauseContainer' | 'ResumeContainer'
  | 'UpdateContainer' | 'StatsContainer' | 'ListProcesses';

export function containerHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { sandbox } = core;
  return {
    CreateContainer: rpc.unary(async (req) => {
      const spec = parseJsonField('oci_spec_json', req.oci_spec_json);
      await sandbox.createContainer(req.container_id, req.exec_id || req.container_id, spec, req.storages.map(storageFromWire));
      return {};
    }),
    StartContainer: rpc.unary(async (req) => {
      await sandbox.container(req.container_id).start();
      return {};
    }),
    RemoveContainer: rpc.unary(async (req) => {
      await sandbox.removeContainer(req.container_id, req.timeout || DEFAULT_REMOVE_TIMEOUT_S);
      return {};
    }),
    PauseContainer: rpc.unary(async (req) => {
      await sandbox.container(req.container_id).pause();
      return {};
    }),
    ResumeContainer: rpc.unary(async (req) => {
      await sandbox.container(req.container_id).resume();
      return {};
    }),
    UpdateContainer: rpc.unary(async (req) => {
      await sandbox.container(req.container_id).update(parseJsonField('resources_json', req.resources_json));
      return {};
    }),
    StatsContainer: rpc.unary(async (req) => statsToWire(await sandbox.container(req.container_id).stats())),
    ListProcesses: rpc.unary(async (req) => ({
      process_list: formatProcessList(req.format, await sandbox.container(req.container_id).processes()),
    })),
  } satisfies Pick<AgentV1Handlers, Group>;
}
