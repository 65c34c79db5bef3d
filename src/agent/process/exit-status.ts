// How a process ended, in one version-free shape. v1 flattens it to a
// shell-style integer; later versions keep its parts.

export interface ExitStatus {
  /** Exit code when the process exited; null when a signal ended it. */
  code: number | null;
  /** Signal number when a signal ended it; null otherwise. */
  signal: number | null;
  /** When the agent learned of the exit. */
  at: Date;
}

/** The shell convention: the exit code, or 128 + the signal number. */
export function shellStatus(status: ExitStatus): number {
  return status.signal !== null ? 128 + status.signal : (status.code ?? 255);
}
