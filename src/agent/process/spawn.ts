// Starting programs (the OCI runtime, ip, a new agent binary's pre-flight)
// with posix_spawn through the addon instead of child_process. child_process
// forks: fork(2) copies the page tables of an agent that grows with every
// process it tracks, so each exec got slower as there were more
// (bench/scale.ts). posix_spawn does not copy them (glibc: CLONE_VFORK).
//
// What comes back behaves as much of a ChildProcess as the agent uses: pid,
// stdin/stdout/stderr ('pipe' is a socketpair, as child_process makes it: the
// child's end is ours + 1 in inode numbers, which ProcessIO relies on),
// kill(), exitCode/signalCode, and 'exit', 'close' and 'error' (a program
// that cannot be started: no pid, 'error' on the next tick). The reaper waits
// for the pid like any child of the agent.
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { native } from '../../native/native';
import type { ProcessExit } from './exit-status';

const SIGNAL_NAMES = new Map(Object.entries(os.constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

class SpawnedChild extends EventEmitter {
  pid: number | undefined;
  stdio: Array<net.Socket | null> = [];
  stdin: Writable | null = null;
  stdout: Readable | null = null;
  stderr: Readable | null = null;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  killed = false;

  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    if (this.pid === undefined || this.exitCode !== null || this.signalCode !== null) return false;
    try {
      process.kill(this.pid, signal);
      this.killed = true;
      return true;
    } catch {
      return false;
    }
  }
}

type StdioItem = 'pipe' | 'ignore' | 'inherit' | number | null | undefined;

/** child_process's stdio option as one item per fd (at least three). */
function stdioItems(stdio: SpawnOptions['stdio']): StdioItem[] {
  if (stdio === undefined) return ['pipe', 'pipe', 'pipe'];
  if (typeof stdio === 'string') return [stdio, stdio, stdio] as StdioItem[];
  const items = [...(stdio as StdioItem[])];
  while (items.length < 3) items.push(undefined);
  for (const item of items) {
    if (!(item === 'pipe' || item === 'ignore' || item === 'inherit' || typeof item === 'number' || item == null)) {
      throw new TypeError(`stdio ${String(item)} is not supported here (pipe, ignore, inherit or an fd)`);
    }
  }
  return items;
}

/** The error child_process gives for a program it cannot start ("spawn FILE ENOENT"). */
function spawnError(command: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code ?? 'UNKNOWN';
  return Object.assign(new Error(`spawn ${command} ${code}`), { code, errno: (err as NodeJS.ErrnoException).errno, syscall: `spawn ${command}`, path: command });
}

/**
 * Starts `command` with `args`; `wait` is how its exit is learnt (the
 * reaper's wait for that pid). Options: stdio, env, cwd (nothing else).
 */
export function spawnChild(command: string, args: readonly string[], options: SpawnOptions, wait: (pid: number) => Promise<ProcessExit>): ChildProcess {
  const child = new SpawnedChild();
  const ours: Array<number | null> = [];
  const theirs: number[] = [];
  const fail = (err: unknown) => {
    for (const fd of [...ours, ...theirs]) if (fd !== null) closeQuietly(fd);
    process.nextTick(() => child.emit('error', err));
    return child as unknown as ChildProcess;
  };
  let childFds: number[];
  try {
    childFds = stdioItems(options.stdio).map((item, i) => {
      ours[i] = null;
      if (item === 'pipe') {
        const [parent, peer] = native.socketpair();
        ours[i] = parent;
        theirs.push(peer);
        return peer;
      }
      if (item === 'inherit') return i;
      return typeof item === 'number' ? item : -1;
    });
  } catch (err) {
    return fail(err);
  }
  try {
    const env = Object.entries(options.env ?? process.env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
    child.pid = native.spawn(command, [command, ...args], env, typeof options.cwd === 'string' ? options.cwd : (options.cwd?.toString() ?? ''), childFds);
  } catch (err) {
    return fail(err instanceof TypeError ? err : spawnError(command, err));
  }
  for (const fd of theirs) closeQuietly(fd);
  child.stdio = ours.map((fd, i) => (fd === null ? null : new net.Socket({ fd, readable: i !== 0, writable: i === 0 || i > 2 })));
  child.stdin = child.stdio[0] ?? null;
  child.stdout = child.stdio[1] ?? null;
  child.stderr = child.stdio[2] ?? null;
  // 'close' once it has exited and its output streams have closed, as child_process does.
  const open = new Set(child.stdio.slice(1).filter((s): s is net.Socket => s !== null));
  let exited = false;
  const maybeClose = () => {
    if (exited && open.size === 0) child.emit('close', child.exitCode, child.signalCode);
  };
  for (const s of open) {
    s.once('close', () => {
      open.delete(s);
      maybeClose();
    });
  }
  // The child keeps the process alive until it has exited, as child_process's does (the SIGCHLD handler does not).
  const alive = setInterval(() => {}, 1 << 30);
  wait(child.pid).finally(() => clearInterval(alive)).then(
    (status) => {
      child.exitCode = status.code;
      child.signalCode = status.signal === null ? null : (SIGNAL_NAMES.get(status.signal) ?? null);
      exited = true;
      child.emit('exit', child.exitCode, child.signalCode);
      maybeClose();
    },
    (err: unknown) => child.emit('error', err),
  );
  return child as unknown as ChildProcess;
}

/** close(2), for an fd that may already be closed. */
export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // Not open.
  }
}
