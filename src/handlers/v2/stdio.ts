// v2 stdio RPCs: output as a stream from a byte offset, input written at an
// offset, terminal resize. Exec ids are exact.
import type { AgentCore } from '../../agent/core';
import type { ProcessIO } from '../../agent/process/process-io';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { chunkBytesOf, readerOf, STREAM_READER, streamFromV2 } from './conversions';
import type { V2Readers } from './readers';
import { mutatingCalls } from './requests';

/**
 * How far behind the bytes it has sent a stream keeps its reader's cursor:
 * bytes handed to gRPC may still be in flight (HTTP/2 and socket buffers)
 * when a connection breaks, and a client resuming from what it received must
 * find them held. A quarter of the output window (at most 256 KiB), so a
 * stream waiting at the end never holds enough to pause the process.
 */
export const heldBehind = (outputBufferBytes: number): number => Math.min(256 * 1024, Math.floor(outputBufferBytes / 4));

export function stdioHandlers(core: AgentCore, rpc: RpcBoundary, readers: V2Readers) {
  const { sandbox } = core;
  const once = mutatingCalls(core, rpc);
  /** Processes whose stdin a WriteInput closed: a retried close is not applied again (on a terminal it would type a second EOF). */
  const closed = new WeakSet<ProcessIO>();
  return {
    /**
     * From `offset` (the reader needs nothing before it) to the end of the
     * stream: a message per chunk as the output arrives, each sent only once
     * the previous one was taken (back-pressure reaches the process), then one
     * with no data, eof set and the final offset. The data is read through
     * the stream's own reader (STREAM_READER); the client's reader stays
     * heldBehind() bytes behind what was sent, to the end, so a client whose
     * stream broke (or that stopped taking messages) resumes from the offset
     * after the last byte it kept, and bytes still in flight are read again.
     * The client's reader reaches the end when the client asks at the final
     * offset, or releases the process (readers.ts). A client that cancels
     * ends the stream.
     */
    ReadOutput: rpc.serverStream(async (req, ctx, send) => {
      const container = sandbox.container(req.container_id);
      const stream = streamFromV2(req.stream);
      const reader = readerOf(req.reader);
      const max = chunkBytesOf(req.max_chunk_bytes);
      const lag = heldBehind(core.config.outputBufferBytes);
      const readAs = (name: string, from: number, bytes = max) => container.readOutput(req.exec_id, stream, name, from, bytes, ctx.signal);
      /** Where the client's reader stands: nothing before it is needed. */
      let held = req.offset;
      /** Holds the client's reader `lag` bytes behind `sent` (a one-byte read there: held < sent <= end, so no wait). */
      const hold = async (sent: number) => {
        if (sent - lag <= held) return;
        held = sent - lag;
        await readAs(reader, held, 1);
      };
      let offset = req.offset;
      try {
        // The first read is the client reader's own: it checks the offset and acknowledges what lies before it.
        let chunk = await readAs(reader, offset);
        const out = container.process(req.exec_id).io[stream];
        readers.note(out, reader);
        readers.note(out, STREAM_READER);
        for (;;) {
          if (chunk.data.length === 0) {
            // No bytes and no end: the call was cancelled while waiting.
            if (!chunk.eof) return;
            await send({ offset, data: Buffer.alloc(0), eof: true });
            break;
          }
          await send({ offset, data: chunk.data, eof: false });
          offset += chunk.data.length;
          await hold(offset);
          chunk = await readAs(STREAM_READER, offset);
        }
        // The stream's own reader at the end; the client's held as before.
        await readAs(STREAM_READER, offset);
        await hold(offset);
      } catch (err) {
        // A send refused because the client went away is how a cancelled stream ends.
        if (ctx.signal.aborted) return;
        throw err;
      }
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
  } satisfies Pick<AgentV2Handlers, 'ReadOutput' | 'WriteInput' | 'TtyWinResize'>;
}
