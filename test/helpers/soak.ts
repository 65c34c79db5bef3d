// The soak: container create/start/exec/wait/kill/remove cycles through the
// bundled agent, and what is measured of the agent process between them
// (memory, open fds, children and zombies, state left on disk). Shared by
// bench/soak.ts (long runs, a table) and test/integration/soak.test.ts
// (a short run that asserts nothing leaks).
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { AgentClient } from '../../src/client/client';
import { AGENT_BUNDLE, type TestAgent } from './agent-process';
import { containerSpec } from './spec';
import { readToEnd } from './stdio';

export interface AgentSample {
  /** VmRSS and RssAnon of the agent's node process, KiB. */
  vmRssKiB: number;
  rssAnonKiB: number;
  /** Entries of /proc/PID/fd. */
  fds: number;
  /** Direct children of the agent (any thread's), and how many of them are zombies. */
  children: number;
  zombies: number;
}

/**
 * The agent's own node process: the spawned pid once `unshare`/`sh` have
 * exec'd node, else the first descendant (breadth first) whose executable is
 * this node and whose command line names the bundle.
 */
export function agentNodePid(spawnedPid: number, bundle = AGENT_BUNDLE): number {
  const node = fs.realpathSync(process.execPath);
  const isAgent = (pid: number) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/exe`) === node && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(bundle);
    } catch {
      return false;
    }
  };
  const queue = [spawnedPid];
  while (queue.length) {
    const pid = queue.shift()!;
    if (isAgent(pid)) return pid;
    queue.push(...childrenOf(pid));
  }
  throw new Error(`no node process running ${bundle} at or below pid ${spawnedPid}`);
}

/** Direct children of a process, over all its threads. */
export function childrenOf(pid: number): number[] {
  let tids: string[] = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  return tids.flatMap((tid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
}

/** The state letter of /proc/PID/stat (after the parenthesised command, which may hold spaces). */
function processState(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

export function sampleAgent(pid: number): AgentSample {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const children = childrenOf(pid);
  return {
    vmRssKiB: kib('VmRSS'),
    rssAnonKiB: kib('RssAnon'),
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
    children: children.length,
    zombies: children.filter((c) => processState(c) === 'Z').length,
  };
}

/**
 * Waits up to `ms` for the agent to settle after a burst of cycles (closed
 * handles collected, crun children gone): samples every 100 ms and returns the
 * first sample with no children whose fd count held for three samples in a
 * row, or the last one taken.
 */
export async function settledSample(pid: number, ms = 5000): Promise<AgentSample> {
  const deadline = Date.now() + ms;
  let last = sampleAgent(pid);
  let steady = 0;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const next = sampleAgent(pid);
    steady = next.fds === last.fds && next.children === 0 ? steady + 1 : 0;
    last = next;
    if (steady >= 3) break;
  }
  return last;
}

/** Container state the agent keeps on disk (bundles, crun's state) that is still there. */
export function leftoverState(stateDir: string): string[] {
  return ['containers', 'runtime'].flatMap((sub) => {
    try {
      return fs.readdirSync(path.join(stateDir, sub)).map((name) => path.join(sub, name));
    } catch {
      return [];
    }
  });
}

const SPEC = JSON.stringify(containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] }));
const EXEC = JSON.stringify({ args: ['echo', 'x'], env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false });

/** Reads a stream to its end; a drained, collected exec may already be forgotten (NOT_FOUND). */
async function drain(client: AgentClient, container_id: string, exec_id: string, which: 'ReadStdout' | 'ReadStderr'): Promise<string> {
  try {
    return await readToEnd(client, container_id, exec_id, which);
  } catch (err) {
    if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return '';
    throw err;
  }
}

/**
 * One cycle: CreateContainer (busybox, init `sleep 1000`), StartContainer,
 * ExecProcess `echo x`, WaitProcess on it and read its output, SIGKILL to the
 * init, WaitProcess on the init, RemoveContainer. Throws on any unexpected answer.
 */
export async function soakCycle(client: AgentClient, container_id: string): Promise<void> {
  await client.v1('CreateContainer', { container_id, exec_id: container_id, oci_spec_json: SPEC });
  await client.v1('StartContainer', { container_id });
  const exec_id = `${container_id}-x`;
  await client.v1('ExecProcess', { container_id, exec_id, oci_process_json: EXEC });
  const exec = await client.v1('WaitProcess', { container_id, exec_id });
  if (exec.status !== 0) throw new Error(`${container_id}: exec ended with status ${exec.status}`);
  const out = await drain(client, container_id, exec_id, 'ReadStdout');
  await drain(client, container_id, exec_id, 'ReadStderr');
  if (out !== 'x\n') throw new Error(`${container_id}: exec printed ${JSON.stringify(out)}, not "x\\n"`);
  await client.v1('SignalProcess', { container_id, exec_id: '', signal: 9 });
  const init = await client.v1('WaitProcess', { container_id, exec_id: '' });
  if (init.status !== 128 + 9) throw new Error(`${container_id}: init ended with status ${init.status}, not 137`);
  await client.v1('RemoveContainer', { container_id });
}

export interface SoakRow extends AgentSample {
  cycles: number;
  elapsedS: number;
  /** Cycles per second since the previous row. */
  rate: number;
}

export interface SoakOptions {
  agent: TestAgent;
  client: AgentClient;
  cycles: number;
  /** A row every this many cycles (and after the last). */
  every: number;
  /** Container ids are `${prefix}${n}`. */
  prefix?: string;
  onRow?: (row: SoakRow) => void;
}

/** Runs `cycles` cycles one after the other, sampling the agent every `every` cycles. */
export async function runSoak(o: SoakOptions): Promise<SoakRow[]> {
  const pid = agentNodePid(o.agent.child.pid!);
  const rows: SoakRow[] = [];
  const t0 = performance.now();
  let previous = { cycles: 0, t: t0 };
  for (let n = 1; n <= o.cycles; n++) {
    await soakCycle(o.client, `${o.prefix ?? 'soak-'}${n}`);
    if (n % o.every === 0 || n === o.cycles) {
      const now = performance.now();
      const row = { cycles: n, elapsedS: (now - t0) / 1000, rate: ((n - previous.cycles) * 1000) / (now - previous.t), ...sampleAgent(pid) };
      previous = { cycles: n, t: now };
      rows.push(row);
      o.onRow?.(row);
    }
  }
  return rows;
}

export const SOAK_COLUMNS = ['cycles', 'elapsed s', 'cycles/s', 'VmRSS MiB', 'RssAnon MiB', 'fds', 'children', 'zombies'];

export function formatSoakRow(r: SoakRow): string[] {
  return [
    String(r.cycles), r.elapsedS.toFixed(1), r.rate.toFixed(1), (r.vmRssKiB / 1024).toFixed(1), (r.rssAnonKiB / 1024).toFixed(1),
    String(r.fds), String(r.children), String(r.zombies),
  ];
}

/**
 * What a soak leaked, judged from a sample after warm-up and one after the
 * run (both settled): fds beyond `fdMargin`, children (zombies or not),
 * leftover state. Empty
 * when nothing leaked.
 */
export function soakLeaks(warm: AgentSample, final: AgentSample, leftovers: string[], fdMargin = 5): string[] {
  const leaks: string[] = [];
  if (final.fds > warm.fds + fdMargin) leaks.push(`fds grew from ${warm.fds} after warm-up to ${final.fds} (margin ${fdMargin})`);
  if (final.zombies > 0) leaks.push(`${final.zombies} zombie children of the agent`);
  if (final.children > final.zombies) leaks.push(`${final.children - final.zombies} live children of the agent`);
  if (leftovers.length > 0) leaks.push(`state left in the agent's state dir: ${leftovers.slice(0, 5).join(', ')}${leftovers.length > 5 ? ', ...' : ''}`);
  return leaks;
}
