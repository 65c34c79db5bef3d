// One container: its bundle, its init process and its exec'd processes.
import fs from 'node:fs/promises';
import path from 'node:path';
import { AgentError, alreadyExists, failedPrecondition, invalidArgument, notFound } from '../errors';
import type { Logger } from '../log';
import { checkExecProcess, type OciSpec } from '../oci/spec';
import type { Policy } from '../policy/policy';
import { ContainerProcess } from '../process/container-process';
import { exitStatus, oomKilled, SIGKILL, type ExitStatus } from '../process/exit-status';
import { ProcessIO } from '../process/process-io';
import type { FollowOptions, OutputChunk } from '../stdio/output-stream';
import type { Reaper } from '../process/reaper';
import { validateId } from '../validate';
import { readCgroupStats, type CgroupStats } from './cgroup-stats';
import type { ContainerRuntime } from './container-runtime';
import type { ContainerEventState, EventBus } from './events';

export type ContainerState = 'created' | 'running' | 'paused' | 'stopped';

/** A process as Container.restore takes it. */
export interface RestoredProcess {
  execId: string;
  pid: number | null;
  startedAt: number | null;
  startTicks: number | null;
  status: ExitStatus | null;
  collected: boolean;
  /** The cgroup's OOM kill count when it started, if known (null: an OOM kill cannot be told). */
  oomKillsAtStart: number | null;
}

/** A container as Container.restore takes it. */
export interface RestoredContainer {
  id: string;
  bundle: string;
  state: ContainerState;
  createdAt: number;
  init: RestoredProcess;
  execs: RestoredProcess[];
}

export interface ContainerDeps {
  runtime: ContainerRuntime;
  reaper: Reaper;
  log: Logger;
  outputBufferBytes: number;
  /** The operator's policy: which processes may be exec'd (none: any). */
  policy?: Policy;
  /** The core's event bus: containers publish their state changes and their processes' starts and exits (none: nowhere). */
  events?: EventBus;
  /** OOM kill counts of the containers' cgroups (the OOM watcher); none: no exit status is oomKilled. */
  oomKills?: OomKillCounts;
}

/** What the core asks of whoever watches the containers' cgroups for OOM kills. */
export interface OomKillCounts {
  /** The container cgroup's oom_kill count, read now; null when it has no cgroup of its own with a memory controller. */
  count(containerId: string): Promise<number | null>;
}

export class Container {
  state: ContainerState = 'created';
  /** Milliseconds since the epoch when the container was made (before the runtime's create). */
  readonly createdAt: number;
  readonly init: ContainerProcess;
  private readonly execs = new Map<string, ContainerProcess>();
  /**
   * Set when remove() begins, and never cleared: the state still reads
   * `running` while processes are killed, so this is what refuses new work.
   */
  private removing = false;
  /** The removal under way, shared by concurrent remove() calls; null once it settled (a failed one may be retried). */
  private removal: Promise<void> | null = null;
  /** exec() calls whose process the runtime is still starting; remove() waits for them. */
  private readonly launching = new Set<Promise<unknown>>();

  private constructor(
    readonly id: string,
    readonly bundle: string,
    private readonly spec: OciSpec,
    initIO: ProcessIO,
    initExecId: string,
    private readonly deps: ContainerDeps,
    createdAt = Date.now(),
  ) {
    this.createdAt = createdAt;
    this.init = new ContainerProcess(id, initExecId, initIO);
  }

  /**
   * The container as an earlier agent image left it (state/, across an
   * exec in place): its spec read back from the bundle, each process with
   * the stdio descriptors handed over (`stdio` builds them) and its exit
   * status or its pid, waited for by start time (one that died while no
   * image ran is reaped with its status; one whose pid another process took
   * is gone without one). Nothing is published for what already happened.
   */
  static async restore(saved: RestoredContainer, stdio: (execId: string) => ProcessIO, deps: ContainerDeps): Promise<Container> {
    const spec = JSON.parse(await fs.readFile(path.join(saved.bundle, 'config.json'), 'utf8')) as OciSpec;
    const container = new Container(saved.id, saved.bundle, spec, stdio(saved.init.execId), saved.init.execId, deps, saved.createdAt);
    container.state = saved.state;
    container.restoreProcess(container.init, saved.init);
    for (const e of saved.execs) {
      const proc = new ContainerProcess(saved.id, e.execId, stdio(e.execId));
      container.execs.set(e.execId, proc);
      container.restoreProcess(proc, e);
    }
    void container.init.exited()?.then(() => container.onInitExit());
    return container;
  }

