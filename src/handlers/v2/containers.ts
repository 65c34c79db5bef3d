// v2 container RPCs, with snapshots of what a container holds (ListContainers,
// GetContainer, and the ContainerInfo CreateContainer answers).
import type { AgentCore } from '../../agent/core';
import { snapshotContainer } from '../../agent/core/snapshot';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { parseJsonField } from '../json';
import { statsToWire, storageFromWire } from '../common-wire';
import { containerInfoToV2, initExecIdOf, removeTimeoutOf } from './conversions';
import { mutatingCalls } from './requests';

type Group =
  | 'CreateContainer' | 'StartContainer' | 'RemoveContainer' | 'PauseContainer' | 'ResumeContainer'
  | 'UpdateContainer' | 'StatsContainer' | 'ListProcesses' | 'ListContainers' | 'GetContainer';

export function containerHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { sandbox } = core;
  const once = mutatingCalls(core, rpc);
  return {
    CreateContainer: once('CreateContainer', async (req) => {
      const spec = parseJsonField('oci_spec_json', req.oci_spec_json);
      const container = await sandbox.createContainer(req.container_id, initExecIdOf(req), spec, req.storages.map(storageFromWire));
      return { container: containerInfoToV2(snapshotContainer(container)) };
    }),
    StartContainer: once('StartContainer', async (req) => {
      await sandbox.container(req.container_id).start();
      return {};
    }),
    RemoveContainer: once('RemoveContainer', async (req) => {
      await sandbox.removeContainer(req.container_id, removeTimeoutOf(req.timeout_seconds));
      return {};
    }),
    PauseContainer: once('PauseContainer', async (req) => {
      await sandbox.container(req.container_id).pause();
      return {};
    }),
    ResumeContainer: once('ResumeContainer', async (req) => {
      await sandbox.container(req.container_id).resume();
      return {};
    }),
    UpdateContainer: once('UpdateContainer', async (req) => {
      await sandbox.container(req.container_id).update(parseJsonField('resources_json', req.resources_json));
      return {};
    }),
    StatsContainer: rpc.unary(async (req) => statsToWire(await sandbox.container(req.container_id).stats())),
    ListProcesses: rpc.unary(async (req) => ({ processes: await sandbox.container(req.container_id).processes() })),
    ListContainers: rpc.unary(() => ({ containers: sandbox.list().map((c) => containerInfoToV2(snapshotContainer(c))) })),
    GetContainer: rpc.unary((req) => ({ container: containerInfoToV2(snapshotContainer(sandbox.container(req.container_id))) })),
  } satisfies Pick<AgentV2Handlers, Group>;
}
