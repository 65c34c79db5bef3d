// How a process ended, the same shape whichever protocol reported it.
//
// v2 reports every part (code or signal, core dump, OOM kill, times). v1
// reports one shell-style integer: the exit code, or 128 + the signal number
// when a signal ended the process. That integer is ambiguous: a process that
// called exit(137) and one killed by SIGKILL (9) both give 137. This client
// reads 129..192 (128 + a signal number from 1 to SIGRTMAX, 64 on Linux) as a
// signal, because that is what the agent means far more often, and flags the
// result `ambiguous`; 193..255 cannot be a signal and is read as a code. v1
// cannot say whether a core was dumped or the OOM killer struck: those are
// false, and `source` is "v1" so a caller can tell "no" from "unknown".
import type { ExitStatus__Output as WireExitStatusV2 } from '../generated/agent/v2/ExitStatus';

/** The highest signal number on Linux (SIGRTMAX). */
export const MAX_SIGNAL = 64;

export interface ExitStatus {
  /** The exit code; null when a signal ended the process. */
  code: number | null;
  /** The signal that ended the process; null when it exited. */
  signal: number | null;
  /** The kernel wrote a core dump. Always false from v1 (unknown). */
  coreDumped: boolean;
  /** The OOM killer ended the process. Always false from v1 (unknown). */
  oomKilled: boolean;
  /** When the process started, ms since the epoch; null when not reported (v1). */
  startedAtMs: number | null;
  /** When the process ended, ms since the epoch; null when not reported (v1). */
  exitedAtMs: number | null;
  /** The status as a shell shows it: the code, or 128 + signal. What v1's WaitProcess says. */
  shellStatus: number;
  /** Which protocol reported it: "v2" (every part exact) or "v1" (converted from the shell-style integer). */
  source: 'v1' | 'v2';
  /** The conversion guessed: a v1 status of 129..192 could also be an exit code. Never true from v2. */
  ambiguous: boolean;
}

/** v1's shell-style integer as an ExitStatus (see the header for the ambiguity). */
export function exitStatusFromV1(status: number): ExitStatus {
  const base = { coreDumped: false, oomKilled: false, startedAtMs: null, exitedAtMs: null, shellStatus: status, source: 'v1' as const };
  if (status > 128 && status - 128 <= MAX_SIGNAL) return { ...base, code: null, signal: status - 128, ambiguous: true };
  return { ...base, code: status, signal: null, ambiguous: false };
}

/** v2's ExitStatus message (signal 0: it exited with code). */
export function exitStatusFromV2(s: WireExitStatusV2): ExitStatus {
  const signaled = s.signal !== 0;
  return {
    code: signaled ? null : s.code,
    signal: signaled ? s.signal : null,
    coreDumped: s.core_dumped,
    oomKilled: s.oom_killed,
    startedAtMs: s.started_at_unix_ms || null,
    exitedAtMs: s.exited_at_unix_ms || null,
    shellStatus: signaled ? 128 + s.signal : s.code,
    source: 'v2',
    ambiguous: false,
  };
}
