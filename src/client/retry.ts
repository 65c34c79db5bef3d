// Retrying a call whose connection dropped. Only UNAVAILABLE is retried: it
// is what grpc-js reports when the connection is lost before or during a call
// (or cannot be made). Whether the agent acted on the lost call is unknown;
// v2's request ids make the retry safe (the agent answers a repeated id with
// the first call's result and acts once). Attempts are bounded and spaced by
// exponential backoff with jitter.
import * as grpc from '@grpc/grpc-js';
import { grpcCode } from './errors';

export interface RetryPolicy {
  /** Attempts in all, the first included; 1 = never retry. */
  attempts: number;
  /** Delay before the first retry; doubled for each further one. */
  initialDelayMs: number;
  /** Largest delay between two attempts. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, initialDelayMs: 100, maxDelayMs: 2000 };

/** The delay before retry number `retry` (1 for the first retry): exponential, capped, jittered down to half. */
export function backoffDelay(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** (retry - 1));
  return Math.round(exp / 2 + (exp / 2) * random());
}

export const isUnavailable = (err: unknown): boolean => grpcCode(err) === grpc.status.UNAVAILABLE;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `call` until it succeeds, fails with something other than UNAVAILABLE,
 * or has been tried `policy.attempts` times (then the last error is thrown).
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  call: (attempt: number) => Promise<T>,
  onRetry: (err: unknown, retry: number, delayMs: number) => void = () => {},
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(attempt);
    } catch (err) {
      if (!isUnavailable(err) || attempt >= policy.attempts) throw err;
      const delay = backoffDelay(policy, attempt);
      onRetry(err, attempt, delay);
      await sleep(delay);
    }
  }
}
