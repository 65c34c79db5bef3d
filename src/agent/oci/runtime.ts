// The OCI runtime driver (crun by default; any runtime with runc's CLI works).
// Every container process is started detached with --pid-file, so the runtime
// exits at once and the process is adopted by the agent (see process/reaper.ts).
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ContainerRuntime } from '../core/container-runtime';
import { describe, failedPrecondition, notFound, resourceExhausted } from '../errors';
import type { Logger } from '../log';
import type { ProcessIO } from '../process/process-io';
import { runCommand, superviseChild } from '../process/command';
import type { Reaper } from '../process/reaper';

/** A runtime command that takes longer than this is stuck (a hung mount, a frozen cgroup). */
const RUNTIME_TIMEOUT_MS = 60_000;
/** How long a killed stray process gets to be reaped before the launch gives up on it. */
const STRAY_EXIT_MS = 2000;

export interface RuntimeOptions {
  binary: string;
  globalArgs: readonly string[];
  /** The runtime's own state directory (--root): private to this agent. */
  root: string;
  /** Deadline of every runtime command, create and exec included; default 60 s. */
  timeoutMs?: number;
}

export interface RuntimeState {
  id: string;
  pid: number;
  status: string;
  bundle: string;
}

export class OciRuntime implements ContainerRuntime {
  constructor(
    private readonly options: RuntimeOptions,
    private readonly reaper: Reaper,
    private readonly log: Logger,
  ) {}

  /** `create`: the container's init process, waiting for `start`. Returns its pid. */
  create(id: string, bundle: string, io: ProcessIO): Promise<number> {
    const pidFile = path.join(bundle, 'init.pid');
    return this.launch(['create', '--bundle', bundle, '--pid-file', pidFile, id], `container ${id}`, bundle, pidFile, io);
  }

  /** `exec --detach`: one more process in a running container. Returns its pid. */
  exec(id: string, bundle: string, execId: string, processFile: string, io: ProcessIO): Promise<number> {
    const pidFile = path.join(bundle, `exec-${execId}.pid`);
    return this.launch(
      ['exec', '--detach', '--process', processFile, '--pid-file', pidFile, id],
      `exec ${execId} in container ${id}`,
      bundle,
      pidFile,
      io,
    );
  }

  start(id: string): Promise<string> {
    return this.run(['start', id]);
  }

  pause(id: string): Promise<string> {
    return this.run(['pause', id]);
  }

  resume(id: string): Promise<string> {
    return this.run(['resume', id]);
  }

  update(id: string, resourcesFile: string): Promise<string> {
    return this.run(['update', '--resources', resourcesFile, id]);
  }

  delete(id: string): Promise<string> {
    return this.run(['delete', '--force', id]);
  }

  async state(id: string): Promise<RuntimeState> {
    return JSON.parse(await this.run(['state', id])) as RuntimeState;
  }

  /** Runs one runtime command to completion; a failure becomes a typed error. */
  async run(args: readonly string[]): Promise<string> {
    const { stdout } = await runCommand(this.reaper, this.options.binary, [...this.globalArgs(), ...args], {
      timeoutMs: this.timeoutMs,
      spawnHint: 'install it or pass --oci-runtime PATH',
      onFailure: (f) => this.failure(args, f.stderr, f.code, f.timedOut ? 'a timeout' : f.signal),
    });
    return stdout;
  }

  private get timeoutMs(): number {
    return this.options.timeoutMs ?? RUNTIME_TIMEOUT_MS;
  }

  private globalArgs(): string[] {
    return ['--root', this.options.root, ...this.options.globalArgs];
  }

