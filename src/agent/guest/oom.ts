// OOM kills of containers, for GetOOMEvent (and later v2 WatchEvents).
//
// Source: the `oom_kill` counter in memory.events of each container's own
// cgroup (v2). Each file is watched with fs.watch (inotify): the kernel raises
// a modify event on memory.events whenever one of its counters changes (see
// the cgroup v2 documentation), so a kill is seen within milliseconds and an
// idle guest reads nothing. A timer every 500 ms only reconciles the set of
// watched containers with the sandbox (which has no create/remove hooks) and
// re-reads the files whose watch could not be set up (inotify limits).
//
// A container without a cgroup of its own (the OCI runtime ran with cgroups
// disabled, as on development hosts, so it sits in the agent's cgroup or the
// root) or without the memory controller is skipped silently: its OOM kills
// cannot be told apart from anyone else's.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log';
import type { EventQueue } from './event-queue';

export interface OomEvent {
  containerId: string;
  /** Milliseconds since the epoch when the agent saw the kill. */
  at: number;
}

/** A container as the watcher needs it: its id and its init's pid while that runs. */
export interface OomTarget {
  id: string;
  pid: number | null;
}

export interface OomWatcherOptions {
  targets(): OomTarget[];
  queue: EventQueue<OomEvent>;
  log: Logger;
  cgroupRoot?: string;
  procRoot?: string;
  pollMs?: number;
}

interface Watch {
  file: string;
  /** null: fs.watch failed, the timer polls the file instead. */
  watcher: fs.FSWatcher | null;
  lastCount: number;
  checking: Promise<void> | null;
  again: boolean;
}

export class OomWatcher {
  private readonly watches = new Map<string, Watch>();
  /** Containers already found to have no usable cgroup, by the pid that was checked. */
  private readonly skipped = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private syncing: Promise<void> | null = null;
  /** OOM events seen since start. */
  events = 0;

  constructor(private readonly options: OomWatcherOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sync(), this.options.pollMs ?? 500);
    this.timer.unref();
    void this.sync();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const w of this.watches.values()) w.watcher?.close();
    this.watches.clear();
    this.skipped.clear();
  }

  /** Reconciles the watched set with the containers; polls unwatchable files. Never throws. */
  sync(): Promise<void> {
    this.syncing ??= this.syncOnce()
      .catch((err: unknown) => this.options.log.warn({ err }, 'OOM watcher: sync failed'))
      .finally(() => (this.syncing = null));
    return this.syncing;
  }

  /** Container ids whose memory.events is watched (for tests and logs). */
  watched(): string[] {
    return [...this.watches.keys()];
  }

  private async syncOnce(): Promise<void> {
    const targets = this.options.targets();
    const ids = new Set(targets.map((t) => t.id));
    for (const [id, w] of this.watches) {
      if (ids.has(id)) continue;
      await this.check(id, w); // a last look: the kill may be why it went away
      w.watcher?.close();
      this.watches.delete(id);
    }
    for (const id of this.skipped.keys()) if (!ids.has(id)) this.skipped.delete(id);

    for (const t of targets) {
      const w = this.watches.get(t.id);
      if (w) {
        if (!w.watcher) await this.check(t.id, w);
        continue;
      }
      if (t.pid === null || this.skipped.get(t.id) === t.pid) continue;
      const file = await this.memoryEventsOf(t.pid);
      if (file === null) {
        this.options.log.debug({ container: t.id }, 'OOM watcher: no cgroup of its own with a memory controller; not watched');
        this.skipped.set(t.id, t.pid);
        continue;
      }
      await this.add(t.id, file);
    }
  }

  /** memory.events of the process's cgroup if it is the container's own, else null. */
  private async memoryEventsOf(pid: number): Promise<string | null> {
    const proc = this.options.procRoot ?? '/proc';
    const [theirs, ours] = await Promise.all([cgroupOf(path.join(proc, String(pid))), cgroupOf(path.join(proc, 'self'))]);
    if (theirs === null || theirs === '/' || theirs === ours) return null;
    const file = path.join(this.options.cgroupRoot ?? '/sys/fs/cgroup', theirs, 'memory.events');
    return fs.existsSync(file) ? file : null;
  }

  private async add(id: string, file: string): Promise<void> {
    // A new cgroup starts at 0, so kills already counted happened to this container: report them.
    const w: Watch = { file, watcher: null, lastCount: 0, checking: null, again: false };
    this.watches.set(id, w);
    try {
      w.watcher = fs.watch(file, { persistent: false }, () => void this.check(id, w));
      w.watcher.on('error', (err) => {
        this.options.log.warn({ err, container: id, file }, 'OOM watcher: watch failed, polling instead');
        w.watcher?.close();
        w.watcher = null;
      });
    } catch (err) {
      this.options.log.warn({ err, container: id, file }, 'OOM watcher: cannot watch, polling instead');
    }
    this.options.log.debug({ container: id, file, inotify: w.watcher !== null }, 'OOM watcher: watching');
    await this.check(id, w);
  }

  /** Reads oom_kill; one event per increase seen. Concurrent calls coalesce into one more read. */
  private check(id: string, w: Watch): Promise<void> {
    if (w.checking) {
      w.again = true;
      return w.checking;
    }
    w.checking = (async () => {
      do {
        w.again = false;
        const count = await readOomKill(w.file);
        if (count !== null && count > w.lastCount) {
          w.lastCount = count;
          this.events++;
          this.options.log.warn({ container: id, oomKills: count }, 'container OOM-killed');
          this.options.queue.push({ containerId: id, at: Date.now() });
        }
      } while (w.again);
    })().finally(() => (w.checking = null));
    return w.checking;
  }
}

/** The cgroup v2 path of a process ("0::/path" in <procDir>/cgroup); null if unreadable. */
async function cgroupOf(procDir: string): Promise<string | null> {
  const text = await fsp.readFile(path.join(procDir, 'cgroup'), 'utf8').catch(() => null);
  if (text === null) return null;
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  return line ? line.slice(3) : null;
}

async function readOomKill(file: string): Promise<number | null> {
  const text = await fsp.readFile(file, 'utf8').catch(() => null);
  const m = text === null ? null : /^oom_kill (\d+)$/m.exec(text);
  return m ? Number(m[1]) : null;
}
