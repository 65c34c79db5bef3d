// OOM kills of containers, published as oom-kill events on the core's event
// bus (v1 GetOOMEvent takes them from there), and the OOM kill counts the
// containers' exit statuses are judged by (OomKillCounts).
//
// Which containers: the watcher follows the bus. A container's
// container-state `created` starts its watch (the cgroup is found through the
// pid of its first process, from the process-started event published just
// before), `removed` ends it. Nothing polls the sandbox.
//
// Source: the `oom_kill` counter in memory.events of each container's own
// cgroup (v2). Each file is watched with fs.watch (inotify): the kernel raises
// a modify event on memory.events whenever one of its counters changes (see
// the cgroup v2 documentation), so a kill is seen within milliseconds and an
// idle guest reads nothing. Only a file whose watch could not be set up
// (inotify limits) is re-read on a timer, which runs while there is one.
//
// A container without a cgroup of its own (the OCI runtime ran with cgroups
// disabled, as on development hosts, so it sits in the agent's cgroup or the
// root) or without the memory controller is skipped silently: its OOM kills
// cannot be told apart from anyone else's, and its count is null.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { OomKillCounts } from '../core/container';
import type { CoreEvent, EventBus, OomKillEvent, Sequenced } from '../core/events';
import type { Logger } from '../log';

export type OomEvent = OomKillEvent;

export interface OomWatcherOptions {
  events: EventBus;
  log: Logger;
  cgroupRoot?: string;
  procRoot?: string;
  /** How often a memory.events that could not be watched is re-read. */
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

export class OomWatcher implements OomKillCounts {
  private readonly watches = new Map<string, Watch>();
  /** The pid of each container's first process (its init), until its watch is set up. */
  private readonly firstPids = new Map<string, number>();
  /** Watches being set up (finding the cgroup), by container id. */
  private readonly setups = new Map<string, Promise<void>>();
  /** Last looks at the files of removed containers, still running. */
  private readonly closing = new Set<Promise<void>>();
  private unsubscribe: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** OOM events seen since start. */
  events = 0;

  constructor(private readonly options: OomWatcherOptions) {}

  /** Follows the bus from now on. */
  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.options.events.subscribe((item) => this.onEvent(item));
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.stopPolling();
    for (const w of this.watches.values()) w.watcher?.close();
    this.watches.clear();
    this.firstPids.clear();
    this.setups.clear();
  }

  /** Container ids whose memory.events is watched (for tests and logs). */
  watched(): string[] {
    return [...this.watches.keys()];
  }

  /** Resolves once every watch being set up is, and every read under way is done. Never rejects. */
  async settled(): Promise<void> {
    for (;;) {
      const pending = [...this.setups.values(), ...this.closing, ...[...this.watches.values()].map((w) => w.checking)].filter((p) => p !== null);
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  /**
   * The container cgroup's oom_kill count, read now (so a kill the kernel
   * counted before this call is in it; a rise is also published); null when
   * the container is not watched (no cgroup of its own, not created yet, removed).
   */
  async count(containerId: string): Promise<number | null> {
    await this.setups.get(containerId);
    const w = this.watches.get(containerId);
    if (!w) return null;
    await this.check(containerId, w);
    return w.lastCount;
  }

  private onEvent({ event }: Sequenced<CoreEvent>): void {
    if (event.type === 'process-started') {
      if (!this.firstPids.has(event.containerId)) this.firstPids.set(event.containerId, event.pid);
    } else if (event.type === 'container-state') {
      if (event.state === 'created') this.watch(event.containerId);
      else if (event.state === 'removed') this.unwatch(event.containerId);
    }
  }

  private watch(id: string): void {
    const pid = this.firstPids.get(id);
    this.firstPids.delete(id);
    if (pid === undefined || this.watches.has(id) || this.setups.has(id)) return;
    const setup = this.memoryEventsOf(pid)
      .then(async (file) => {
        if (this.setups.get(id) !== setup) return; // removed (or stopped) meanwhile
        if (file === null) {
          this.options.log.debug({ container: id }, 'OOM watcher: no cgroup of its own with a memory controller; not watched');
          return;
        }
        await this.add(id, file);
      })
      .catch((err: unknown) => this.options.log.warn({ err, container: id }, 'OOM watcher: cannot set up the watch'))
      .finally(() => {
        if (this.setups.get(id) === setup) this.setups.delete(id);
      });
    this.setups.set(id, setup);
  }

  private unwatch(id: string): void {
    this.firstPids.delete(id);
    this.setups.delete(id);
    const w = this.watches.get(id);
    if (!w) return;
    this.watches.delete(id);
    if (![...this.watches.values()].some((x) => !x.watcher)) this.stopPolling();
    // A last look: the kill may be why it went away.
    const last: Promise<void> = this.check(id, w).finally(() => {
      w.watcher?.close();
      this.closing.delete(last);
    });
    this.closing.add(last);
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
        if (this.watches.get(id) === w) this.startPolling();
      });
    } catch (err) {
      this.options.log.warn({ err, container: id, file }, 'OOM watcher: cannot watch, polling instead');
      this.startPolling();
    }
    this.options.log.debug({ container: id, file, inotify: w.watcher !== null }, 'OOM watcher: watching');
    await this.check(id, w);
  }

  private startPolling(): void {
    if (this.timer || !this.unsubscribe) return;
    this.timer = setInterval(() => {
      for (const [id, w] of this.watches) if (!w.watcher) void this.check(id, w);
    }, this.options.pollMs ?? 500);
    this.timer.unref();
  }

  private stopPolling(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
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
          this.options.events.publish({ type: 'oom-kill', containerId: id, at: Date.now() });
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
