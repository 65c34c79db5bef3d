// Where the state lives: DIR/state.json, replaced atomically (written to a
// temporary file, fsync'd, renamed over the old one, the directory fsync'd),
// so a crash or a power cut leaves the old document or the new one, never a
// torn one. Saves are queued one at a time and coalesced: a save asked for
// while one is being written, or within `minIntervalMs` of the last one, is
// folded into the next, so a burst of changes costs two writes whatever the
// call rate (and further apart when capturing takes long: many processes
// tracked), and an RPC never waits for the disk (flush() does).
import fs from 'node:fs';
import path from 'node:path';
import { STATE_FORMAT, type AgentState } from './document';
import { decodeState, encodeState, type Decoded } from './codec';

export const STATE_FILE = 'state.json';

export class StateStore {
  readonly file: string;
  private writing: Promise<void> | null = null;
  private next: (() => AgentState) | null = null;
  /** Documents written, for tests and the bench. */
  writes = 0;

  private lastWrite = 0;
  /** The least time between two saves now (see drain). */
  private interval: number;

  constructor(
    readonly dir: string,
    private readonly options: { format?: number; minIntervalMs?: number } = {},
  ) {
    this.file = path.join(dir, STATE_FILE);
    this.interval = options.minIntervalMs ?? 0;
  }

  private get format(): number {
    return this.options.format ?? STATE_FORMAT;
  }

  /** The saved state, or null when there is none. A StateError for one this agent cannot use. */
  read(): Decoded | null {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return decodeState(text, this.file);
  }

  /** Saves what `capture` returns when the write happens (the latest state, not the state at the call). */
  save(capture: () => AgentState): void {
    this.next = capture;
    if (!this.writing) this.writing = this.drain();
  }

  /** Resolves once everything asked for so far is on disk; rejects with the write's error. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  /** Writes `state` now, atomically, blocking: for the final save before an exec in place, when nothing else may run. */
  writeNow(state: AgentState): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = this.temporary();
    writeSynced(tmp, encodeState(state, this.format));
    fs.renameSync(tmp, this.file);
    const dirFd = fs.openSync(this.dir, 'r');
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
    this.writes++;
  }

  /** writeNow off the event loop (the document already encoded): the agent answers calls while the disk works. */
  private async write(text: string): Promise<void> {
    await fs.promises.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = this.temporary();
    const file = await fs.promises.open(tmp, 'w', 0o600);
    try {
      await file.writeFile(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await fs.promises.rename(tmp, this.file);
    const dir = await fs.promises.open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    this.writes++;
  }

  private temporary(): string {
    return `${this.file}.tmp-${process.pid}`;
  }

  private async drain(): Promise<void> {
    try {
      while (this.next) {
        const capture = this.next;
        this.next = null;
        // One turn first (and the rest of the interval): changes made meanwhile land in this write.
        const wait = this.lastWrite + this.interval - Date.now();
        await new Promise<void>((resolve) => (wait > 0 ? setTimeout(resolve, wait) : setImmediate(resolve)));
        this.lastWrite = Date.now();
        const t0 = performance.now();
        const state = capture();
        const text = encodeState(state, this.format);
        // Capturing and encoding run on the event loop: with many processes tracked they are not
        // free, so saves space out to keep them under a tenth of the loop's time.
        this.interval = Math.max(this.options.minIntervalMs ?? 0, Math.ceil(10 * (performance.now() - t0)));
        await this.write(text);
      }
    } finally {
      this.writing = null;
    }
  }
}

/** Writes `data` to `file` (mode 0600) and fsyncs it before returning. */
export function writeSynced(file: string, data: Buffer | string): void {
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
