// The core's event bus: one sequenced stream of what happens to the
// sandbox's processes and containers (a process started or exited, a
// container changed state, the OOM killer struck). The core publishes; the
// OOM watcher and protocol handlers read. It knows no protocol: v1's
// GetOOMEvent is a take-queue over its oom-kill events (takeQueue), a
// streaming RPC reads it with a cursor (watch).
//
// Every event gets the next sequence number (1 for the first, no gaps). The
// bus keeps the newest `capacity` events; a reader resumes after the last
// seq it saw. A cursor that fell out of the kept window, or lies ahead of the
// newest event (an agent that started afresh), is an EventCursorError
// (out-of-range) that names the oldest and the newest seq still held, so the
// client can tell what it missed and start again from a state it re-reads.
import { AgentError, invalidArgument } from '../errors';
import type { Logger } from '../log';
import type { ExitStatus } from '../process/exit-status';
import type { ContainerState } from './container';
import { EventQueue, type Sequenced } from './event-queue';

export type { Sequenced } from './event-queue';

/** A container's states as events report them: its lifecycle states, and `removed` when it is gone. */
export type ContainerEventState = ContainerState | 'removed';

/** A container process (its init or an exec) exists: the runtime reported its pid. */
export interface ProcessStartedEvent {
  type: 'process-started';
  containerId: string;
  execId: string;
  pid: number;
  /** Milliseconds since the epoch when the runtime was asked to start it (its exit status's startedAt). */
  at: number;
}

/** A container process ended and was reaped; `status.exitedAt` says when. */
export interface ProcessExitedEvent {
  type: 'process-exited';
  containerId: string;
  execId: string;
  pid: number;
  status: ExitStatus;
}

export interface ContainerStateEvent {
  type: 'container-state';
  containerId: string;
  state: ContainerEventState;
  /** Milliseconds since the epoch. */
  at: number;
}

/** The kernel's OOM killer killed a process in the container's cgroup. */
export interface OomKillEvent {
  type: 'oom-kill';
  containerId: string;
  /** Milliseconds since the epoch when the agent saw the kill. */
  at: number;
}

export type CoreEvent = ProcessStartedEvent | ProcessExitedEvent | ContainerStateEvent | OomKillEvent;
export type CoreEventType = CoreEvent['type'];
export type EventOf<K extends CoreEventType> = Extract<CoreEvent, { type: K }>;

/** Events kept for cursor readers: a few thousand, some hundreds of KiB at most. */
export const DEFAULT_EVENT_CAPACITY = 4096;

/**
 * A cursor the bus cannot serve: older than the oldest event kept (the
 * events in between are gone), or newer than the newest. Kind out-of-range;
 * reason EVENT_CURSOR_OUT_OF_RANGE, metadata oldest_seq and last_seq.
 */
export class EventCursorError extends AgentError {
  constructor(
    /** The cursor asked for (events after it). */
    readonly after: number,
    /** The oldest seq still held (lastSeq + 1 when none is). */
    readonly oldestSeq: number,
    /** The newest seq (0 before the first event). */
    readonly lastSeq: number,
  ) {
    const held = oldestSeq <= lastSeq ? `events ${oldestSeq}..${lastSeq} are held` : `no event is held; the last seq is ${lastSeq}`;
    const why = after > lastSeq
      ? `is ahead of the newest event ${lastSeq} (was it from an earlier agent?)`
      : `fell out of the kept window: events ${after + 1}..${oldestSeq - 1} were dropped`;
    super('out-of-range', `event cursor ${after} ${why}; ${held}, resume from ${oldestSeq - 1} or later`, {
      reason: 'EVENT_CURSOR_OUT_OF_RANGE',
      metadata: { oldest_seq: String(oldestSeq), last_seq: String(lastSeq) },
    });
    this.name = 'EventCursorError';
  }
}

export interface EventBusOptions {
  /** Events kept for cursor readers (DEFAULT_EVENT_CAPACITY). */
  capacity?: number;
  /** Where a throwing subscriber is reported. */
  log?: Logger;
  /**
   * An earlier agent image's bus (a takeover): seqs go on after its last,
   * and the events it held are held here, so a client's cursor from before
   * the exec resumes.
   */
  restored?: { lastSeq: number; events: readonly Sequenced<CoreEvent>[] };
}

export type EventListener = (item: Sequenced<CoreEvent>) => void;

export class EventBus {
  private readonly queue: EventQueue<CoreEvent>;
  private readonly listeners = new Set<EventListener>();

  constructor(private readonly options: EventBusOptions = {}) {
    for (const e of options.restored?.events ?? []) if (e.event.type === 'process-exited') Object.freeze(e.event.status);
    this.queue = new EventQueue<CoreEvent>(options.capacity ?? DEFAULT_EVENT_CAPACITY, 'event', options.restored);
  }

  get capacity(): number {
    return this.queue.capacity;
  }

  /** Seq of the newest event, 0 before the first: the cursor that reads only what comes next ("from now"). */
  get lastSeq(): number {
    return this.queue.head;
  }

  /** The events held now, oldest first: what an exec in place hands on. */
  held(): Sequenced<CoreEvent>[] {
    return this.queue.held();
  }

