// v1 stdio RPCs: polled reads and writes.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';
import { execIdOf } from './defaults';

/** Most bytes one Read call returns, whatever the client asks for. */
const MAX_READ = 1024 * 1024;
/**
 * v1 reads as one reader with its own place in each stream: a Read returns
 * the next bytes (each once, whoever of v1's clients asks), an empty answer
 * at end of stream. Other readers (v2's) have places of their own.
 */
const READER = 'v1';

export function stdioHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { sandbox } = core;
  /** The container and the process v1 means (an empty exec id: the init). */
  const target = (req: { container_id: string; exec_id: string }) => {
    const container = sandbox.container(req.container_id);
    return { container, execId: execIdOf(container, req.exec_id) };
  };
  const processOf = (req: { container_id: string; exec_id: string }) => {
    const { container, execId } = target(req);
    return container.process(execId);
  };
  const read = async (req: { container_id: string; exec_id: string; len: number }, stream: 'stdout' | 'stderr', signal: AbortSignal) => {
    const { container, execId } = target(req);
    const chunk = await container.readOutput(execId, stream, READER, 'next', Math.min(req.len || MAX_READ, MAX_READ), signal);
    return { data: chunk.data };
  };
  return {
    WriteStdin: rpc.unary(async (req) => ({
      len: await processOf(req).io.writeStdin(req.data),
    })),
    ReadStdout: rpc.unary((req, ctx) => read(req, 'stdout', ctx.signal)),
    ReadStderr: rpc.unary((req, ctx) => read(req, 'stderr', ctx.signal)),
    CloseStdin: rpc.unary((req) => {
      processOf(req).io.closeStdin();
      return {};
    }),
    TtyWinResize: rpc.unary((req) => {
      processOf(req).io.resize(req.column, req.row);
      return {};
    }),
  } satisfies Pick<AgentV1Handlers, 'WriteStdin' | 'ReadStdout' | 'ReadStderr' | 'CloseStdin' | 'TtyWinResize'>;
}
