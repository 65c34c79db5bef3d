// The guest module: the version-free core of the guest RPCs (details, clock,
// hot-plug, entropy, file copy, metrics, OOM events). Handler sets of every
// protocol version call this; nothing here knows a wire message.
import type { EventQueue } from '../core/event-queue';
import { EventBus } from '../core/events';
import type { Logger } from '../log';
import type { Policy } from '../policy/policy';
import { setGuestDateTime } from './clock';
import { FileCopier, type CopyFileRequest } from './copy-file';
import { guestDetails, type GuestDetails, type GuestDetailsRequest } from './details';
import { DriverRegistry } from './drivers';
import { onlineCpuMem, type OnlineRequest } from './hotplug';
import { renderMetrics, type MetricsText } from './metrics';
import { OomWatcher, type OomEvent } from './oom';
import { reseedRandom } from './random';

export type { CopyFileRequest } from './copy-file';
export type { GuestDetails, GuestDetailsRequest } from './details';
export type { OnlineRequest } from './hotplug';
export type { OomEvent } from './oom';
export { DriverRegistry } from './drivers';

/** The containers as the guest module sees them (Sandbox.list() fits). */
export interface ContainerView {
  id: string;
  state: string;
}

export interface GuestOptions {
  /** Root that CopyFile destinations must stay inside (config.sharedDir). */
  sharedDir: string;
  /** The operator's policy (CopyFile paths). */
  policy?: Policy;
  containers(): ContainerView[];
  /** The core's event bus: the OOM watcher follows the containers there and publishes oom-kill events (none: a bus of its own). */
  events?: EventBus;
  log: Logger;
  sysRoot?: string;
  procRoot?: string;
  cgroupRoot?: string;
  randomDevice?: string;
  /** How often a memory.events that inotify cannot watch is re-read. */
  oomPollMs?: number;
  /** OOM events kept for v1 GetOOMEvent while nobody takes them. */
  oomQueueCapacity?: number;
}

export class Guest {
  /** Storage and device handlers on offer; their modules register here. */
  readonly drivers = new DriverRegistry();
  readonly events: EventBus;
  /** The bus's oom-kill events, each kept until one caller takes it (v1 GetOOMEvent). */
  readonly oomEvents: EventQueue<OomEvent>;
  /** Also the OOM kill counts (OomKillCounts) the containers' exit statuses are judged by. */
  readonly oomWatcher: OomWatcher;
  private readonly copier: FileCopier;

  constructor(private readonly options: GuestOptions) {
    this.copier = new FileCopier(options.sharedDir, options.policy);
    this.events = options.events ?? new EventBus({ log: options.log });
    this.oomEvents = this.events.takeQueue('oom-kill', { capacity: options.oomQueueCapacity ?? 1024, what: 'OOM event' });
    this.oomWatcher = new OomWatcher({
      events: this.events,
      log: options.log,
      ...(options.cgroupRoot ? { cgroupRoot: options.cgroupRoot } : {}),
      ...(options.procRoot ? { procRoot: options.procRoot } : {}),
      ...(options.oomPollMs ? { pollMs: options.oomPollMs } : {}),
    });
  }

  /** Starts following the containers on the bus for OOM kills. */
  start(): void {
    this.oomWatcher.start();
  }

  stop(): void {
    this.oomWatcher.stop();
  }

  details(req: GuestDetailsRequest): Promise<GuestDetails> {
    return guestDetails(req, this.drivers, this.options.sysRoot);
  }

  /** Refused (failed-precondition) unless the agent is the guest's init. */
  setDateTime(sec: number, usec: number): void {
    setGuestDateTime(sec, usec);
  }

  /** Refused (failed-precondition) unless the agent is the guest's init. */
  onlineCpuMem(req: OnlineRequest, signal?: AbortSignal): Promise<void> {
    return onlineCpuMem(req, this.options.log, {
      ...(this.options.sysRoot ? { sysRoot: this.options.sysRoot } : {}),
      ...(signal ? { signal } : {}),
    });
  }

  reseedRandom(data: Uint8Array): Promise<void> {
    return reseedRandom(data, this.options.randomDevice);
  }

  copyFile(req: CopyFileRequest): Promise<void> {
    return this.copier.copy(req);
  }

  metrics(callMetrics: MetricsText): Promise<string> {
    return renderMetrics({
      rpcText: callMetrics.render(),
      containerStates: this.options.containers().map((c) => c.state),
      oom: { events: this.oomWatcher.events, pending: this.oomEvents.pending, dropped: this.oomEvents.droppedUntaken },
      ...(this.options.procRoot ? { procRoot: this.options.procRoot } : {}),
    });
  }

  /** The next OOM-killed container's id; waits for one. Rejects when `signal` aborts. */
  nextOomEvent(signal?: AbortSignal): Promise<OomEvent> {
    // take() itself gives an event back when the caller went away as it arrived.
    return this.oomEvents.take(signal);
  }
}