  private restoreProcess(proc: ContainerProcess, saved: RestoredProcess): void {
    const running = !saved.status && saved.pid !== null;
    const startedAt = saved.startedAt ?? Date.now();
    const exit = running
      ? this.deps.reaper.wait(saved.pid!, saved.startTicks).then((e) => e ?? { code: null, signal: null, coreDumped: false, exitedAt: Date.now() })
      : null;
    proc.restore(saved, exit, async (e) => exitStatus(e, startedAt, e.signal === SIGKILL && oomKilled(e, saved.oomKillsAtStart, await this.oomKillCount())));
    if (proc !== this.init) proc.onAcknowledged = () => this.forgetWhenDrained(proc);
    if (running) {
      void proc.exited()!.then(
        (status) => this.deps.events?.publish({ type: 'process-exited', containerId: this.id, execId: proc.execId, pid: saved.pid!, status }),
        () => {},
      );
    }
  }

  /** Writes the bundle and runs `create`; undoes both if anything fails. */
  static async create(
    id: string,
    initExecId: string,
    bundle: string,
    spec: OciSpec,
    terminal: boolean,
    deps: ContainerDeps,
  ): Promise<Container> {
    await fs.mkdir(bundle, { recursive: true, mode: 0o700 });
    const io = terminal ? ProcessIO.terminal(deps.outputBufferBytes) : ProcessIO.pipes(deps.outputBufferBytes);
    const container = new Container(id, bundle, spec, io, initExecId, deps);
    try {
      await fs.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec, null, 2));
      const startedAt = Date.now();
      const pid = await deps.runtime.create(id, bundle, io);
      // A new cgroup starts with no OOM kill counted.
      container.track(container.init, pid, startedAt, 0);
      container.publishState('created');
      void container.init.exited()!.then(() => container.onInitExit());
      return container;
    } catch (err) {
      io.close();
      await deps.runtime.delete(id).catch(() => {});
      await fs.rm(bundle, { recursive: true, force: true });
      throw err;
    }
  }

  async start(): Promise<void> {
    this.refuseIfRemoving('start it');
    if (this.state !== 'created') {
      throw failedPrecondition(`container ${this.id} is ${this.state}; only a created container can be started`);
    }
    await this.deps.runtime.start(this.id);
    // The init may already have run to completion.
    if (this.state === 'created') this.setState('running');
  }

  /** `processSpec` is the OCI process as the client sent it (parsed, not yet trusted). */
  async exec(execId: string, processSpec: unknown): Promise<ContainerProcess> {
    validateId('exec id', execId);
    this.refuseIfRemoving(`exec ${execId} in it`);
    if (this.state !== 'running') {
      throw failedPrecondition(`container ${this.id} is ${this.state}; exec needs a running container`);
    }
    if (execId === this.init.execId || this.execs.has(execId)) {
      throw alreadyExists(`exec id ${execId} is already used in container ${this.id}`);
    }
    const { process: ociProcess, terminal } = checkExecProcess(processSpec, { env: this.spec.process.env }, { containerId: this.id, policy: this.deps.policy });
    const io = terminal ? ProcessIO.terminal(this.deps.outputBufferBytes) : ProcessIO.pipes(this.deps.outputBufferBytes);
    const proc = new ContainerProcess(this.id, execId, io);
    // Reserve the id while the runtime works, so a concurrent duplicate is refused.
    this.execs.set(execId, proc);
    const launch = this.launchExec(proc, ociProcess);
    this.launching.add(launch);
    try {
      return await launch;
    } finally {
      this.launching.delete(launch);
    }
  }

  private async launchExec(proc: ContainerProcess, ociProcess: unknown): Promise<ContainerProcess> {
    const processFile = path.join(this.bundle, `exec-${proc.execId}.json`);
    try {
      await fs.writeFile(processFile, JSON.stringify(ociProcess));
      const oomKillsAtStart = await this.oomKillCount();
      const startedAt = Date.now();
      const pid = await this.deps.runtime.exec(this.id, this.bundle, proc.execId, processFile, proc.io);
      this.track(proc, pid, startedAt, oomKillsAtStart);
    } catch (err) {
      this.execs.delete(proc.execId);
      proc.io.close();
      throw err;
    } finally {
      await fs.rm(processFile, { force: true });
    }
    if (this.removing) {
      // remove() began while the runtime was starting this process. It stays
      // listed, so remove() (which waits for this call) awaits its exit and
      // closes its stdio with the others.
      process.kill(proc.pid!, 'SIGKILL');
      throw failedPrecondition(`container ${this.id} is being removed: exec ${proc.execId} was killed as it started`);
    }
    return proc;
  }

  private refuseIfRemoving(what: string): void {
    if (this.removing) {
      throw failedPrecondition(`container ${this.id} is being removed; cannot ${what} (create a new container instead)`);
    }
  }

  /** The exec'd processes the container still knows (not the init), in the order they were exec'd. */
  execProcesses(): ContainerProcess[] {
    return [...this.execs.values()];
  }

  /** Pids of the container's processes that still run (whose namespaces a sibling container may join). */
  runningPids(): number[] {
    return [this.init, ...this.execs.values()].filter((p) => p.isRunning).map((p) => p.pid!);
  }

  /** The process with this exec id: the init's (given at create) or an exec'd one. */
  process(execId: string): ContainerProcess {
    if (execId === this.init.execId) return this.init;
    const proc = this.execs.get(validateId('exec id', execId));
    if (!proc) throw notFound(`process ${execId} not found in container ${this.id}`);
    return proc;
  }

  signal(execId: string, signal: number): void {
    if (!Number.isInteger(signal) || signal < 1 || signal > 64) {
      throw invalidArgument(`signal ${signal} is not a valid signal number (1-64)`);
    }
    const proc = this.process(execId);
    // The pid stays ours until we reap it, so this cannot hit a recycled pid.
    if (proc.isRunning) process.kill(proc.pid!, signal);
  }

  /** Waits for the process to exit; the exit status of an exec is then released. */
  async wait(execId: string, signal?: AbortSignal): Promise<ExitStatus> {
    const proc = this.process(execId);
    const status = await this.exitOf(execId, signal);
    proc.collected = true;
    this.forgetWhenDrained(proc);
    return status;
  }

  /**
   * The exit status once the process has exited, keeping it (not collected):
   * for protocols where the client releases the process later (v2's
   * ReleaseProcess acknowledges it). A cancelled wait is failed-precondition.
   */
  exitOf(execId: string, signal?: AbortSignal): Promise<ExitStatus> {
    const proc = this.process(execId);
    const exited = proc.exited();
    if (!exited) throw failedPrecondition(`process ${proc.execId} in container ${this.id} was never started`);
    return abortable(exited, signal, () => failedPrecondition(`wait for ${proc.execId} in container ${this.id} was cancelled or timed out`));
  }

  /**
   * Up to `max` bytes of a process's output, read by the reader named
   * `reader` (each reader has its own place; output is released once every
   * reader is past it). From an offset: the bytes there, and the reader needs
   * nothing before it (a reader acknowledges by asking for a later offset).
   * From 'next': the bytes at the reader's own position, which then moves
   * past them (each byte once, as v1 polls). Waits while nothing is there yet
   * (an abort answers no bytes, `eof: false`); `eof` once nothing follows.
   * Out of range: bytes already released (the error names the first offset
   * still held) or an offset past the end.
   */
  async readOutput(
    execId: string,
    stream: 'stdout' | 'stderr',
    reader: string,
    from: number | 'next',
    max: number,
    signal?: AbortSignal,
  ): Promise<OutputChunk> {
    const { proc, out, subject } = this.outputOf(execId, stream, reader, 'reading');
    const chunk = await out.readAs(reader, from, max, { signal, subject });
    this.forgetWhenDrained(proc);
    return chunk;
  }

  /**
   * A process's output for reader `reader` from offset `from`, chunk after
   * chunk as it arrives, to the end of stream (OutputStream.follow: the
   * reader's place moves as `hold` says, and nothing is read ahead of what
   * the caller takes).
   */
  async *followOutput(
    execId: string,
    stream: 'stdout' | 'stderr',
    reader: string,
    from: number,
    max: number,
    options: { hold: FollowOptions['hold']; signal?: AbortSignal },
  ): AsyncGenerator<OutputChunk> {
    const { proc, out, subject } = this.outputOf(execId, stream, reader, 'reading');
    try {
      yield* out.follow(reader, from, max, { ...options, subject });
    } finally {
      this.forgetWhenDrained(proc);
    }
  }

  /** Reader `reader` has the process's output before `offset` (OutputStream.acknowledge). Returns the first offset still held. */
  acknowledgeOutput(execId: string, stream: 'stdout' | 'stderr', reader: string, offset: number): number {
    const { proc, out, subject } = this.outputOf(execId, stream, reader, 'acknowledging');
    const start = out.acknowledge(reader, offset, subject);
    this.forgetWhenDrained(proc);
    return start;
  }

  /**
   * The readers `which` accepts have all of a process's output: each is
   * moved to the end of each stream that has ended (a stream held open by a
   * process the exec left behind stays as it is), and an exec whose status
   * was collected and whose output nobody else still reads is forgotten.
   */
  finishReaders(execId: string, which: (reader: string) => boolean): void {
    const proc = this.process(execId);
    proc.io.stdout.finishReaders(which);
    proc.io.stderr.finishReaders(which);
    this.forgetWhenDrained(proc);
  }

  private outputOf(execId: string, stream: 'stdout' | 'stderr', reader: string, doing: string) {
    const proc = this.process(execId);
    validateId('reader', reader);
    const subject = `${stream} of exec ${proc.execId} in container ${this.id}`;
    proc.io.requireStarted(`${doing} ${subject}`);
    return { proc, out: proc.io[stream], subject };
  }

  /** An exec is forgotten once its status is collected and its output read to the end by every reader (see OutputStream.drained). */
  private forgetWhenDrained(proc: ContainerProcess): void {
    if (proc !== this.init && proc.collected && proc.io.stdout.drained && proc.io.stderr.drained && this.execs.get(proc.execId) === proc) {
      this.execs.delete(proc.execId);
      proc.io.close();
    }
  }

  async pause(): Promise<void> {
    this.refuseIfRemoving('pause it');
    if (this.state !== 'running') throw failedPrecondition(`container ${this.id} is ${this.state}, not running`);
    await this.deps.runtime.pause(this.id);
    this.setState('paused');
  }

  async resume(): Promise<void> {
    this.refuseIfRemoving('resume it');
    if (this.state !== 'paused') throw failedPrecondition(`container ${this.id} is ${this.state}, not paused`);
    await this.deps.runtime.resume(this.id);
    this.setState('running');
  }

  /** New OCI LinuxResources for the container's cgroup. */
  async update(resources: unknown): Promise<void> {
    this.refuseIfRemoving('update its resources');
    if (typeof resources !== 'object' || resources === null || Array.isArray(resources)) {
      throw invalidArgument('the resources must be an object (OCI LinuxResources)');
    }
    const file = path.join(this.bundle, 'resources.json');
    await fs.writeFile(file, JSON.stringify(resources));
    await this.deps.runtime.update(this.id, file);
  }

  stats(): Promise<CgroupStats> {
    if (!this.init.isRunning) throw failedPrecondition(`container ${this.id} is not running: no statistics`);
    return readCgroupStats(this.id, this.init.pid!);
  }

  /** Every process of the container, by pid, with its command line (empty once it is gone). */
  async processes(): Promise<Array<{ pid: number; args: string[] }>> {
    const pids = await this.pids();
    return Promise.all(pids.map(async (pid) => {
      const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      return { pid, args: cmd.split('\0').filter(Boolean) };
    }));
  }

  /**
   * Every process of the container: the init's process tree and each exec's.
   * Walking the tree works with and without cgroups (the runtime's `ps` needs them).
   */
  private async pids(): Promise<number[]> {
    const roots = [this.init, ...this.execs.values()].filter((p) => p.isRunning).map((p) => p.pid!);
    const seen = new Set<number>();
    const walk = async (pid: number): Promise<void> => {
      if (seen.has(pid)) return;
      seen.add(pid);
      const tasks = await fs.readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
      for (const tid of tasks) {
        const kids = await fs.readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
        for (const k of kids.split(' ').filter(Boolean)) await walk(Number(k));
      }
    };
    for (const r of roots) await walk(r);
    return [...seen].sort((a, b) => a - b);
  }

  /**
   * Kills what still runs, deletes the runtime's container and the bundle.
   * From the first call on, nothing new starts in the container (exec,
   * start, pause, resume and update are refused), and an exec the runtime is
   * still starting is waited for and killed too. `timeoutSeconds` bounds the
   * wait for the killed processes to exit.
   */
  remove(timeoutSeconds: number): Promise<void> {
    if (!(timeoutSeconds > 0)) throw invalidArgument(`the removal timeout must be a positive number of seconds, not ${timeoutSeconds}`);
    this.removing = true;
    this.removal ??= this.removeOnce(timeoutSeconds).finally(() => (this.removal = null));
    return this.removal;
  }

  private async removeOnce(timeoutSeconds: number): Promise<void> {
    const deadline = AbortSignal.timeout(timeoutSeconds * 1000);
    // Each of these sees `removing` once its runtime call returns and kills what it started.
    // What is still awaited is counted when the time is up.
    const timedOut = (what: () => string) => () =>
      failedPrecondition(`removing container ${this.id}: ${what()} after ${timeoutSeconds} s; RemoveContainer again goes on from there, or give it a longer timeout`);
    await abortable(Promise.allSettled([...this.launching]), deadline,
      timedOut(() => `the runtime had not yet started ${this.launching.size} of its execs`));
    const running = [this.init, ...this.execs.values()].filter((p) => p.isRunning);
    for (const p of running) process.kill(p.pid!, 'SIGKILL');
    const exits = running.map((p) => p.exited()!);
    await abortable(Promise.all(exits), deadline,
      timedOut(() => `${running.filter((p) => p.isRunning).length} of the ${running.length} processes it killed had not exited yet`));
    await this.deps.runtime.delete(this.id).catch((err: unknown) => {
      // The runtime has no such container (its state was lost, or it never got that far):
      // there is nothing left to delete, and refusing would leave the container listed for ever.
      if (err instanceof AgentError && err.kind === 'not-found') {
        this.deps.log.warn({ container: this.id, err }, 'the runtime no longer knows the container; removing it anyway');
        return;
      }
      throw err;
    });
    for (const p of [this.init, ...this.execs.values()]) p.io.close();
    this.execs.clear();
    await fs.rm(this.bundle, { recursive: true, force: true });
    this.publishState('removed');
  }

  private onInitExit(): void {
    this.setState('stopped');
    this.deps.log.info({ container: this.id, status: this.init.status }, 'container init exited');
  }

  /**
   * Follows a process the runtime started: process-started now; at its exit
   * the exit status record (oomKilled from the cgroup's OOM kill count, which
   * was `oomKillsAtStart` before the process started), then process-exited.
   * `startedAt` is when the runtime was asked to start it: the process may
   * have ended (and been reaped) before the runtime reported its pid, and its
   * start must not come after its end. An exec's status is released when a
   * client acknowledges it.
   */
  private track(proc: ContainerProcess, pid: number, startedAt: number, oomKillsAtStart: number | null): void {
    proc.oomKillsAtStart = oomKillsAtStart;
    proc.running(pid, startedAt, this.deps.reaper.wait(pid), async (exit) => {
      // Only a SIGKILL can be the OOM killer's: no cgroup read for any other exit.
      const oom = exit.signal === SIGKILL && oomKilled(exit, oomKillsAtStart, await this.oomKillCount());
      return exitStatus(exit, startedAt, oom);
    });
    if (proc !== this.init) proc.onAcknowledged = () => this.forgetWhenDrained(proc);
    this.deps.events?.publish({ type: 'process-started', containerId: this.id, execId: proc.execId, pid, at: startedAt });
    // Published once the record is the process's (proc.status), before anything awaiting exited() runs.
    void proc.exited()!.then(
      (status) => this.deps.events?.publish({ type: 'process-exited', containerId: this.id, execId: proc.execId, pid, status }),
      () => {},
    );
  }

  /** The container cgroup's OOM kill count now; null when unknown. */
  private async oomKillCount(): Promise<number | null> {
    if (!this.deps.oomKills) return null;
    return this.deps.oomKills.count(this.id).catch(() => null);
  }

  private setState(state: ContainerState): void {
    this.state = state;
    this.publishState(state);
  }

  private publishState(state: ContainerEventState): void {
    this.deps.events?.publish({ type: 'container-state', containerId: this.id, state, at: Date.now() });
  }
}

/** The promise, or `refusal()` once the signal aborts (whatever was still to come is told at that moment). */
async function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, refusal: () => AgentError): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(refusal());
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
