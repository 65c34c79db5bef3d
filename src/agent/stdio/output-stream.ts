// One output stream of a process (stdout or stderr) as a retained window of
// absolute byte offsets. Bytes from the source are appended at offsets
// counted from 0 and are never dropped: they are released (trimmed) only
// once every registered reader has acknowledged past them, and while the
// window holds `limit` bytes the source is paused, so the process blocks in
// write(2) — back-pressure, not loss. Reads are not destructive: a reader
// asks for an offset, so a reply lost on the way can be asked for again and
// two readers (one per protocol version, say) each get every byte.
//
//          start               end
//   released │ retained window  │ not yet received
//   ─────────┼──────────────────┼───────────────>  offsets
//
// Readers are named cursors. A reader acknowledges by asking for an offset
// (it needs nothing before it) or with acknowledge(); `readAs(name, 'next',
// ...)` reads from the reader's own position and acknowledges what it
// returned (v1's polling: the next bytes, each once); follow() hands out
// chunk after chunk from an offset, the reader's place kept either where the
// reader acknowledged (nothing it was sent is released before it says so) or
// a fixed distance behind what it was sent.
import { PassThrough, type Readable } from 'node:stream';
import { invalidArgument, outOfRange } from '../errors';

/** An answer to a read: `data` starts at `offset`; `eof` when nothing follows it, ever. */
export interface OutputChunk {
  offset: number;
  data: Buffer;
  eof: boolean;
}

/** Where a stream stands: first offset still held, one past the last byte received, EOF seen (`end` is then final). */
export interface StreamState {
  start: number;
  end: number;
  ended: boolean;
}

export interface ReadOptions {
  /** Ends a wait: the answer is then empty with `eof: false`. */
  signal?: AbortSignal;
  /** What the stream is, for error messages ("stdout of exec e1 in container c1"). */
  subject?: string;
}

export interface FollowOptions extends ReadOptions {
  /**
   * How the reader's place moves while it follows: 'acknowledged', only when
   * the reader acknowledges (acknowledge(), or the offset a later read or
   * follow starts at), so what it was sent stays held however much of it was
   * lost on the way; a number, that many bytes behind what it was sent, for a
   * reader that never acknowledges (bytes lost on the way beyond that are
   * released).
   */
  hold: 'acknowledged' | number;
}

/** A reader's place in the stream. Created by OutputStream.reader(); lives as long as the stream. */
export class OutputReader {
  private position_: number;
  private reachedEnd_ = false;

  constructor(
    readonly name: string,
    private readonly stream: OutputStream,
    start: number,
  ) {
    this.position_ = start;
  }

  /** The reader needs nothing before this offset (it never moves back). */
  get position(): number {
    return this.position_;
  }

  /** The reader asked at the final offset after the end, and was answered end of stream with no bytes. */
  get reachedEnd(): boolean {
    return this.reachedEnd_;
  }

  /** @internal The reader needs nothing before `offset`; bytes every reader is past are released. Use OutputStream.acknowledge. */
  ack(offset: number, subject?: string): void {
    if (Number.isSafeInteger(offset) && offset >= 0 && offset <= this.position_) return;
    this.stream.checkOffset(offset, subject);
    this.position_ = offset;
    this.stream.trim();
  }

  /** @internal OutputStream.readAs marks it. */
  markEnd(): void {
    this.reachedEnd_ = true;
  }
}

export class OutputStream {
  /** Received chunks, oldest first, from index `head`; `offsets[i]` is where chunks[i] starts. */
  private chunks: Buffer[] = [];
  private offsets: number[] = [];
  private head = 0;
  private start_ = 0;
  private end_ = 0;
  private ended_ = false;
  private paused = false;
  private waiters: Array<() => void> = [];
  private readonly readers = new Map<string, OutputReader>();
  /** finishReaders() found no reader: what the stream holds is nobody's. */
  private unwanted = false;

