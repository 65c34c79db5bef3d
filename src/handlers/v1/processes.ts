// v1 process RPCs: exec, signal, wait.
import type { AgentCore } from '../../agent/core';
import { shellStatus } from '../../agent/process/exit-status';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';

export function processHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { sandbox } = core;
  return {
    ExecProcess: rpc.unary(async (req) => {
      await sandbox.container(req.container_id).exec(req.exec_id, req.oci_process_json);
      return {};
    }),
    SignalProcess: rpc.unary((req) => {
      sandbox.container(req.container_id).signal(req.exec_id, req.signal);
      return {};
    }),
    WaitProcess: rpc.unary(async (req, ctx) => {
      const status = await sandbox.container(req.container_id).wait(req.exec_id, ctx.signal);
      return { status: shellStatus(status) };
    }),
  } satisfies Pick<AgentV1Handlers, 'ExecProcess' | 'SignalProcess' | 'WaitProcess'>;
}
