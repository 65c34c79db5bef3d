// Child processes and their exit statuses.
//
// Container processes are started by a detached OCI runtime call, so when the
// runtime exits they are re-parented to the agent (as PID 1 in the guest, as a
// child subreaper elsewhere). The agent then waits for each of them by pid.
// Orphans nobody asked for are reaped too, but only zombies that
// child_process or node-pty are not waiting for: waitpid(-1) would steal their
// statuses. Statuses of orphans are kept for a while, because a container
// process may exit before the agent has read its pid file.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import { native } from '../../native/native';
import type { Logger } from '../log';
import type { ExitStatus } from './exit-status';

const KEEP_UNCLAIMED = 1024;

interface Watch {
  resolve(status: ExitStatus): void;
  reject(err: Error): void;
}

export class Reaper {
  private readonly watched = new Map<number, Watch[]>();
  private readonly unclaimed = new Map<number, ExitStatus>();
  /** Pids owned by child_process: libuv waits for these itself. */
  private readonly spawned = new Set<number>();
  private started = false;

  constructor(private readonly log: Logger) {}

  /** Becomes the reaper of orphaned descendants and starts listening for SIGCHLD. */
  start(): void {
    if (this.started) return;
    this.started = true;
    if (process.pid !== 1) native.setChildSubreaper();
    process.on('SIGCHLD', () => this.sweep());
    this.sweep();
  }

  /** child_process.spawn, with the pid recorded so the sweep never reaps it. */
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
    const child = spawn(command, args, options);
    const pid = child.pid;
    if (pid !== undefined) {
      this.spawned.add(pid);
      child.once('exit', () => this.spawned.delete(pid));
    }
    return child;
  }

  /** Resolves with the exit status of an adopted (or own) child `pid`. */
  wait(pid: number): Promise<ExitStatus> {
    const early = this.unclaimed.get(pid);
    if (early) {
      this.unclaimed.delete(pid);
      return Promise.resolve(early);
    }
    return new Promise<ExitStatus>((resolve, reject) => {
      const list = this.watched.get(pid) ?? [];
      list.push({ resolve, reject });
      this.watched.set(pid, list);
      this.collect(pid);
    });
  }

  /** Collects every exit that happened; called on SIGCHLD. */
  sweep(): void {
    for (const pid of [...this.watched.keys()]) this.collect(pid);
    for (const pid of this.zombieChildren()) {
      if (this.spawned.has(pid) || this.watched.has(pid)) continue;
      const status = this.tryWait(pid);
      if (!status) continue;
      this.log.debug({ child: pid, code: status.code, signal: status.signal }, 'reaped orphan');
      this.unclaimed.set(pid, status);
      if (this.unclaimed.size > KEEP_UNCLAIMED) {
        this.unclaimed.delete(this.unclaimed.keys().next().value!);
      }
    }
  }

  private collect(pid: number): void {
    let status: ExitStatus | null;
    try {
      status = this.tryWait(pid);
    } catch (err) {
      const watchers = this.watched.get(pid) ?? [];
      this.watched.delete(pid);
      const e = new Error(
        `cannot wait for process ${pid}: ${(err as Error).message} (the agent must be PID 1 or a child subreaper)`,
      );
      for (const w of watchers) w.reject(e);
      return;
    }
    if (!status) return;
    const watchers = this.watched.get(pid) ?? [];
    this.watched.delete(pid);
    for (const w of watchers) w.resolve(status);
  }

  private tryWait(pid: number): ExitStatus | null {
    const r = native.waitpid(pid);
    return r && { code: r.exitCode, signal: r.signal, at: new Date() };
  }

  /** Pids of our children that are zombies, from /proc. */
  private zombieChildren(): number[] {
    const me = process.pid;
    const out: number[] = [];
    for (const pid of childPids(me)) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
        // Fields after the command name, which may itself contain spaces and parens.
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (fields[0] === 'Z' && Number(fields[1]) === me) out.push(pid);
      } catch {
        // Gone already.
      }
    }
    return out;
  }
}

/** Direct children of `pid`: /proc/PID/task/TID/children where the kernel has it, else a scan. */
function childPids(pid: number): number[] {
  try {
    const tids = fs.readdirSync(`/proc/${pid}/task`);
    return tids.flatMap((tid) =>
      fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1').split(' ').filter(Boolean).map(Number),
    );
  } catch {
    return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  }
}