  constructor(
    private readonly source: Readable,
    private readonly limit: number,
    /** What the stream is, for error messages when a read names no subject. */
    private readonly label = 'the stream',
  ) {
    source.on('data', (chunk: Buffer) => {
      if (chunk.length === 0) return;
      this.chunks.push(chunk);
      this.offsets.push(this.end_);
      this.end_ += chunk.length;
      if (this.end_ - this.start_ >= this.limit && !this.ended_) {
        this.paused = true;
        source.pause();
      }
      this.wake();
    });
    const end = () => {
      if (this.ended_) return;
      this.ended_ = true;
      this.wake();
    };
    source.once('end', end);
    source.once('close', end);
    // A pty master reports the closed slave as EIO: that is end of stream.
    source.on('error', end);
  }

  /**
   * A stream taken over from an earlier agent image (state/): `held` are
   * the bytes [start, end) it kept, the readers stand where they stood, and
   * the bytes `source` brings next follow at `end`. An ended stream has no
   * source.
   */
  static restored(
    source: Readable | null,
    limit: number,
    label: string,
    saved: { start: number; end: number; ended: boolean; readers: Record<string, number> },
    held: Buffer,
  ): OutputStream {
    if (held.length !== saved.end - saved.start) {
      throw new Error(`${label}: ${held.length} bytes were saved for offsets ${saved.start}..${saved.end}`);
    }
    const stream = new OutputStream(source ?? endedSource(), limit, label);
    stream.start_ = saved.start;
    stream.end_ = saved.end;
    if (held.length > 0) {
      stream.chunks.push(held);
      stream.offsets.push(saved.start);
    }
    if (saved.ended || !source) stream.ended_ = true;
    for (const [name, place] of Object.entries(saved.readers)) {
      const r = new OutputReader(name, stream, Math.min(Math.max(place, saved.start), saved.end));
      stream.readers.set(name, r);
    }
    if (stream.retained >= limit && !stream.ended_) {
      stream.paused = true;
      source?.pause();
    }
    return stream;
  }

  /** The first offset still held. */
  get start(): number {
    return this.start_;
  }

  /** One past the last byte received; the final offset once `ended`. */
  get end(): number {
    return this.end_;
  }

  /** The source reached end of stream. */
  get ended(): boolean {
    return this.ended_;
  }

  /** Bytes held: `end - start`. */
  get retained(): number {
    return this.end_ - this.start_;
  }

  /** Reads waiting for data right now. */
  get waiting(): number {
    return this.waiters.length;
  }

  snapshot(): StreamState {
    return { start: this.start_, end: this.end_, ended: this.ended_ };
  }

  /** Each registered reader's place. */
  readerPlaces(): Record<string, number> {
    return Object.fromEntries([...this.readers.values()].map((r) => [r.name, r.position]));
  }

  /** The bytes held, [start, end): what must be saved for a new agent image to serve them. */
  held(): Buffer {
    return this.retained === 0 ? Buffer.alloc(0) : this.slice(this.start_, this.retained).data;
  }

  /**
   * Takes into the window what the source has read but not handed on (a
   * paused Readable keeps it in its own buffer) and stops reading from it:
   * the last step before its descriptor goes to another agent image, so no
   * byte stays behind in this one.
   */
  absorbBuffered(): void {
    if (this.ended_) return;
    this.source.removeAllListeners('data');
    this.source.pause();
    for (let chunk = this.source.read() as Buffer | null; chunk !== null; chunk = this.source.read() as Buffer | null) {
      if (chunk.length === 0) continue;
      this.chunks.push(chunk);
      this.offsets.push(this.end_);
      this.end_ += chunk.length;
    }
  }

  /** @internal Where the bytes come from (its descriptor is handed over across an exec in place). */
  get sourceStream(): Readable {
    return this.source;
  }

  /**
   * Nothing more for anyone: every registered reader has reached the end
   * (see OutputReader.reachedEnd), or no reader ever registered and the stream
   * ended empty. A reader that has all the bytes but was not yet answered
   * end of stream is still owed that answer.
   */
  get drained(): boolean {
    if (this.readers.size === 0) return this.ended_ && (this.end_ === 0 || this.unwanted);
    for (const r of this.readers.values()) if (!r.reachedEnd) return false;
    return true;
  }

