// A bounded, sequenced queue of events with two ways to read it:
// - take(): each event goes to exactly one caller, in order, and events that
//   arrive while nobody waits are kept for the next caller (v1 GetOOMEvent);
//   a caller cancelled as its event arrives gives it back, so it is not lost;
// - read(after): every reader sees every event after its own cursor, and can
//   tell when it fell behind the retained window (the core's event bus,
//   events.ts, streams from it).
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
  resolve(item: Sequenced<T>): void;
  reject(err: unknown): void;
  cleanup(): void;
}

export class EventQueue<T> {
  private readonly buffer: Sequenced<T>[] = [];
  private lastSeq = 0;
  /** Last seq handed out by take(). */
  private takeCursor = 0;
  private readonly takers: Taker<T>[] = [];
  /** Events taken by callers that were cancelled before they could pass them on; oldest first, served first. */
  private readonly givenBack: Sequenced<T>[] = [];
  private readonly readers = new Set<() => void>();
  /** Events evicted before take() delivered them. */
  droppedUntaken = 0;

  constructor(
    readonly capacity = 1024,
    private readonly what = 'event',
    /**
     * An earlier agent image's queue (a takeover): the seq the next event
     * follows, and the events it held (consecutive, ending at lastSeq), kept
     * for readers and counted as taken.
     */
    restored: { lastSeq: number; events: readonly Sequenced<T>[] } = { lastSeq: 0, events: [] },
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity ${capacity} must be a positive integer`);
    const events = restored.events.slice(-capacity);
    const consecutive = events.every((e, i) => e.seq === restored.lastSeq - events.length + 1 + i);
    if (consecutive) this.buffer.push(...events);
    this.lastSeq = restored.lastSeq;
    this.takeCursor = restored.lastSeq;
  }

  /** The events held now, oldest first (what a takeover hands on). */
  held(): Sequenced<T>[] {
    return [...this.buffer];
  }

  /** Seq of the newest event (0 if none yet): a cursor that reads only what comes next. */
  get head(): number {
    return this.lastSeq;
  }

  /** Seq of the oldest event still kept (head + 1 when none is). */
  get oldest(): number {
    return this.oldestSeq();
  }

  /** Callers waiting in take() or read() (0 once they all got an event or went away). */
  get waiting(): number {
    return this.takers.length + this.readers.size;
  }

  /** Events kept and not yet taken. */
  get pending(): number {
    return this.lastSeq - Math.max(this.takeCursor, this.oldestSeq() - 1) + this.givenBack.length;
  }

  push(event: T): Sequenced<T> {
    const item = { seq: ++this.lastSeq, event };
    const taker = this.takers.shift();
    if (taker) {
      // A taker waits only when nothing was pending, so this is the next event to take.
      this.takeCursor = item.seq;
      taker.cleanup();
      taker.resolve(item);
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

  /**
   * The next event not yet taken by anyone; waits for one. Rejects when
   * `signal` aborts. A caller whose signal aborted by the time its event is
   * handed over never receives it: the event goes to the next taker instead.
   */
  take(signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(this.cancelled());
    const next = this.nextPending();
    const item = next ? Promise.resolve(next) : this.waitForPush(signal);
    // The event is resolved to us before our caller runs: a cancel that came
    // in between (the RPC went away as the event arrived) must not eat it.
    return item.then((it) => {
      if (signal?.aborted) {
        this.giveBack(it);
        throw this.cancelled();
      }
      return it.event;
    });
  }

  /**
   * Gives back the event take() just returned, when its caller could not pass
   * it on: a live taker or the next take() gets it. Only the most recently
   * taken event can be given back; false otherwise.
   */
  untake(event: T): boolean {
    const item = this.buffer[this.takeCursor - this.oldestSeq()];
    if (!item || item.seq !== this.takeCursor || item.event !== event || this.givenBack.includes(item)) return false;
    this.giveBack(item);
    return true;
  }

  private nextPending(): Sequenced<T> | null {
    const back = this.givenBack.shift();
    if (back) return back;
    this.takeCursor = Math.max(this.takeCursor, this.oldestSeq() - 1);
    if (this.takeCursor >= this.lastSeq) return null;
    const item = this.buffer[this.takeCursor + 1 - this.oldestSeq()]!;
    this.takeCursor = item.seq;
    return item;
  }

  private waitForPush(signal?: AbortSignal): Promise<Sequenced<T>> {
    return new Promise<Sequenced<T>>((resolve, reject) => {
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

  /** A taken event back to a live taker (takers leave the list when they abort), else to the front of the queue. */
  private giveBack(item: Sequenced<T>): void {
    const taker = this.takers.shift();
    if (taker) {
      taker.cleanup();
      taker.resolve(item);
      return;
    }
    let i = this.givenBack.length;
    while (i > 0 && this.givenBack[i - 1]!.seq > item.seq) i--;
    this.givenBack.splice(i, 0, item);
    // Bounded like the queue itself (in practice this holds at most a few events).
    if (this.givenBack.length > this.capacity) {
      this.givenBack.shift();
      this.droppedUntaken++;
    }
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
    // The buffer holds the seqs oldest..head without a gap.
    const events = this.buffer.slice(Math.max(0, after + 1 - oldest));
    return { events, missed: events.length > 0 ? Math.max(0, oldest - after - 1) : 0 };
  }

  private oldestSeq(): number {
    return this.buffer[0]?.seq ?? this.lastSeq + 1;
  }

  private cancelled() {
    return failedPrecondition(`waiting for the next ${this.what} was cancelled or timed out`);
  }
}
