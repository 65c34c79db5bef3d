// The guest module: the version-free core of the guest RPCs (details, clock,
// hot-plug, entropy, file copy, metrics, OOM events). Handler sets of every
// protocol version call this; nothing here knows a wire message.
import type { Logger } from '../log';
import { setGuestDateTime } from './clock';
import { FileCopier, type CopyFileRequest } from './copy-file';
import { guestDetails, type GuestDetails, type GuestDetailsRequest } from './details';
import { DriverRegistry } from './drivers';
import { EventQueue } from './event-queue';
import { onlineCpuMem, type OnlineRequest } from './hotplug';
import { renderMetrics, type MetricsText } from './metrics';
import { OomWatcher, type OomEvent } from './oom';
import { reseedRandom } from './random';

export type { CopyFileRequest } from './copy-file';
export type { GuestDetails, GuestDetailsRequest } from './details';
export type { OnlineRequest } from './hotplug';
export type { OomEvent } from './oom';
export { DriverRegistry } from './drivers';
export { EventQueue } from './event-queue';

/** The containers as the guest module sees them (Sandbox.list() fits). */
export interface ContainerView {
  id: string;
  state: string;
  init: { pid: number | null; isRunning: boolean };
}

export interface GuestOptions {
  /** Root that CopyFile destinations must stay inside (config.sharedDir). */
  sharedDir: string;
  containers(): ContainerView[];
  log: Logger;
  sysRoot?: string;
  procRoot?: string;
  cgroupRoot?: string;
  randomDevice?: string;
  oomPollMs?: number;
  oomQueueCapacity?: number;
}

export class Guest {
  /** Storage and device handlers on offer; their modules register here. */
  readonly drivers = new DriverRegistry();
  /** OOM kills, kept until someone takes them. */
  readonly oomEvents: EventQueue<OomEvent>;
  readonly oomWatcher: OomWatcher;
  private readonly copier: FileCopier;

  constructor(private readonly options: GuestOptions) {
    this.copier = new FileCopier(options.sharedDir);
    this.oomEvents = new EventQueue<OomEvent>(options.oomQueueCapacity ?? 1024, 'OOM event');
    this.oomWatcher = new OomWatcher({
      targets: () => options.containers().map((c) => ({ id: c.id, pid: c.init.isRunning ? c.init.pid : null })),
      queue: this.oomEvents,
      log: options.log,
      ...(options.cgroupRoot ? { cgroupRoot: options.cgroupRoot } : {}),
      ...(options.procRoot ? { procRoot: options.procRoot } : {}),
      ...(options.oomPollMs ? { pollMs: options.oomPollMs } : {}),
    });
  }

  /** Starts watching containers for OOM kills. */
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