  /**
   * Reader `name` needs nothing before `offset` (it never moves back).
   * Acknowledging the final offset of an ended stream is the reader saying
   * it has everything: it counts as having reached the end. Returns the
   * first offset still held.
   */
  acknowledge(name: string, offset: number, subject?: string): number {
    const r = this.reader(name);
    r.ack(offset, subject);
    if (this.ended_ && r.position === this.end_) r.markEnd();
    return this.start_;
  }

  /**
   * Every reader `which` accepts has everything: each is moved to the end
   * and counts as having reached it. With no reader at all, nobody wants the
   * bytes: the stream counts as drained. Only for an ended stream; false
   * otherwise.
   */
  finishReaders(which: (name: string) => boolean): boolean {
    if (!this.ended_) return false;
    if (this.readers.size === 0) this.unwanted = true;
    for (const r of this.readers.values()) if (which(r.name)) this.acknowledge(r.name, this.end_);
    return true;
  }

  /** The reader named `name`, registered (at `start`) on first use. */
  reader(name: string): OutputReader {
    let r = this.readers.get(name);
    if (!r) {
      r = new OutputReader(name, this, this.start_);
      this.readers.set(name, r);
    }
    return r;
  }

  /**
   * Up to `max` bytes from offset `from`, waiting while `from` is the end and
   * the stream goes on. Acknowledges nothing. Out of range: `from` before
   * `start` (released) or past `end`.
   */
  async read(from: number, max: number, options: ReadOptions = {}): Promise<OutputChunk> {
    this.checkOffset(from, options.subject);
    checkMax(max);
    while (from === this.end_ && !this.ended_) {
      if (!(await this.change(options.signal))) return { offset: from, data: Buffer.alloc(0), eof: false };
    }
    // A read that holds no reader's place may have seen its bytes released meanwhile.
    this.checkOffset(from, options.subject);
    return this.slice(from, max);
  }

  /**
   * The read of reader `name`. From an offset: acknowledges `from` first (the
   * reader needs nothing before it), then reads. From 'next': reads at the
   * reader's own position and acknowledges what it returned, so concurrent
   * 'next' reads each get different bytes. An answer with no bytes at the
   * end of the stream marks the reader as having reached the end.
   * A `from` out of range registers no reader.
   */
  async readAs(name: string, from: number | 'next', max: number, options: ReadOptions = {}): Promise<OutputChunk> {
    if (from !== 'next') this.checkOffset(from, options.subject);
    checkMax(max);
    const r = this.reader(name);
    if (from !== 'next') r.ack(from, options.subject);
    for (;;) {
      // Checked and taken in one go: another 'next' read woken by the same
      // data may have taken it (and moved the position) before this one runs.
      const offset = from === 'next' ? r.position : from;
      if (offset !== this.end_ || this.ended_) {
        // (This reader's place keeps `from` held; checked all the same before slicing.)
        if (from !== 'next') this.checkOffset(from, options.subject);
        const chunk = this.slice(offset, max);
        if (from === 'next') r.ack(offset + chunk.data.length, options.subject);
        if (chunk.eof && chunk.data.length === 0) r.markEnd();
        return chunk;
      }
      if (!(await this.change(options.signal))) return { offset, data: Buffer.alloc(0), eof: false };
    }
  }

