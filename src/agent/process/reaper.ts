// Child processes and their exit statuses.
//
// Container processes are started by a detached OCI runtime call, so when the
// runtime exits they are re-parented to the agent (as PID 1 in the guest, as a
// child subreaper elsewhere). The agent then waits for each of them by pid.
// The programs the agent runs itself are started by spawn() (spawn.ts, not
// child_process), so every child is the reaper's to reap: orphans nobody
// asked for too. Their statuses are kept for a while, because a container
// process may exit before the agent has read its pid file. (Nothing calls
// waitpid(-1): a library's own child, were there one, would keep its status.)
//
// Pids are recycled, so a kept status is keyed by pid *and* the process's
// start time (field 22 of /proc/PID/stat, read from the zombie just before it
// is reaped), and kept only briefly. The rule wait(pid) follows:
// - /proc/PID/stat is readable: PID belongs to a process that exists now
//   (running, or a zombie not yet reaped). Only a status with that very start
//   time is its own; any other kept status for PID is an earlier process's,
//   which is dropped, and the wait goes on for the live one.
// - PID is gone: its process exited and was reaped already (by a sweep), so
//   the newest kept status for PID is taken. That is safe because statuses
//   live only `unclaimedTtlMs`: the caller read the pid from the runtime's
//   pid file moments ago (a launch is bounded by the runtime's deadline), and
//   for an older process with the same pid to have left a status in that
//   window, the pid space would have had to wrap around within it, and the
//   newer process, being reaped too, would have left the newer status.
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import { native } from '../../native/native';
import type { Logger } from '../log';
import type { ProcessExit } from './exit-status';
import { spawnChild } from './spawn';

const MAX_UNCLAIMED = 1024;
/** Longer than the OCI runtime's default deadline (60 s), so a slow launch still finds an early exit. */
const UNCLAIMED_TTL_MS = 120_000;

export interface ReaperOptions {
  /** Unclaimed orphan statuses kept at most; the oldest go first. */
  maxUnclaimed?: number;
  /** Unclaimed statuses older than this are dropped. */
  unclaimedTtlMs?: number;
  /** A process's start time, null if it is gone; processStartTime by default (tests stand in). */
  startTimeOf?: (pid: number) => number | null;
}

interface Unclaimed {
  pid: number;
  /** null if the zombie's stat could not be read (it then matches by pid only). */
  startTime: number | null;
  status: ProcessExit;
  /** performance.now() when reaped. */
  reapedAt: number;
}

interface Watch {
  resolve(status: ProcessExit): void;
  reject(err: Error): void;
}

export class Reaper {
  private readonly watched = new Map<number, Watch[]>();
  /** By "pid:starttime", in the order reaped (so the oldest is first). */
  private readonly unclaimed = new Map<string, Unclaimed>();
  private started = false;

  private readonly maxUnclaimed: number;
  private readonly unclaimedTtlMs: number;
  private readonly startTimeOf: (pid: number) => number | null;
  private readonly onSigchld = () => this.sweep();

  constructor(
    private readonly log: Logger,
    options: ReaperOptions = {},
  ) {
    this.maxUnclaimed = options.maxUnclaimed ?? MAX_UNCLAIMED;
    this.unclaimedTtlMs = options.unclaimedTtlMs ?? UNCLAIMED_TTL_MS;
    this.startTimeOf = options.startTimeOf ?? processStartTime;
  }

  /** Orphan statuses kept for a later wait(). */
  get unclaimedCount(): number {
    return this.unclaimed.size;
  }

  /** Becomes the reaper of orphaned descendants and starts listening for SIGCHLD. */
  start(): void {
    if (this.started) return;
    this.started = true;
    if (process.pid !== 1) native.setChildSubreaper();
    process.on('SIGCHLD', this.onSigchld);
    // Zombies from before (a previous agent image's children that exited in the gap): all of them, by state.
    this.sweepByScan();
  }

  /** Stops listening for SIGCHLD (the process stays a subreaper). */
  stop(): void {
    if (!this.started) return;
    this.started = false;
    process.removeListener('SIGCHLD', this.onSigchld);
  }

