// v2 stdio RPCs: output as a stream from a byte offset (with acknowledgements
// for clients that ask to release nothing unacknowledged), input written at
// an offset, terminal resize. Exec ids are exact.
import type { AgentCore } from '../../agent/core';
import type { ProcessIO } from '../../agent/process/process-io';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { chunkBytesOf, MAX_CHUNK_BYTES, readerOf, streamFromV2 } from './conversions';
import { mutatingCalls } from './requests';

/**
 * How far behind the bytes it has sent a stream without acknowledged_only
 * keeps its reader: bytes handed to gRPC may still be in flight (HTTP/2 and
 * socket buffers) when a connection breaks, and a client resuming from what
 * it received must find them held. A quarter of the output window (at most
 * 256 KiB), so a stream waiting at the end never holds enough to pause the
 * process. (A client that stopped taking messages can hold more than that:
 * acknowledged_only is the way to lose nothing.)
 */
export const heldBehind = (outputBufferBytes: number): number => Math.min(256 * 1024, Math.floor(outputBufferBytes / 4));

/** ReadOutput's bytes not yet handed to HTTP/2: about one largest chunk ahead of the connection, so the stream is always busy and never far ahead. */
const SEND_AHEAD = { budget: 4 * MAX_CHUNK_BYTES, sizeOf: (msg: { data: Buffer }) => msg.data.length + 16 };

export function stdioHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { sandbox } = core;
  const once = mutatingCalls(core, rpc);
  /** Processes whose stdin a WriteInput closed: a retried close is not applied again (on a terminal it would type a second EOF). */
  const closed = new WeakSet<ProcessIO>();
  return {
    /**
     * From `offset` (the reader needs nothing before it) to the end of the
     * stream: a message per chunk as the output arrives, each read only once
     * the previous one was taken (back-pressure reaches the process), then one
     * with no data, eof set and the final offset. The reader's place: where
     * it acknowledged (acknowledged_only), or heldBehind() bytes behind what
     * was sent, so a client whose stream broke resumes from the offset after
     * the last byte it kept. A client that cancels ends the stream.
     */
    ReadOutput: rpc.serverStream(async (req, ctx, send) => {
      const container = sandbox.container(req.container_id);
      const hold = req.acknowledged_only ? 'acknowledged' : heldBehind(core.config.outputBufferBytes);
      const chunks = container.followOutput(req.exec_id, streamFromV2(req.stream), readerOf(req.reader), req.offset, chunkBytesOf(req.max_chunk_bytes), {
        hold,
        signal: ctx.signal,
      });
      try {
        for await (const chunk of chunks) await send(chunk);
      } catch (err) {
        // A send refused because the client went away is how a cancelled stream ends.
        if (ctx.signal.aborted) return;
        throw err;
      }
    }, SEND_AHEAD),
    AcknowledgeOutput: rpc.unary((req) => {
      const container = sandbox.container(req.container_id);
      return { start_offset: container.acknowledgeOutput(req.exec_id, streamFromV2(req.stream), readerOf(req.reader), req.offset) };
    }),
    WriteInput: once('WriteInput', async (req) => {
      const io = sandbox.container(req.container_id).process(req.exec_id).io;
      await io.writeStdinAt(req.offset, req.data);
      if (req.close && !closed.has(io)) {
        closed.add(io);
        io.closeStdin();
      }
      return { offset: io.written };
    }),
    TtyWinResize: rpc.unary((req) => {
      sandbox.container(req.container_id).process(req.exec_id).io.resize(req.column, req.row);
      return {};
    }),
  } satisfies Pick<AgentV2Handlers, 'ReadOutput' | 'AcknowledgeOutput' | 'WriteInput' | 'TtyWinResize'>;
}
