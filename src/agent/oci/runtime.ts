// The OCI runtime driver (crun by default; any runtime with runc's CLI works).
// Every container process is started detached with --pid-file, so the runtime
// exits at once and the process is adopted by the agent (see process/reaper.ts).
import fs from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition, notFound } from '../errors';
import type { Logger } from '../log';
import type { ProcessIO } from '../process/process-io';
import { runCommand } from '../process/command';
import type { Reaper } from '../process/reaper';

/** A runtime command that takes longer than this is stuck (a hung mount, a frozen cgroup). */
const RUNTIME_TIMEOUT_MS = 60_000;

export interface RuntimeOptions {
  binary: string;
  globalArgs: readonly string[];
  /** The runtime's own state directory (--root): private to this agent. */
  root: string;
}

export interface RuntimeState {
  id: string;
  pid: number;
  status: string;
  bundle: string;
}

export class OciRuntime {
  constructor(
    private readonly options: RuntimeOptions,
    private readonly reaper: Reaper,
    private readonly log: Logger,
  ) {}

  /** `create`: the container's init process, waiting for `start`. Returns its pid. */
  create(id: string, bundle: string, io: ProcessIO): Promise<number> {
    const pidFile = path.join(bundle, 'init.pid');
    return this.launch(['create', '--bundle', bundle, '--pid-file', pidFile, id], bundle, pidFile, io);
  }

  /** `exec --detach`: one more process in a running container. Returns its pid. */
  exec(id: string, bundle: string, execId: string, processFile: string, io: ProcessIO): Promise<number> {
    const pidFile = path.join(bundle, `exec-${execId}.pid`);
    return this.launch(['exec', '--detach', '--process', processFile, '--pid-file', pidFile, id], bundle, pidFile, io);
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
      timeoutMs: RUNTIME_TIMEOUT_MS,
      spawnHint: 'install it or pass --oci-runtime PATH',
      onFailure: (f) => this.failure(args, f.stderr, f.code, f.timedOut ? 'a timeout' : f.signal),
    });
    return stdout;
  }

  private globalArgs(): string[] {
    return ['--root', this.options.root, ...this.options.globalArgs];
  }

  private async launch(args: string[], bundle: string, pidFile: string, io: ProcessIO): Promise<number> {
    const logFile = path.join(bundle, 'runtime.log');
    await fs.rm(pidFile, { force: true });
    await fs.writeFile(logFile, '');
    const full = [...this.globalArgs(), `--log=${logFile}`, ...args];
    this.log.debug({ runtime: this.options.binary, args: full }, 'runtime launch');
    const child = this.reaper.spawn(this.options.binary, full, { stdio: io.spawnStdio() });
    io.attach(child);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', (e) => reject(this.spawnFailure(e)));
      child.once('exit', (c, s) => resolve([c, s]));
    });
    if (code !== 0) {
      io.close();
      const logText = await fs.readFile(logFile, 'utf8').catch(() => '');
      throw this.failure(args, logText, code, signal);
    }
    const pid = Number((await fs.readFile(pidFile, 'utf8')).trim());
    if (!Number.isInteger(pid) || pid <= 0) {
      throw failedPrecondition(`${this.options.binary} ${args[0]} wrote no valid pid to ${pidFile}`);
    }
    return pid;
  }

  private spawnFailure(err: Error) {
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
