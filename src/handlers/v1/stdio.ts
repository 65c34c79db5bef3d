// v1 stdio RPCs: polled reads and writes.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';

/** Most bytes one Read call returns, whatever the client asks for. */
const MAX_READ = 1024 * 1024;

export function stdioHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { sandbox } = core;
  const read = async (req: { container_id: string; exec_id: string; len: number }, stream: 'stdout' | 'stderr', signal: AbortSignal) => ({
    data: await sandbox.container(req.container_id).readOutput(req.exec_id, stream, Math.min(req.len || MAX_READ, MAX_READ), signal),
  });
  return {
    WriteStdin: rpc.unary(async (req) => ({
      len: await sandbox.container(req.container_id).process(req.exec_id).io.writeStdin(req.data),
    })),
    ReadStdout: rpc.unary((req, ctx) => read(req, 'stdout', ctx.signal)),
    ReadStderr: rpc.unary((req, ctx) => read(req, 'stderr', ctx.signal)),
    CloseStdin: rpc.unary((req) => {
      sandbox.container(req.container_id).process(req.exec_id).io.closeStdin();
      return {};
    }),
    TtyWinResize: rpc.unary((req) => {
      sandbox.container(req.container_id).process(req.exec_id).io.resize(req.column, req.row);
      return {};
    }),
  } satisfies Pick<AgentV1Handlers, 'WriteStdin' | 'ReadStdout' | 'ReadStderr' | 'CloseStdin' | 'TtyWinResize'>;
}
