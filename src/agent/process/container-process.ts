// One process inside a container (its init or an exec), as the core sees it.
import type { ExitStatus } from './exit-status';
import type { ProcessIO } from './process-io';

export class ContainerProcess {
  pid: number | null = null;
  status: ExitStatus | null = null;
  /** Set once a client has been given the exit status. */
  collected = false;
  private exitedPromise: Promise<ExitStatus> | null = null;

  constructor(
    readonly containerId: string,
    readonly execId: string,
    readonly io: ProcessIO,
  ) {}

  /** Records the pid of the running process and the promise of its exit. */
  running(pid: number, exit: Promise<ExitStatus>): void {
    this.pid = pid;
    this.exitedPromise = exit.then((status) => {
      this.status = status;
      return status;
    });
  }

  get isRunning(): boolean {
    return this.pid !== null && this.status === null;
  }

  /** Resolves when the process has exited; null if it never started. */
  exited(): Promise<ExitStatus> | null {
    return this.exitedPromise;
  }
}
