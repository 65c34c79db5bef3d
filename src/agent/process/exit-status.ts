// How a process ended, as the core records it: the kernel's wait status
// taken apart (code or signal, core dump) and what the agent knows beside it
// (when the process started and ended, whether the OOM killer ended it).
// Protocols present it in their own way (v1: one shell-style integer, in
// src/handlers/v1/conversions.ts); the core keeps every part.
import os from 'node:os';

/** What waitpid(2) told the reaper about one process. */
export interface ProcessExit {
  /** Exit code when the process exited; null when a signal ended it. */
  code: number | null;
  /** Signal number when a signal ended it; null otherwise. */
  signal: number | null;
  /** The kernel wrote a core dump (WCOREDUMP). */
  coreDumped: boolean;
  /** Milliseconds since the epoch when the process was reaped. */
  exitedAt: number;
}

export interface ExitStatus extends ProcessExit {
  /**
   * The process was SIGKILLed and its container's cgroup counted an OOM kill
   * after the process started. False where the container has no cgroup of
   * its own with a memory controller (no count to go by).
   */
  oomKilled: boolean;
  /**
   * Milliseconds since the epoch when the agent asked the runtime to start
   * the process: never after its real start (nor its exit, which may come
   * before the runtime reports the pid).
   */
  startedAt: number;
}

export const SIGKILL = os.constants.signals.SIGKILL;

/**
 * Whether a process that ended this way was the OOM killer's: killed by
 * SIGKILL while its container's oom_kill count rose. `killsAtStart` is the
 * count when it started, `killsAtExit` when it was reaped; null: unknown (no
 * cgroup of its own), which counts as no. The kernel raises the count before
 * it sends the SIGKILL, so a count read after the reap includes the kill.
 */
export function oomKilled(exit: ProcessExit, killsAtStart: number | null, killsAtExit: number | null): boolean {
  return exit.signal === SIGKILL && killsAtStart !== null && killsAtExit !== null && killsAtExit > killsAtStart;
}

/** The record of an ended process. */
export function exitStatus(exit: ProcessExit, startedAt: number, oomKilledFlag: boolean): ExitStatus {
  return {
    code: exit.code,
    signal: exit.signal,
    coreDumped: exit.coreDumped,
    oomKilled: oomKilledFlag,
    startedAt,
    exitedAt: exit.exitedAt,
  };
}