  /** Seq of the oldest event still kept (lastSeq + 1 when none is): cursors from oldestSeq - 1 on are served. */
  get oldestSeq(): number {
    return this.queue.oldest;
  }

  /** Readers waiting for the next event (0 once every one got it or went away). */
  get waiting(): number {
    return this.queue.waiting;
  }

  /**
   * Appends the event with the next seq, wakes the readers and calls the
   * subscribers (synchronously, in the order they subscribed). The event is
   * frozen: every reader sees the same object.
   */
  publish(event: CoreEvent): Sequenced<CoreEvent> {
    if (event.type === 'process-exited') Object.freeze(event.status);
    const item = this.queue.push(Object.freeze(event));
    for (const listener of [...this.listeners]) {
      try {
        listener(item);
      } catch (err) {
        this.options.log?.error({ err, event: event.type, seq: item.seq }, 'event subscriber failed');
      }
    }
    return item;
  }

  /** Calls `listener` for every event published from now on, synchronously; returns the unsubscribe. */
  subscribe(listener: EventListener): () => void {
    const own = (item: Sequenced<CoreEvent>) => listener(item);
    this.listeners.add(own);
    return () => this.listeners.delete(own);
  }

  /**
   * Throws unless events after `after` can be read: invalid-argument for a
   * cursor that is not a non-negative integer, EventCursorError for one
   * before oldestSeq - 1 or beyond lastSeq.
   */
  check(after: number): void {
    if (!Number.isSafeInteger(after) || after < 0) throw invalidArgument(`event cursor ${String(after)} is not a non-negative integer`);
    if (after < this.oldestSeq - 1 || after > this.lastSeq) throw new EventCursorError(after, this.oldestSeq, this.lastSeq);
  }

  /**
   * Every kept event with seq > after, oldest first; waits until there is
   * one. Rejects (failed-precondition) when `signal` aborts, and with
   * EventCursorError when the cursor cannot be served (see check()).
   */
  async read(after: number, signal?: AbortSignal): Promise<Sequenced<CoreEvent>[]> {
    this.check(after);
    const { events, missed } = await this.queue.read(after, signal);
    // check() and a wake at every push keep this from happening; kept as a guard.
    if (missed > 0) throw new EventCursorError(after, this.oldestSeq, this.lastSeq);
    return events;
  }

  /**
   * The events after `after`, one by one as they come, without end: an async
   * iterator for a streaming RPC. Checks the cursor at once (throws as
   * check() does). The iteration ends, without an error, when `signal`
   * aborts or the consumer stops (break, return()); a wait in progress is
   * then given up at once, so no reader is left behind. A consumer too slow
   * to keep up with `capacity` events gets an EventCursorError from next().
   */
  watch(after: number, signal?: AbortSignal): EventStream {
    this.check(after);
    return new EventStream(this, after, signal);
  }

  /**
   * A take-queue of the events of one type from now on (EventQueue.take:
   * each event goes to one taker; events nobody waits for are kept, up to
   * `capacity`, for the next). It keeps its own copies, so the bus's window
   * does not limit how long an untaken event stays. It lives as long as the bus.
   */
  takeQueue<K extends CoreEventType>(type: K, options: { capacity?: number; what?: string } = {}): EventQueue<EventOf<K>> {
    const queue = new EventQueue<EventOf<K>>(options.capacity ?? 1024, options.what ?? `${type} event`);
    this.subscribe((item) => {
      if (item.event.type === type) queue.push(item.event as EventOf<K>);
    });
    return queue;
  }
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/** The iterator watch() returns. One next() at a time is served; concurrent calls queue up in order. */
export class EventStream implements AsyncIterableIterator<Sequenced<CoreEvent>, undefined> {
  private batch: Sequenced<CoreEvent>[] = [];
  private readonly stop = new AbortController();
  private ended = false;
  private turn: Promise<unknown> = Promise.resolve();
  private readonly onAbort = () => this.end();

  constructor(
    private readonly bus: EventBus,
    private cursor: number,
    private readonly signal?: AbortSignal,
  ) {
    if (signal?.aborted) this.end();
    else signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** The seq of the last event handed out (the cursor given to watch() before the first): where to resume. */
  get position(): number {
    return this.cursor;
  }

  next(): Promise<IteratorResult<Sequenced<CoreEvent>, undefined>> {
    const result = this.turn.then(() => this.step());
    this.turn = result.catch(() => {});
    return result;
  }

  return(): Promise<IteratorResult<Sequenced<CoreEvent>, undefined>> {
    this.end();
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private async step(): Promise<IteratorResult<Sequenced<CoreEvent>, undefined>> {
    if (this.ended) return DONE;
    if (this.batch.length === 0) {
      try {
        this.batch = await this.bus.read(this.cursor, this.stop.signal);
      } catch (err) {
        const stopped = this.stop.signal.aborted;
        this.end();
        if (stopped) return DONE;
        throw err;
      }
      if (this.ended) return DONE;
    }
    const item = this.batch.shift()!;
    this.cursor = item.seq;
    return { done: false, value: item };
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.batch = [];
    this.signal?.removeEventListener('abort', this.onAbort);
    this.stop.abort();
  }
}
