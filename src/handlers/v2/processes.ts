// v2 process RPCs: exec, signal, wait (the status is kept) and release (the
// client has what it wanted: the agent may forget the process). Exec ids
// are exact: an empty one names no process.
import type { AgentCore } from '../../agent/core';
import { snapshotProcess } from '../../agent/core/snapshot';
import { failedPrecondition } from '../../agent/errors';
import type { ContainerProcess } from '../../agent/process/container-process';
import type { ExitStatus } from '../../agent/process/exit-status';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { parseJsonField } from '../json';
import { exitStatusToV2, processInfoToV2 } from './conversions';
import type { V2Readers } from './readers';
import { mutatingCalls } from './requests';

/**
 * The exit status record once the process has exited, without collecting
 * it (v1's WaitProcess collects; v2 keeps the process until ReleaseProcess).
 * A cancelled call stops waiting: FAILED_PRECONDITION, as v1's.
 */
function exitOf(proc: ContainerProcess, signal: AbortSignal): Promise<ExitStatus> {
  const exited = proc.exited();
  if (!exited) throw failedPrecondition(`process ${proc.execId} in container ${proc.containerId} was never started`);
  return new Promise<ExitStatus>((resolve, reject) => {
    const onAbort = () => reject(failedPrecondition(`wait for ${proc.execId} in ${proc.containerId} was cancelled or timed out`));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    exited.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

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
      const status = await exitOf(sandbox.container(req.container_id).process(req.exec_id), ctx.signal);
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