  /**
   * Chunks of up to `max` bytes for reader `name` from `from` (acknowledged
   * first: the reader needs nothing before it), one after another as the
   * output arrives, the next one only once the caller asks for it (so a
   * caller that waits holds the process back, through the window); then one
   * chunk with no data and eof set, at the final offset. Chunks with data
   * never have eof set. Ends without the eof chunk when `signal` aborts.
   * The reader's place moves as `hold` says. Reaching the end counts as the
   * reader's end (see drained) only once its place is the final offset.
   */
  async *follow(name: string, from: number, max: number, options: FollowOptions): AsyncGenerator<OutputChunk> {
    this.checkOffset(from, options.subject);
    checkMax(max);
    const r = this.reader(name);
    r.ack(from, options.subject);
    let offset = from;
    for (;;) {
      while (offset === this.end_ && !this.ended_) {
        if (!(await this.change(options.signal))) return;
      }
      // A pipe brings a busy writer's output in reads as small as its writes
      // (4 KiB from many programs): one turn of the event loop lets the next
      // reads in, so a chunk carries many of them and the per-chunk cost is
      // paid once. Not when the source is paused: nothing more comes then.
      if (!this.ended_ && !this.paused && this.end_ - offset < max) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (options.signal?.aborted) return;
      }
      // Held by this reader's place, unless another follower of the same name acknowledged past it.
      this.checkOffset(offset, options.subject);
      const chunk = this.slice(offset, max);
      if (chunk.data.length === 0) {
        if (r.position === this.end_) r.markEnd();
        yield chunk;
        return;
      }
      yield { offset, data: chunk.data, eof: false };
      offset += chunk.data.length;
      if (options.hold !== 'acknowledged' && offset - options.hold > r.position) r.ack(offset - options.hold, options.subject);
    }
  }

  /** @internal Throws unless `offset` is held or is `end`. */
  checkOffset(offset: number, subject = this.label): void {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw invalidArgument(`offset ${offset} of ${subject} is not a byte offset (a non-negative integer)`);
    }
    if (offset < this.start_) {
      throw outOfRange(`bytes before offset ${this.start_} of ${subject} were already released; read from ${this.start_}`, {
        first_offset: String(this.start_),
      });
    }
    if (offset > this.end_) {
      throw outOfRange(`offset ${offset} is past the end of ${subject} (${this.end_})`, { end_offset: String(this.end_) });
    }
  }

  /** @internal Releases what every reader is past; resumes the source once below the limit. */
  trim(): void {
    if (this.readers.size === 0) return;
    let min = Infinity;
    for (const r of this.readers.values()) min = Math.min(min, r.position);
    if (min <= this.start_) return;
    this.start_ = min;
    // Whole chunks only; the first one may begin before `start`.
    while (this.head < this.chunks.length && this.offsets[this.head]! + this.chunks[this.head]!.length <= min) {
      this.chunks[this.head] = EMPTY;
      this.head++;
    }
    if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.offsets = this.offsets.slice(this.head);
      this.head = 0;
    }
    if (this.paused && this.end_ - this.start_ < this.limit) {
      this.paused = false;
      if (!this.ended_) this.source.resume();
    }
  }

  /** Up to `max` held bytes from `from` (start <= from <= end). */
  private slice(from: number, max: number): OutputChunk {
    const want = Math.min(max, this.end_ - from);
    const parts: Buffer[] = [];
    let got = 0;
    if (want > 0) {
      // The last chunk starting at or before `from`.
      let lo = this.head;
      let hi = this.chunks.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (this.offsets[mid]! <= from) lo = mid;
        else hi = mid - 1;
      }
      for (let i = lo; i < this.chunks.length && got < want; i++) {
        const chunk = this.chunks[i]!;
        const skip = i === lo ? from - this.offsets[i]! : 0;
        const take = Math.min(chunk.length - skip, want - got);
        parts.push(chunk.subarray(skip, skip + take));
        got += take;
      }
    }
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts, got);
    return { offset: from, data, eof: this.ended_ && from + got === this.end_ };
  }

  /** Waits for the next change (data or end); false if aborted first. */
  private async change(signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return false;
    return new Promise<boolean>((resolve) => {
      const wake = () => {
        signal?.removeEventListener('abort', abort);
        resolve(true);
      };
      // An aborted reader must take its waiter with it: a client polling a
      // silent process with short deadlines would otherwise grow the list forever.
      const abort = () => {
        const i = this.waiters.indexOf(wake);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(false);
      };
      this.waiters.push(wake);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

const EMPTY = Buffer.alloc(0);

function endedSource(): Readable {
  const none = new PassThrough();
  none.end();
  return none;
}

function checkMax(max: number): void {
  if (!Number.isSafeInteger(max) || max < 1) throw invalidArgument(`a read of ${max} bytes: ask for at least 1`);
}
