// Where a container and its processes stand, as plain data: what a client
// that restarted needs to re-attach (which processes exist, whether they
// still run, how they ended, which output offsets are still held, where
// stdin stands). Version-free: each protocol presents it in its own messages.
import type { ContainerProcess } from '../process/container-process';
import type { ExitStatus } from '../process/exit-status';
import type { StreamState } from '../stdio/output-stream';
import type { Container, ContainerState } from './container';

export interface ProcessSnapshot {
  execId: string;
  /** null before the runtime reported it. */
  pid: number | null;
  running: boolean;
  terminal: boolean;
  /** Milliseconds since the epoch when the runtime reported the pid; null before. */
  startedAt: number | null;
  /** Set once the process has exited and its record is made. */
  exitStatus: ExitStatus | null;
  stdout: StreamState;
  stderr: StreamState;
  /** Bytes of stdin accepted so far: the offset of the next write. */
  stdin: { written: number };
}

export interface ContainerSnapshot {
  id: string;
  state: ContainerState;
  /** Milliseconds since the epoch when the container was created. */
  createdAt: number;
  init: ProcessSnapshot;
  /** The exec'd processes the container still knows, in the order they were exec'd. */
  execs: ProcessSnapshot[];
}

/** Streams of a process whose stdio the runtime has not been handed yet (an exec being started). */
const NOT_ATTACHED: StreamState = Object.freeze({ start: 0, end: 0, ended: false });

export function snapshotProcess(proc: ContainerProcess): ProcessSnapshot {
  // The output streams exist once the runtime was spawned with the stdio (ProcessIO.attach).
  const attached = proc.io.attached;
  const io = attached ? proc.io.snapshot() : { stdout: { ...NOT_ATTACHED }, stderr: { ...NOT_ATTACHED }, stdin: { written: proc.io.written } };
  return {
    execId: proc.execId,
    pid: proc.pid,
    running: proc.isRunning,
    terminal: proc.io.terminal,
    startedAt: proc.startedAt,
    exitStatus: proc.status,
    stdout: io.stdout,
    stderr: io.stderr,
    stdin: io.stdin,
  };
}

export function snapshotContainer(container: Container): ContainerSnapshot {
  return {
    id: container.id,
    state: container.state,
    createdAt: container.createdAt,
    init: snapshotProcess(container.init),
    execs: container.execProcesses().map(snapshotProcess),
  };
}
