// One process inside a container (its init or an exec), as the core sees it.
import { failedPrecondition } from '../errors';
import type { ExitStatus, ProcessExit } from './exit-status';
import type { ProcessIO } from './process-io';
import { processStartTime } from './reaper';

export class ContainerProcess {
  pid: number | null = null;
  /** Milliseconds since the epoch when the runtime was asked to start the process; null before it started. */
  startedAt: number | null = null;
  /** The process's start time in clock ticks after boot (processStartTime): with the pid, names it for the whole uptime. */
  startTicks: number | null = null;
  /** Its container cgroup's OOM kill count when it started (an OOM kill after that is its); null when unknown. */
  oomKillsAtStart: number | null = null;
  /** The exit status record, once the process was reaped and its record made. */
  status: ExitStatus | null = null;
  /**
   * Set once a client has been given the exit status: v1 WaitProcess
   * collected it, or a client acknowledged it (acknowledge()). A collected
   * exec is forgotten once its output was read to the end too.
   */
  collected = false;
  /**
   * Called when a client acknowledges the status (the container forgets a
   * drained exec then); null for the init, which stays until the container goes.
   */
  onAcknowledged: (() => void) | null = null;
  /** The kernel reported the exit: the pid is no longer ours to signal. */
  private reaped = false;
  private exitedPromise: Promise<ExitStatus> | null = null;

  constructor(
    readonly containerId: string,
    readonly execId: string,
    readonly io: ProcessIO,
  ) {}

  /**
   * Records the pid of the running process and the promise of its exit;
   * `record` turns the reaper's report into the exit status record (it may
   * look things up, e.g. the container's OOM kill count).
   */
  running(pid: number, startedAt: number, exit: Promise<ProcessExit>, record: (exit: ProcessExit) => ExitStatus | Promise<ExitStatus>): void {
    this.pid = pid;
    this.startedAt = startedAt;
    this.startTicks = processStartTime(pid);
    this.exitedPromise = exit
      .then((e) => {
        // At once, in the reaper's turn: from here the pid may be recycled.
        this.reaped = true;
        return record(e);
      })
      .then((status) => {
        this.status = status;
        return status;
      });
  }

  /**
   * The process as an earlier agent image left it (taken over across an
   * exec in place): exited with `status` already, or running as `pid` with
   * its `exit` still to come. `startTicks` is what the earlier image read.
   */
  restore(saved: { pid: number | null; startedAt: number | null; startTicks: number | null; status: ExitStatus | null; collected: boolean; oomKillsAtStart: number | null }, exit: Promise<ProcessExit> | null, record: (exit: ProcessExit) => ExitStatus | Promise<ExitStatus>): void {
    this.collected = saved.collected;
    this.oomKillsAtStart = saved.oomKillsAtStart;
    if (saved.status) {
      this.pid = saved.pid;
      this.startedAt = saved.startedAt;
      this.startTicks = saved.startTicks;
      this.reaped = true;
      this.status = saved.status;
      this.exitedPromise = Promise.resolve(saved.status);
    } else if (saved.pid !== null && exit) {
      this.running(saved.pid, saved.startedAt ?? Date.now(), exit, record);
      this.startTicks = saved.startTicks;
    }
  }

  get isRunning(): boolean {
    return this.pid !== null && !this.reaped;
  }

  /** Resolves when the process has exited and its record is made; null if it never started. */
  exited(): Promise<ExitStatus> | null {
    return this.exitedPromise;
  }

  /**
   * A client has the exit status and needs it kept no longer (v2
   * acknowledges what WatchEvents delivered): it counts as collected, and an
   * exec whose output was read to the end is forgotten. Idempotent.
   * Failed-precondition while the process has not exited.
   */
  acknowledge(): void {
    if (this.status === null) {
      throw failedPrecondition(`process ${this.execId} in container ${this.containerId} has not exited: no exit status to acknowledge`);
    }
    this.collected = true;
    this.onAcknowledged?.();
  }
}
