// v1 process RPCs: exec, signal, wait.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';
import { parseJsonField } from '../json';
import { execIdOf } from './defaults';
import { shellStatus } from './conversions';

export function processHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { sandbox } = core;
  return {
    ExecProcess: rpc.unary(async (req) => {
      await sandbox.container(req.container_id).exec(req.exec_id, parseJsonField('oci_process_json', req.oci_process_json));
      return {};
    }),
    SignalProcess: rpc.unary((req) => {
      const c = sandbox.container(req.container_id);
      c.signal(execIdOf(c, req.exec_id), req.signal);
      return {};
    }),
    WaitProcess: rpc.unary(async (req, ctx) => {
      const c = sandbox.container(req.container_id);
      const status = await c.wait(execIdOf(c, req.exec_id), ctx.signal);
      return { status: shellStatus(status) };
    }),
  } satisfies Pick<AgentV1Handlers, 'ExecProcess' | 'SignalProcess' | 'WaitProcess'>;
}
