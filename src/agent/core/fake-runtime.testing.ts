// For tests only (never imported by the agent, so never bundled): a fake OCI
// runtime behind the core's ContainerRuntime interface. Its "container
// processes" are real: the spec's (or exec's) args run on this machine
// through a shell that starts them in the background, writes their pid and
// exits at once, like a detached `crun create`/`exec`. So the process is
// re-parented to the test process (a child subreaper once Reaper.start ran)
// and waited for by the real Reaper, with the real stdio plumbing.
import type { StdioOptions, StdioPipeNamed } from 'node:child_process';
import fs from 'node:fs/promises';
import type { Socket } from 'node:net';
import path from 'node:path';
import type { ProcessIO } from '../process/process-io';
import type { Reaper } from '../process/reaper';
import type { ContainerRuntime } from './container-runtime';

export type FakeMethod = 'create' | 'exec' | 'start' | 'pause' | 'resume' | 'update' | 'delete';

export interface FakeCall {
  method: FakeMethod;
  id: string;
  execId?: string;
}

export class FakeRuntime implements ContainerRuntime {
  /** Every call, in order. */
  readonly calls: FakeCall[] = [];
  /** Pids of the processes started, by container id. */
  readonly pids = new Map<string, number[]>();
  /** The spec each container was created with, as written to its bundle. */
  readonly specs = new Map<string, Record<string, unknown>>();
  /**
   * Runs first on every call: throw to make the call fail, or return a
   * promise to hold it (e.g. an exec the test releases later).
   */
  onCall: (call: FakeCall) => void | Promise<void> = () => {};

  constructor(private readonly reaper: Reaper) {}

  async create(id: string, bundle: string, io: ProcessIO): Promise<number> {
    await this.call({ method: 'create', id });
    const spec = JSON.parse(await fs.readFile(path.join(bundle, 'config.json'), 'utf8')) as { process: { args: string[] } };
    this.specs.set(id, spec);
    return this.launch(id, spec.process.args, path.join(bundle, 'init.pid'), io);
  }

  async exec(id: string, bundle: string, execId: string, processFile: string, io: ProcessIO): Promise<number> {
    await this.call({ method: 'exec', id, execId });
    const proc = JSON.parse(await fs.readFile(processFile, 'utf8')) as { args: string[] };
    return this.launch(id, proc.args, path.join(bundle, `exec-${execId}.pid`), io);
  }

  start(id: string): Promise<void> {
    return this.call({ method: 'start', id });
  }

  pause(id: string): Promise<void> {
    return this.call({ method: 'pause', id });
  }

  resume(id: string): Promise<void> {
    return this.call({ method: 'resume', id });
  }

  update(id: string): Promise<void> {
    return this.call({ method: 'update', id });
  }

  /** Like `delete --force`: kills whatever of the container still runs. */
  async delete(id: string): Promise<void> {
    await this.call({ method: 'delete', id });
    for (const pid of this.pids.get(id) ?? []) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
  }

  private async call(call: FakeCall): Promise<void> {
    this.calls.push(call);
    await this.onCall(call);
  }

  private async launch(id: string, args: string[], pidFile: string, io: ProcessIO): Promise<number> {
    // Without job control a background command's stdin is /dev/null: hand it the real one through fd 3.
    // The command starts only once this shell is gone (its fd 4 reads EOF when we close our end below):
    // a shell reaps a background child that exits while the shell still runs, and that status would never
    // reach the Reaper (a detached `crun exec` does not wait for its process either).
    const script = 'exec 3<&0; { read _ <&4; exec "$@" <&3 3<&- 4<&-; } & echo $! > "$0"';
    const stdio = [...(io.spawnStdio() as StdioPipeNamed[] | number[]), 'ignore', 'pipe'] as StdioOptions;
    const child = this.reaper.spawn('sh', ['-c', script, pidFile, ...args], { stdio });
    io.attach(child);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c) => resolve(c));
    }).finally(() => (child.stdio[4] as Socket | null)?.destroy());
    if (code !== 0) throw new Error(`fake runtime: sh exited with ${code}`);
    const pid = Number((await fs.readFile(pidFile, 'utf8')).trim());
    // As after a detached `crun create`/`exec`, the process runs the command by now: wait for its exec (fd 4 closed).
    for (const deadline = Date.now() + 5000; Date.now() < deadline; ) {
      if (!(await fs.stat(`/proc/${pid}/fd/4`).then(() => true, () => false))) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    this.pids.set(id, [...(this.pids.get(id) ?? []), pid]);
    return pid;
  }
}
