// v2 process RPCs: exec, signal, wait (the status is kept) and release (the
// client has what it wanted: the agent may forget the process). Exec ids
// are exact: an empty one names no process.
import type { AgentCore } from '../../agent/core';
import { snapshotProcess } from '../../agent/core/snapshot';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { parseJsonField } from '../json';
import { exitStatusToV2, isV2Reader, processInfoToV2 } from './conversions';
import { mutatingCalls } from './requests';

export function processHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { sandbox } = core;
  const once = mutatingCalls(core, rpc);
  return {
    ExecProcess: once('ExecProcess', async (req) => {
      const proc = await sandbox.container(req.container_id).exec(req.exec_id, parseJsonField('oci_process_json', req.oci_process_json));
      return { process: processInfoToV2(snapshotProcess(proc)) };
    }),
    SignalProcess: once('SignalProcess', (req) => {
      sandbox.container(req.container_id).signal(req.exec_id, req.signal);
      return {};
    }),
    WaitProcess: rpc.unary(async (req, ctx) => {
      const status = await sandbox.container(req.container_id).exitOf(req.exec_id, ctx.signal);
      return { status: exitStatusToV2(status) };
    }),
    // The client has what it wanted: the status, and the output for every v2 reader (v1's reads on).
    ReleaseProcess: once('ReleaseProcess', (req) => {
      const container = sandbox.container(req.container_id);
      const proc = container.process(req.exec_id);
      // Readers first: acknowledging may forget the process.
      container.finishReaders(req.exec_id, isV2Reader);
      proc.acknowledge();
      return {};
    }),
  } satisfies Pick<AgentV2Handlers, 'ExecProcess' | 'SignalProcess' | 'WaitProcess' | 'ReleaseProcess'>;
}
