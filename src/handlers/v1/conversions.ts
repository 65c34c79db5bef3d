// v1's presentation of core records. v1 reports how a process ended as one
// integer, the shell's convention; the core keeps the parts apart
// (process/exit-status.ts) and knows nothing of this.
import type { ExitStatus } from '../../agent/process/exit-status';

/**
 * WaitProcess' status: the exit code, or 128 + the signal number for a
 * process a signal ended (SIGKILL: 137), as `$?` in a shell. The core's
 * other facts (core dump, OOM kill, times) have no place in v1.
 */
export function shellStatus(status: Pick<ExitStatus, 'code' | 'signal'>): number {
  return status.signal !== null ? 128 + status.signal : (status.code ?? 255);
}
