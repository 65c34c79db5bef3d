// Idempotent mutating calls. A client that loses its connection in the
// middle of a call cannot know whether the agent acted: it retries with the
// same client-chosen request id, and the agent answers with the first
// call's result instead of acting twice (no second container, no second
// exec, no byte written twice). The same id with different arguments is a
// client bug, refused with a clear error rather than guessed at.
//
// Bounded: the oldest entries go once there are more than `capacity`, and
// entries older than `ttlMs` are dropped; a retry comes within seconds of
// the original call, not hours.
import crypto from 'node:crypto';
import { AgentError, excerpt, invalidArgument } from '../errors';

interface Entry {
  digest: string;
  /** The first call's outcome; a retry during the call waits for it. */
  result: Promise<unknown>;
  /** The outcome once it succeeded (what a saved state keeps). */
  value?: { result: unknown };
  at: number;
}

/** A request id whose first call succeeded, as plain data. */
export interface SettledRequest {
  requestId: string;
  digest: string;
  result: unknown;
  at: number;
}

export interface RequestLedgerOptions {
  capacity?: number;
  ttlMs?: number;
  now?: () => number;
  /** Called once a first call succeeded (the saved state keeps its result). */
  onSettled?: () => void;
}

/** What a request id may be: printable, bounded. */
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

export class RequestLedger {
  private readonly entries = new Map<string, Entry>();
  private readonly capacity: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly onSettled: () => void;

  constructor(options: RequestLedgerOptions = {}) {
    this.onSettled = options.onSettled ?? (() => {});
    this.capacity = options.capacity ?? 4096;
    this.ttlMs = options.ttlMs ?? 10 * 60_000;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Runs `act` once per request id. `what` names the call and `args` are its
   * arguments (their digest tells a retry from a different request). With an
   * empty request id the call is simply run (the client did not ask for
   * idempotency). A first call that failed is not remembered: retrying it
   * acts again, as the failure may have been transient.
   */
  async once<T>(requestId: string, what: string, args: unknown, act: () => Promise<T>): Promise<T> {
    if (requestId === '') return act();
    if (!REQUEST_ID.test(requestId)) {
      throw invalidArgument(`request id ${excerpt(requestId)} is invalid: use 1-128 printable ASCII characters without spaces`);
    }
    this.expire();
    const digest = digestOf(what, args);
    const known = this.entries.get(requestId);
    if (known) {
      if (known.digest !== digest) {
        throw new AgentError('already-exists', `request id ${excerpt(requestId)} was already used for a different request; use a new id for a new request`,
          { reason: 'REQUEST_ID_REUSED' });
      }
      return known.result as Promise<T>;
    }
    const result = act();
    const entry: Entry = { digest, result, at: this.now() };
    this.entries.set(requestId, entry);
    result.then((value) => {
      entry.value = { result: value };
      this.onSettled();
    }, () => {});
    while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    result.catch(() => {
      if (this.entries.get(requestId)?.result === result) this.entries.delete(requestId);
    });
    return result;
  }

  /** Request ids an earlier agent image answered (a takeover): a retry of one gets the same answer here. */
  restore(saved: readonly SettledRequest[]): void {
    for (const r of saved) {
      const result = Promise.resolve(r.result);
      this.entries.set(r.requestId, { digest: r.digest, result, value: { result: r.result }, at: r.at });
    }
    this.expire();
  }

  /** The ids whose first call succeeded, oldest first (calls still running, or failed, are not kept). */
  settled(): SettledRequest[] {
    this.expire();
    return [...this.entries].flatMap(([requestId, e]) => (e.value ? [{ requestId, digest: e.digest, result: e.value.result, at: e.at }] : []));
  }

  private expire(): void {
    const oldest = this.now() - this.ttlMs;
    for (const [id, e] of this.entries) {
      if (e.at >= oldest) break; // insertion order is age order
      this.entries.delete(id);
    }
  }
}

/** A stable digest of a call and its arguments (key order does not matter; bytes count). */
function digestOf(what: string, args: unknown): string {
  return crypto.createHash('sha256').update(what).update('\0').update(stableJson(args)).digest('hex');
}

function stableJson(v: unknown): string {
  if (v instanceof Uint8Array) return `b64:${Buffer.from(v).toString('base64')}`;
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'undefined';
}
