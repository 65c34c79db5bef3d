// Benchmarks of the bundled agent (dist/agent.cjs). Prints a table; asserts
// nothing about timings. Run: node --import tsx bench/run.ts (after a build).
// See bench/README.md for what each row measures.
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentClient } from '../src/client/client';
import { DiscoveryService } from '../src/protocol';
import { AGENT_BUNDLE, agentNodePid, REPO, startAgent, type TestAgent } from '../test/helpers/agent-process';
import { makeBusyboxRootfs } from '../test/helpers/rootfs';
import { containerSpec } from '../test/helpers/spec';
import { canConnect } from './sockets';

const STARTS = 5;
const NEGOTIATE_CALLS = 5000;
const NEGOTIATE_WARMUP = 200;
const EXEC_RUNS = 30;
const EXEC_WARMUP = 3;

interface Row {
  id: string;
  measure: string;
  n: string;
  p50: string;
  p99: string;
  min: string;
  max: string;
  unit: string;
  notes: string;
}

const rows: Row[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function timingRow(id: string, measure: string, samples: number[], notes = ''): void {
  const s = [...samples].sort((a, b) => a - b);
  rows.push({
    id, measure, n: String(s.length), p50: fmt(percentile(s, 0.5)), p99: fmt(percentile(s, 0.99)),
    min: fmt(s[0]!), max: fmt(s[s.length - 1]!), unit: 'ms', notes,
  });
}

function valueRow(id: string, measure: string, value: string, unit: string, notes = ''): void {
  rows.push({ id, measure, n: '1', p50: value, p99: '-', min: '-', max: '-', unit, notes });
}

/** VmRSS and VmHWM of a process, in MiB. */
function memory(pid: number): { rss: number; hwm: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

function discoveryClient(addr: string): grpc.Client & Record<string, Function> {
  return new DiscoveryService(addr.replace(/^unix:\/\//, 'unix:'), grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
  }) as unknown as grpc.Client & Record<string, Function>;
}

function negotiate(client: grpc.Client & Record<string, Function>): Promise<{ selected_version: string }> {
  return new Promise((resolve, reject) =>
    client.Negotiate(
      { client_name: 'bench', client_version: '0', protocol_versions: ['v1'] },
      (err: grpc.ServiceError | null, res: { selected_version: string }) => (err ? reject(err) : resolve(res)),
    ),
  );
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

// (a) process start -> first answered Negotiate, direct spawn (no namespaces: no container is made).
async function startToNegotiate(): Promise<{ ms: number; pid: number; dir: string; child: ChildProcess }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-bench-'));
  const sock = path.join(dir, 'agent.sock');
  const t0 = performance.now();
  const child = spawn(process.execPath, [
    AGENT_BUNDLE, '--server-addr', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--shared-dir', path.join(dir, 'shared'),
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await waitExit(child);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  cleanups.push(stop);
  try {
    const deadline = t0 + 15000;
    while (!(fs.existsSync(sock) && (await canConnect(sock)))) {
      if (child.exitCode !== null) throw new Error(`agent exited during start-up: ${stderr}`);
      if (performance.now() > deadline) throw new Error('agent did not listen within 15 s');
      await sleep(1);
    }
    const client = discoveryClient(`unix://${sock}`);
    try {
      const res = await negotiate(client);
      if (res.selected_version !== 'v1') throw new Error(`selected_version ${res.selected_version}`);
    } finally {
      client.close();
    }
    return { ms: performance.now() - t0, pid: child.pid!, dir, child };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function benchStart(): Promise<void> {
  const samples: number[] = [];
  let idle: { rss: number; hwm: number } | undefined;
  for (let i = 0; i < STARTS; i++) {
    const started = await startToNegotiate();
    samples.push(started.ms);
    if (i === STARTS - 1) {
      await sleep(1000);
      idle = memory(started.pid);
    }
    started.child.kill('SIGKILL');
    await waitExit(started.child);
    fs.rmSync(started.dir, { recursive: true, force: true });
  }
  timingRow('a', 'agent start -> first Negotiate answered', samples, `direct spawn of node dist/agent.cjs, ${STARTS} starts`);
  if (idle) valueRow('b1', 'idle RSS, direct spawn (1 s after start)', fmt(idle.rss), 'MiB', `VmHWM ${fmt(idle.hwm)} MiB`);
}

async function drain(client: AgentClient, container_id: string, exec_id: string): Promise<void> {
  for (const method of ['ReadStdout', 'ReadStderr'] as const) {
    for (let i = 0; i < 100; i++) {
      try {
        const res = await client.v1(method, { container_id, exec_id, len: 65536 });
        if (!res.data || res.data.length === 0) break;
      } catch (err) {
        // A drained, exited exec is forgotten: NOT_FOUND means there is nothing left.
        if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) break;
        throw err;
      }
    }
  }
}

async function benchAgent(): Promise<void> {
  const agent: TestAgent = await startAgent({ args: ['--log-level', 'info'] });
  cleanups.push(() => agent.stop());
  const pid = agentNodePid(agent.child.pid!);
  const pidNote = pid === agent.child.pid ? `pid ${pid} = spawned pid (sh exec'd node)` : `node pid ${pid} under wrapper ${agent.child.pid}`;

  const client = await agent.connect();
  cleanups.push(() => client.close());
  await sleep(1000);
  const idle = memory(pid);
  valueRow('b2', 'idle RSS, in unshare (1 s after start)', fmt(idle.rss), 'MiB', `${pidNote}; VmHWM ${fmt(idle.hwm)} MiB`);

  // (c) unary Negotiate round trips on one connection.
  const discovery = discoveryClient(agent.addr);
  cleanups.push(() => discovery.close());
  for (let i = 0; i < NEGOTIATE_WARMUP; i++) await negotiate(discovery);
  const rtt: number[] = [];
  const tAll = performance.now();
  for (let i = 0; i < NEGOTIATE_CALLS; i++) {
    const t0 = performance.now();
    await negotiate(discovery);
    rtt.push(performance.now() - t0);
  }
  const total = performance.now() - tAll;
  timingRow('c', 'Negotiate round trip, one connection', rtt, `sequential, after ${NEGOTIATE_WARMUP} warm-up; ${fmt((NEGOTIATE_CALLS / total) * 1000)} calls/s`);
  const after = memory(pid);
  valueRow('c2', `RSS after ${NEGOTIATE_CALLS + NEGOTIATE_WARMUP} Negotiate calls`, fmt(after.rss), 'MiB', `VmHWM ${fmt(after.hwm)} MiB`);

  // (d) ExecProcess + WaitProcess of `true` in a running busybox container.
  const cid = 'bench';
  const spec = containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] });
  await client.v1('CreateContainer', { container_id: cid, exec_id: '', oci_spec_json: JSON.stringify(spec), storages: [] });
  cleanups.push(async () => {
    await client.v1('RemoveContainer', { container_id: cid, timeout: 0 }).catch(() => {});
  });
  await client.v1('StartContainer', { container_id: cid });
  const processJson = JSON.stringify({ args: ['true'], env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false });
  const execMs: number[] = [];
  for (let i = 0; i < EXEC_WARMUP + EXEC_RUNS; i++) {
    const exec_id = `e${i}`;
    const t0 = performance.now();
    await client.v1('ExecProcess', { container_id: cid, exec_id, oci_process_json: processJson });
    const { status } = await client.v1('WaitProcess', { container_id: cid, exec_id });
    const t = performance.now() - t0;
    if (status !== 0) throw new Error(`exec ${exec_id} of true ended with status ${status}`);
    if (i >= EXEC_WARMUP) execMs.push(t);
    await drain(client, cid, exec_id);
  }
  timingRow('d1', 'agent ExecProcess+WaitProcess `true`', execMs, `busybox container (init sleep 1000), after ${EXEC_WARMUP} warm-up`);
  const afterExec = memory(pid);
  valueRow('d3', `RSS after ${EXEC_WARMUP + EXEC_RUNS} execs`, fmt(afterExec.rss), 'MiB', `VmHWM ${fmt(afterExec.hwm)} MiB`);
  await client.v1('RemoveContainer', { container_id: cid, timeout: 0 });
}

async function benchCrun(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crun-bench-'));
  const bundle = path.join(dir, 'bundle');
  const rootfs = makeBusyboxRootfs(path.join(bundle, 'rootfs'));
  const spec = containerSpec({ rootPath: rootfs, args: ['sleep', '1000'] });
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec, null, 2));
  const crunRoot = path.join(dir, 'crun-root');
  const id = `bench-${process.pid}`;
  const helper = path.join(REPO, 'bench', 'crun-exec.mjs');
  const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  const child = spawn('unshare', [
    '-m', '--propagation', 'private', 'sh', '-c',
    `mount -t cgroup2 none /sys/fs/cgroup && exec ${[process.execPath, helper, crunRoot, bundle, id, String(EXEC_RUNS), String(EXEC_WARMUP)].map(q).join(' ')}`,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await waitExit(child);
    }
    // The helper kills and deletes its container; make sure of it by pid.
    try {
      const initPid = Number(fs.readFileSync(path.join(bundle, 'init.pid'), 'utf8'));
      if (initPid > 0 && fs.readFileSync(`/proc/${initPid}/cmdline`, 'utf8').startsWith('sleep')) process.kill(initPid, 'SIGKILL');
    } catch {
      // No pid file or already gone.
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  cleanups.push(cleanup);
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(timer);
  await cleanup();
  if (code !== 0) throw new Error(`crun baseline failed (exit ${code}): ${err}`);
  const { ms } = JSON.parse(out.trim().split('\n').pop()!) as { ms: number[] };
  timingRow('d2', 'bare `crun exec ID true` (baseline)', ms, `crun --cgroup-manager=disabled, same spec, after ${EXEC_WARMUP} warm-up`);
}

function printTable(): void {
  const head: Row = { id: 'row', measure: 'measure', n: 'n', p50: 'p50/value', p99: 'p99', min: 'min', max: 'max', unit: 'unit', notes: 'notes' };
  const cols = Object.keys(head) as Array<keyof Row>;
  const right = new Set<keyof Row>(['n', 'p50', 'p99', 'min', 'max']);
  const width = Object.fromEntries(cols.map((c) => [c, Math.max(...[head, ...rows].map((r) => r[c].length))])) as Record<keyof Row, number>;
  const line = (r: Row) => cols.map((c) => (right.has(c) ? r[c].padStart(width[c]) : r[c].padEnd(width[c]))).join('  ').trimEnd();
  console.log(line(head));
  console.log(cols.map((c) => '-'.repeat(width[c])).join('  '));
  for (const r of rows) console.log(line(r));
}

async function cleanupAll(): Promise<void> {
  while (cleanups.length) {
    try {
      await cleanups.pop()!();
    } catch {
      // Best effort.
    }
  }
}

async function main(): Promise<void> {
  if (!fs.existsSync(AGENT_BUNDLE)) throw new Error(`${AGENT_BUNDLE} is missing: run npm run build`);
  const started = performance.now();
  process.once('SIGINT', () => void cleanupAll().then(() => process.exit(130)));
  let failure: unknown;
  try {
    await benchStart();
    await benchAgent();
    await cleanupAll();
    await benchCrun();
  } catch (err) {
    failure = err;
  } finally {
    await cleanupAll();
  }
  console.log(`agent bench: node ${process.version}, ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? ''}`);
  printTable();
  console.log(`(took ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  if (failure) throw failure;
}

main().catch(async (err) => {
  await cleanupAll();
  console.error(err instanceof Error ? err.stack : err);
  process.exitCode = 1;
});
