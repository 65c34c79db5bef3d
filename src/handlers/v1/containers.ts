// v1 container RPCs.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';
import { parseJsonField } from '../json';
import { DEFAULT_REMOVE_TIMEOUT_S, formatProcessList } from './defaults';
import { storageFromV1 } from './sandbox';

type Group =
  | 'CreateContainer' | 'StartContainer' | 'RemoveContainer' | 'PauseContainer' | 'ResumeContainer'
  | 'UpdateContainer' | 'StatsContainer' | 'ListProcesses';

export function containerHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { sandbox } = core;
  return {
    CreateContainer: rpc.unary(async (req) => {
      const spec = parseJsonField('oci_spec_json', req.oci_spec_json);
      await sandbox.createContainer(req.container_id, req.exec_id || req.container_id, spec, req.storages.map(storageFromV1));
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
    StatsContainer: rpc.unary(async (req) => {
      const s = await sandbox.container(req.container_id).stats();
      return {
        cpu: { usage_usec: s.cpu.usageUsec, user_usec: s.cpu.userUsec, system_usec: s.cpu.systemUsec },
        memory: { usage_bytes: s.memory.usageBytes, limit_bytes: s.memory.limitBytes },
        pids: s.pids,
        cgroup_path: s.cgroupPath,
      };
    }),
    ListProcesses: rpc.unary(async (req) => ({
      process_list: formatProcessList(req.format, await sandbox.container(req.container_id).processes()),
    })),
  } satisfies Pick<AgentV1Handlers, Group>;
}
