// Starts the bundled agent (dist/agent.cjs) as an ordinary process on a unix
// socket, inside private namespaces: a mount namespace with its own cgroup2
// mount (crun refuses this machine's hybrid cgroups; see docs/machine-facts.md,
// "Hybrid cgroups and crun") and
// a UTS namespace, so nothing of the machine itself is touched.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentClient } from '../../src/client/client';
import { makeBusyboxRootfs } from './rootfs';

export const REPO = path.resolve(__dirname, '..', '..');
export const AGENT_BUNDLE = path.join(REPO, 'dist', 'agent.cjs');

export interface TestAgent {
  addr: string;
  dir: string;
  sharedDir: string;
  stateDir: string;
  /** The agent's log lines so far, parsed. */
  logs(): Array<Record<string, unknown>>;
  /** Every line the agent wrote so far (stdout and stderr), as written. */
  lines(): string[];
  child: ChildProcess;
  connect(): Promise<AgentClient>;
  alive(): boolean;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** The agent bundle to run; today's dist/agent.cjs by default, or an archived release's. */
  bundle?: string;
  /** Extra namespaces besides mount and UTS, e.g. ['--net']. */
  unshare?: string[];
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Which of the agent's output lines logs() keeps (all by default); a long run keeps only what it needs. */
  keepLine?: (line: string) => boolean;
}

export async function startAgent(options: StartOptions = {}): Promise<TestAgent> {
  const bundle = options.bundle ?? AGENT_BUNDLE;
  if (!fs.existsSync(bundle)) throw new Error(`${bundle} is missing: run npm run build`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-test-'));
  const sharedDir = path.join(dir, 'shared');
  const stateDir = path.join(dir, 'state');
  makeBusyboxRootfs(path.join(sharedDir, 'busybox'));
  const sock = path.join(dir, 'agent.sock');
  const agentArgs = [
    bundle, '--server-addr', `unix://${sock}`, '--state-dir', stateDir, '--shared-dir', sharedDir,
    '--oci-runtime-arg=--cgroup-manager=disabled', '--log-level', 'debug', ...(options.args ?? []),
  ];
  const quoted = [process.execPath, ...agentArgs].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn(
    'unshare',
    ['-m', '-u', ...(options.unshare ?? []), '--propagation', 'private', 'sh', '-c',
      `mount -t cgroup2 none /sys/fs/cgroup && exec ${quoted}`],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } },
  );
  const lines: string[] = [];
  let partial = '';
  let announced = false;
  const onData = (b: Buffer) => {
    const text = partial + b.toString();
    const parts = text.split('\n');
    partial = parts.pop()!;
    for (const l of parts) {
      if (!announced && l.includes('"msg":"announce"')) announced = true;
      if (!options.keepLine || options.keepLine(l)) lines.push(l);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exited = false;
  child.once('exit', () => (exited = true));

  const deadline = Date.now() + 15000;
  while (!announced) {
    if (exited) throw new Error(`agent exited during start-up:\n${lines.join('\n')}${partial}`);
    if (Date.now() > deadline) throw new Error(`agent did not announce itself within 15 s:\n${lines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const addr = `unix://${sock}`;
  return {
    addr,
    dir,
    sharedDir,
    stateDir,
    child,
    logs: () => lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    }),
    connect: () => AgentClient.connect(addr),
    lines: () => [...lines],
    alive: () => !exited,
    async stop() {
      // Kill what the agent leaves behind (container processes are its children), then the agent.
      if (!exited && child.pid) {
        for (const pid of descendants(child.pid).reverse()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
      }
      killLeftovers(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Processes left behind by an agent that died (re-parented away from it, so
 * they are no longer its descendants): anything whose command line names the
 * agent's temp dir (crun) or that mounts something from it (container processes).
 */
export function killLeftovers(dir: string): number[] {
  const killed: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const mine = cmdline.includes(dir) || fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').includes(`${dir}/`);
      if (mine) {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      }
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return killed;
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    let tids: string[] = [];
    try {
      tids = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const t of tids) {
      let kids = '';
      try {
        kids = fs.readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.split(' ').filter(Boolean).map(Number)) {
        out.push(k);
        walk(k);
      }
    }
  };
  walk(pid);
  return out;
}

/** The node process running the agent bundle at or below `pid` (startAgent's child is a wrapper: unshare, sh). */
export function agentNodePid(pid: number): number {
  const isAgent = (p: number) => {
    try {
      return fs.readlinkSync(`/proc/${p}/exe`) === fs.realpathSync(process.execPath)
        && fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(AGENT_BUNDLE);
    } catch {
      return false;
    }
  };
  if (isAgent(pid)) return pid;
  const kids = (p: number): number[] => {
    try {
      return fs.readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  const queue = kids(pid);
  while (queue.length) {
    const p = queue.shift()!;
    if (isAgent(p)) return p;
    queue.push(...kids(p));
  }
  throw new Error(`no node process running ${AGENT_BUNDLE} at or below pid ${pid}`);
}
