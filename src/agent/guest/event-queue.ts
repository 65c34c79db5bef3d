// A bounded, sequenced queue of events with two ways to read it:
// - take(): each event goes to exactly one caller, in order, and events that
//   arrive while nobody waits are kept for the next caller (v1 GetOOMEvent);
// - read(after): every reader sees every event after its own cursor, and can
//   tell when it fell behind the retained window (for v2 WatchEvents).
// Memory is bounded: past `capacity` the oldest event is dropped and counted.
import { failedPrecondition } from '../errors';

export interface Sequenced<T> {
  /** 1 for the first event ever pushed, then +1 for each. */
  seq: number;
  event: T;
}

export interface ReadResult<T> {
  events: Sequenced<T>[];
  /** Events between the cursor and the first returned one that were dropped before this reader saw them. */
  missed: number;
}

interface Taker<T> {
  resolve(event: T): void;
  reject(err: unknown): void;
  cleanup(): void;
}

export class EventQueue<T> {
  private readonly buffer: Sequenced<T>[] = [];
  private lastSeq = 0;
  /** Last seq handed out by take(). */
  private takeCursor = 0;
  private readonly takers: Taker<T>[] = [];
  private readonly readers = new Set<() => void>();
  /** Events evicted before take() delivered them. */
  droppedUntaken = 0;

  constructor(
    readonly capacity = 1024,
    private readonly what = 'event',
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity ${capacity} must be a positive integer`);
  }

  /** Seq of the newest event (0 if none yet): a cursor that reads only what comes next. */
  get head(): number {
    return this.lastSeq;
  }

  /** Events kept and not yet taken. */
  get pending(): number {
    return this.lastSeq - Math.max(this.takeCursor, this.oldestSeq() - 1);
  }

  push(event: T): Sequenced<T> {
    const item = { seq: ++this.lastSeq, event };
    const taker = this.takers.shift();
    if (taker) {
      // A taker waits only when nothing was pending, so this is the next event to take.
      this.takeCursor = item.seq;
      taker.cleanup();
      taker.resolve(event);
    }
    this.buffer.push(item);
    if (this.buffer.length > this.capacity) {
      const evicted = this.buffer.shift()!;
      if (evicted.seq > this.takeCursor) {
        this.droppedUntaken++;
        this.takeCursor = evicted.seq;
      }
    }
    for (const wake of [...this.readers]) wake();
    return item;
  }

  /** The next event not yet taken by anyone; waits for one. Rejects when `signal` aborts. */
  take(signal?: AbortSignal): Promise<T> {
    this.takeCursor = Math.max(this.takeCursor, this.oldestSeq() - 1);
    if (this.takeCursor < this.lastSeq) {
      const item = this.buffer[this.takeCursor + 1 - this.oldestSeq()]!;
      this.takeCursor = item.seq;
      return Promise.resolve(item.event);
    }
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(this.cancelled());
      const onAbort = () => {
        const i = this.takers.indexOf(taker);
        if (i >= 0) this.takers.splice(i, 1);
        reject(this.cancelled());
      };
      const taker: Taker<T> = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.takers.push(taker);
    });
  }

  /**
   * Gives back the event take() just returned, when its caller could not pass
   * it on (the call was cancelled as it arrived): the next taker gets it. Only
   * the most recently taken event can be given back; false otherwise.
   */
  untake(event: T): boolean {
    const item = this.buffer[this.takeCursor - this.oldestSeq()];
    if (!item || item.seq !== this.takeCursor || item.event !== event) return false;
    const taker = this.takers.shift();
    if (taker) {
      taker.cleanup();
      taker.resolve(event);
    } else {
      this.takeCursor--;
    }
    return true;
  }

  /** Every kept event with seq > after; waits until there is at least one. Does not consume. */
  read(after: number, signal?: AbortSignal): Promise<ReadResult<T>> {
    const now = this.readNow(after);
    if (now.events.length > 0) return Promise.resolve(now);
    return new Promise<ReadResult<T>>((resolve, reject) => {
      if (signal?.aborted) return reject(this.cancelled());
      const done = () => {
        this.readers.delete(wake);
        signal?.removeEventListener('abort', onAbort);
      };
      const wake = () => {
        done();
        resolve(this.readNow(after));
      };
      const onAbort = () => {
        done();
        reject(this.cancelled());
      };
      this.readers.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private readNow(after: number): ReadResult<T> {
    const oldest = this.oldestSeq();
    const events = this.buffer.filter((e) => e.seq > after);
    return { events, missed: events.length > 0 ? Math.max(0, oldest - after - 1) : 0 };
  }

  private oldestSeq(): number {
    return this.buffer[0]?.seq ?? this.lastSeq + 1;
  }

  private cancelled() {
    return failedPrecondition(`waiting for the next ${this.what} was cancelled or timed out`);
  }
}
