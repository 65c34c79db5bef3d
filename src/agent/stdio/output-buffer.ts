// A bounded buffer between a process's output stream and the clients that
// read it. When nobody reads, the source is paused once `limit` bytes wait:
// the process then blocks in write(2) — back-pressure, not loss. Readers
// block until data or end of stream; an empty result means end of stream.
import type { Readable } from 'node:stream';

export class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private waiters: Array<() => void> = [];
  /** Bytes handed to readers so far: the stream offset of the next byte. */
  private consumed = 0;
  private eofDelivered = false;

  constructor(
    private readonly source: Readable,
    private readonly limit: number,
  ) {
    source.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.size += chunk.length;
      if (this.size >= this.limit) source.pause();
      this.wake();
    });
    const end = () => {
      this.ended = true;
      this.wake();
    };
    source.once('end', end);
    source.once('close', end);
    // A pty master reports the closed slave as EIO: that is end of stream.
    source.on('error', end);
  }

  get offset(): number {
    return this.consumed;
  }

  get buffered(): number {
    return this.size;
  }

  /** Readers blocked in read() right now. */
  get waiting(): number {
    return this.waiters.length;
  }

  get atEnd(): boolean {
    return this.ended && this.size === 0;
  }

  /**
   * Nothing more for anyone: a reader has been told end of stream, or the
   * stream ended without its reader ever taking data (nobody reads it).
   * A reader that took data but has not yet seen the end is still owed it.
   */
  get drained(): boolean {
    return this.eofDelivered || (this.atEnd && this.consumed === 0);
  }

  /** Up to `max` bytes; waits for data; empty at end of stream or on abort. */
  async read(max: number, signal?: AbortSignal): Promise<Buffer> {
    while (this.size === 0 && !this.ended) {
      if (signal?.aborted) return Buffer.alloc(0);
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener('abort', abort);
          resolve();
        };
        // An aborted reader must take its waiter with it: a client polling a
        // silent process with short deadlines would otherwise grow the list forever.
        const abort = () => {
          const i = this.waiters.indexOf(wake);
          if (i >= 0) this.waiters.splice(i, 1);
          resolve();
        };
        this.waiters.push(wake);
        signal?.addEventListener('abort', abort, { once: true });
      });
    }
    const out = this.take(max);
    if (out.length === 0 && this.ended) this.eofDelivered = true;
    if (this.size < this.limit && this.source.isPaused() && !this.ended) this.source.resume();
    return out;
  }

  private take(max: number): Buffer {
    const parts: Buffer[] = [];
    let want = Math.max(1, max);
    while (want > 0 && this.chunks.length > 0) {
      const head = this.chunks[0]!;
      if (head.length <= want) {
        parts.push(head);
        this.chunks.shift();
        want -= head.length;
      } else {
        parts.push(head.subarray(0, want));
        this.chunks[0] = head.subarray(want);
        want = 0;
      }
    }
    const out = Buffer.concat(parts);
    this.size -= out.length;
    this.consumed += out.length;
    return out;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