  /**
   * Starts a program (spawn.ts: posix_spawn, whose cost does not grow with
   * the agent) and waits for it like any other child: its 'exit' comes from
   * this reaper's wait.
   */
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
    // Its exit is learnt on SIGCHLD: a reaper that spawns listens.
    this.start();
    return spawnChild(command, args, options, (pid) => this.waitForNew(pid));
  }

  /**
   * wait() for a child spawn() has just started. No status of it can be kept
   * yet (it is reaped on the event loop, which has not turned), so any kept
   * for its pid is an earlier process's: dropped without reading its start
   * time, which would block while the child is still inside execve.
   */
  private waitForNew(pid: number): Promise<ProcessExit> {
    for (const [key, u] of this.unclaimed) if (u.pid === pid) this.unclaimed.delete(key);
    return this.watch(pid);
  }

  /**
   * Resolves with the exit status of an adopted (or own) child `pid`. With
   * `startTime` (a process taken over from an earlier agent image, named by
   * pid and start time): its status if it was reaped already (it died while
   * no image was running), else it is waited for while `pid` is still that
   * process; a pid now held by another process means the one asked for is
   * gone without a status kept: null.
   */
  wait(pid: number): Promise<ProcessExit>;
  wait(pid: number, startTime: number | null): Promise<ProcessExit | null>;
  wait(pid: number, startTime?: number | null): Promise<ProcessExit | null> {
    if (startTime !== undefined && startTime !== null) {
      const key = `${pid}:${startTime}`;
      const kept = this.unclaimed.get(key);
      if (kept) {
        this.unclaimed.delete(key);
        return Promise.resolve(kept.status);
      }
      const live = this.startTimeOf(pid);
      if (live !== null && live !== startTime) return Promise.resolve(null);
    }
    const early = this.claim(pid);
    if (early) return Promise.resolve(early);
    return this.watch(pid);
  }

  /** Resolves when `pid` exits (collected on SIGCHLD, or now if it already has). */
  private watch(pid: number): Promise<ProcessExit> {
    return new Promise<ProcessExit>((resolve, reject) => {
      const list = this.watched.get(pid) ?? [];
      list.push({ resolve, reject });
      this.watched.set(pid, list);
      this.collect(pid);
    });
  }

  /**
   * Collects every exit that happened; called on SIGCHLD. The work is per
   * exited child, whatever the number of processes tracked: the kernel names
   * one exited child at a time without reaping it (native.firstExited), and
   * it is reaped here, watched or an orphan. Every child of the agent is
   * started by spawn() (no child_process: nobody else waits for a child).
   */
  sweep(): void {
    for (let last = 0; ; ) {
      let pid: number;
      try {
        pid = native.firstExited();
      } catch (err) {
        this.log.warn({ err }, 'reaper: waitid failed; scanning the children instead');
        this.sweepByScan();
        return;
      }
      if (pid === 0) break;
      if (pid === last) {
        // Named again: it could not be reaped (never seen; a guard against spinning here).
        this.log.warn({ child: pid }, 'reaper: an exited child could not be reaped; scanning the children instead');
        this.sweepByScan();
        return;
      }
      last = pid;
      if (this.watched.has(pid)) this.collect(pid);
      else this.reapOrphan(pid);
    }
    this.prune();
  }

  /** The sweep by reading every child's state: at start (zombies left by a previous image) and as a fallback. */
  private sweepByScan(): void {
    for (const pid of [...this.watched.keys()]) this.collect(pid);
    for (const pid of this.zombieChildren()) {
      if (this.watched.has(pid)) continue;
      this.reapOrphan(pid);
    }
    this.prune();
  }

  private reapOrphan(pid: number): void {
    // Read while it is a zombie: once reaped, its pid may go to anyone.
    const startTime = this.startTimeOf(pid);
    const status = this.tryWait(pid);
    if (!status) return;
    this.log.debug({ child: pid, code: status.code, signal: status.signal }, 'reaped orphan');
    const key = `${pid}:${startTime ?? '?'}`;
    this.unclaimed.delete(key);
    this.unclaimed.set(key, { pid, startTime, status, reapedAt: performance.now() });
  }

  /** The kept status of `pid`'s process, removed from the table; see the rule at the top. */
  private claim(pid: number): ProcessExit | null {
    this.prune();
    const live = this.startTimeOf(pid);
    let match: Unclaimed | null = null;
    for (const [key, u] of this.unclaimed) {
      if (u.pid !== pid) continue;
      if (live === null) {
        match = u; // the table is in reaping order: the last one is the newest
      } else if (u.startTime === live) {
        match = u;
      } else {
        this.unclaimed.delete(key); // an earlier process that had the same pid
      }
    }
    if (!match) return null;
    this.unclaimed.delete(`${match.pid}:${match.startTime ?? '?'}`);
    return match.status;
  }

  /** Drops statuses past their age, then the oldest past the count limit. */
  private prune(): void {
    const oldest = performance.now() - this.unclaimedTtlMs;
    for (const [key, u] of this.unclaimed) {
      if (u.reapedAt >= oldest && this.unclaimed.size <= this.maxUnclaimed) break;
      this.unclaimed.delete(key);
    }
  }

  private collect(pid: number): void {
    let status: ProcessExit | null;
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

  private tryWait(pid: number): ProcessExit | null {
    const r = native.waitpid(pid);
    return r && { code: r.exitCode, signal: r.signal, coreDumped: r.coreDumped, exitedAt: Date.now() };
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

/**
 * When the process started, in clock ticks after boot (field 22 of
 * /proc/PID/stat; readable for a zombie too); null if there is no such process.
 * With the pid it names one process for the whole uptime.
 */
export function processStartTime(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Field 3 is the first after the command name (which may hold spaces and parens).
    const value = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3]);
    return Number.isSafeInteger(value) ? value : null;
  } catch {
    return null;
  }
}
