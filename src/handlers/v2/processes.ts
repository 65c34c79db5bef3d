// v2 process RPCs: exec, signal, wait (the status is kept) and release (the
// client has what it wanted: the agent may forget the process). Exec ids
// are exact: an empty one names no process.
import type { AgentCore } from '../../agent/core';
import { snapshotProcess } from '../../agent/core/snapshot';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { parseJsonField } from '../json';
import { exitStatusToV2, processInfoToV2 } from './conversions';
import type { V2Readers } from './readers';
import { mutatingCalls } from './requests';

export function processHandlers(core: AgentCore, rpc: RpcBoundary, readers: V2Readers) {
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
    ReleaseProcess: once('ReleaseProcess', async (req, ctx) => {
      const container = sandbox.container(req.container_id);
      const proc = container.process(req.exec_id);
      proc.acknowledge();
      await readers.finish(container, proc, ctx.signal, ctx.log);
      return {};
    }),
  } satisfies Pick<AgentV2Handlers, 'ExecProcess' | 'SignalProcess' | 'WaitProcess' | 'ReleaseProcess'>;
}
