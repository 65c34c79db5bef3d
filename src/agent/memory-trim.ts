// The memory a burst of work freed goes back to the kernel once it is over.
// V8 shrinks its own heap when the agent goes idle, but glibc's malloc keeps
// what was freed below the top of its heaps (and in each thread's arena)
// resident until asked. Measured with 1,000 execs on the host (docs/
// machine-facts.md, "Memory after a burst"): RssAnon 87 MB at the end of the
// burst, 35 MB 30 s later on V8's own, 31 MB after malloc_trim. A trim with
// nothing to give back costs ~10 µs, so it simply runs on a timer.
import type { Logger } from './log';
import { native } from '../native/native';

export const MEMORY_TRIM_INTERVAL_MS = 20_000;

/** Trims malloc's free memory every `everyMs` (the timer keeps nobody alive); returns a stop function. */
export function startMemoryTrim(log: Logger, everyMs = MEMORY_TRIM_INTERVAL_MS, trim: () => boolean = () => native.trimMemory()): () => void {
  const timer = setInterval(() => {
    try {
      trim();
    } catch (err) {
      // No addon (a bundle run without it): nothing to trim with, and nothing lost.
      log.warn({ err }, 'cannot give freed memory back to the kernel (malloc_trim): memory after bursts stays resident');
      clearInterval(timer);
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