  /**
   * Runs a detached `create` or `exec` with the process's stdio and a
   * deadline, and reads the pid the runtime wrote. On any failure nothing it
   * started is left running untracked (see stopStrays).
   */
  private async launch(args: string[], what: string, bundle: string, pidFile: string, io: ProcessIO): Promise<number> {
    const verb = args[0]!;
    const logFile = path.join(bundle, 'runtime.log');
    await fs.rm(pidFile, { force: true });
    await fs.writeFile(logFile, '');
    const full = [...this.globalArgs(), `--log=${logFile}`, ...args];
    this.log.debug({ runtime: this.options.binary, args: full }, 'runtime launch');
    const child = this.reaper.spawn(this.options.binary, full, { stdio: io.spawnStdio() });
    if (child.pid === undefined) {
      // Not started (no such binary, or no descriptors left for its pipes): 'error' says why.
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      io.close();
      throw this.spawnFailure(err, what);
    }
    io.attach(child);
    const deadline = superviseChild(child, { timeoutMs: this.timeoutMs });
    let code: number | null;
    let signal: NodeJS.Signals | null;
    try {
      // 'exit', not 'close': the container process keeps the stdio open.
      [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
        child.once('error', (e) => reject(this.spawnFailure(e, what)));
        child.once('exit', (c, s) => resolve([c, s]));
      });
    } catch (err) {
      io.close();
      throw err;
    } finally {
      deadline.clear();
    }
    if (deadline.timedOut) {
      const strays = await this.stopStrays(io, what);
      io.close();
      throw failedPrecondition(
        `${this.options.binary} ${verb} for ${what} did not finish within ${this.timeoutMs} ms and was killed` +
          `${strays > 0 ? `, with the ${strays} process(es) it had started` : ''}; ` +
          `the runtime is stuck (a hung mount, a frozen cgroup?): see ${logFile}`,
      );
    }
    if (code !== 0) {
      io.close();
      const logText = await fs.readFile(logFile, 'utf8').catch(() => '');
      throw this.failure(args, logText, code, signal);
    }
    let problem: string;
    try {
      const text = await fs.readFile(pidFile, 'utf8');
      const pid = Number(text.trim());
      if (Number.isInteger(pid) && pid > 0) return pid;
      problem = `wrote no valid pid to ${pidFile} (${JSON.stringify(text.slice(0, 40))})`;
    } catch (err) {
      problem = `succeeded but its pid file ${pidFile} cannot be read (${describe(err)})`;
    }
    // The process runs, but without its pid the agent can neither wait for it
    // nor signal it. Rather than guess a pid, it is found by the stdio only it
    // holds and killed, and the call fails: a client retries a failed exec,
    // whereas a process nobody tracks would run (and hold memory) until the
    // container goes. (For create, the caller's delete also removes the container.)
    const strays = await this.stopStrays(io, what);
    io.close();
    throw failedPrecondition(
      `${this.options.binary} ${verb} for ${what} ${problem}; the process it started cannot be tracked and ` +
        `${strays > 0 ? `was killed (${strays} process(es))` : 'was not found (it may have exited)'}; see ${logFile}`,
    );
  }

  /** Kills (SIGKILL) and reaps what a failed launch left holding the process's stdio; returns how many. */
  private async stopStrays(io: ProcessIO, what: string): Promise<number> {
    const pids = io.holders();
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Exited meanwhile.
      }
    }
    if (pids.length > 0) this.log.warn({ pids, what }, 'killed processes a failed runtime launch left untracked');
    // Reap them, so no zombie or unclaimed status outlives this call; a pid
    // that is not the agent's child is reaped by its own parent instead.
    const exits = pids.map((pid) => this.reaper.wait(pid).catch(() => {}));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(exits), new Promise((r) => (timer = setTimeout(r, STRAY_EXIT_MS)))]);
    clearTimeout(timer);
    return pids.length;
  }

  private spawnFailure(err: Error, what: string) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EMFILE' || code === 'ENFILE') {
      return resourceExhausted(
        `cannot start the OCI runtime for ${what}: the agent is out of file descriptors (${openFdsAndLimit()}); ` +
          'each process it tracks holds up to three (its stdio): release or remove processes, or raise the limit',
      );
    }
    if (code === 'EAGAIN') return resourceExhausted(`cannot start the OCI runtime for ${what}: ${err.message} (the process limit is reached)`);
    return failedPrecondition(
      `cannot run the OCI runtime ${this.options.binary}: ${err.message}; install it or pass --oci-runtime PATH`,
      err,
    );
  }

  private failure(args: readonly string[], output: string, code: number | null, signal: string | null) {
    const detail = summarizeRuntimeOutput(output);
    const how = signal ? `was killed by ${signal}` : `exited with ${code}`;
    const message = `${this.options.binary} ${args[0]} ${args.at(-1)} ${how}: ${detail || 'no error output'}`;
    // The runtime says "does not exist" (crun) or "not found" (runc) for unknown containers.
    if (/does not exist|not found|no such file/i.test(detail) && args[0] !== 'create') return notFound(message);
    return failedPrecondition(message);
  }
}

/** "N open, limit M" for this process, as far as /proc tells. */
function openFdsAndLimit(): string {
  let open = '?';
  let limit = '?';
  try {
    open = String(fsSync.readdirSync('/proc/self/fd').length);
  } catch {
    // No descriptor left even for that.
  }
  try {
    limit = /^Max open files\s+(\S+)/m.exec(fsSync.readFileSync('/proc/self/limits', 'latin1'))?.[1] ?? '?';
  } catch {
    // idem
  }
  return `${open} open, limit ${limit}`;
}

/** The runtime's error lines, without JSON log framing, trimmed to what matters. */
function summarizeRuntimeOutput(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean).map((line) => {
    try {
      const j = JSON.parse(line) as { msg?: string };
      return j.msg ?? line;
    } catch {
      return line;
    }
  });
  return lines.slice(-3).join('; ').slice(0, 1000);
}
