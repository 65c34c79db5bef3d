// Stdout throughput and unary latency by protocol version, against the
// bundled agent (dist/agent.cjs). Prints tables; asserts nothing.
//   npm run bench:stdout                       (builds first)
//   node --import tsx bench/stdout.ts [--mib N] [--runs N] [--calls N]
// One process in a busybox container writes N MiB (default 64) to stdout
// (busybox `dd if=/dev/zero bs=64k`: 64 KiB writes, so the writer is not what
// limits the rate); the client reads it all, and the time from
// first byte to the last is the throughput (the exec's own start, crun's
// fork and exec, is printed beside it, not mixed into it):
// - v1: ReadStdout polls (the typed API's v1 path: one unary call per chunk);
// - v2: the ReadOutput stream (the typed API's v2 path), 64 KiB and 1 MiB chunks;
// - raw: the same bytes with no gRPC and no agent: the same busybox `dd`
//   writing into a pipe,
//   a relay process copying the pipe to a unix socket, this process reading it
//   (the shape of the agent's path: pipe -> process -> unix socket -> client).
// Then unary round trips of a trivial call on each version (GetGuestDetails,
// which both versions serve from the same core) and of Negotiate.
// bench/guest.ts measures the same over the VM's channel (measureStdout, measureUnary).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AgentClient } from '../src/client/client';
import { DiscoveryService } from '../src/protocol';
import { AGENT_BUNDLE, startAgent } from '../test/helpers/agent-process';
import { containerSpec } from '../test/helpers/spec';

export type Mode = { name: string; protocol: 'v1' | 'v2'; chunkBytes: number; acknowledge?: false };
export const MODES: Mode[] = [
  { name: 'v1 ReadStdout polling, len 64 KiB', protocol: 'v1', chunkBytes: 64 * 1024 },
  { name: 'v1 ReadStdout polling, len 1 MiB', protocol: 'v1', chunkBytes: 1024 * 1024 },
  { name: 'v2 ReadOutput stream, 64 KiB chunks', protocol: 'v2', chunkBytes: 64 * 1024 },
  { name: 'v2 ReadOutput stream, 1 MiB chunks', protocol: 'v2', chunkBytes: 1024 * 1024 },
  // What acknowledging costs: the agent then keeps only the last 256 KiB sent (0.2.0's way).
  { name: 'v2 ReadOutput stream, 1 MiB chunks, no acknowledgements', protocol: 'v2', chunkBytes: 1024 * 1024, acknowledge: false },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
};
const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });

let execs = 0;

const WRITE_BYTES = 64 * 1024;
/** The writer: `bytes` zeros in 64 KiB writes (a multiple of it; dd's summary goes to stderr). */
const writer = (bytes: number) => ['dd', 'if=/dev/zero', `bs=${WRITE_BYTES}`, `count=${Math.ceil(bytes / WRITE_BYTES)}`];

/** A run's figures: MiB/s from the first byte to the last, and ms from the start to the first byte. */
export interface Throughput {
  mibPerSecond: number;
  firstByteMs: number;
}

/** Adds a received chunk of `n` bytes to a run's clock. */
function clock(t0: number) {
  let first = 0;
  let firstLength = 0;
  return {
    chunk(n: number) {
      if (first === 0 && n > 0) {
        first = performance.now();
        firstLength = n;
      }
    },
    /** The first chunk was already there when the clock started: its bytes are left out of the rate. */
    result(bytes: number): Throughput {
      const s = (performance.now() - first) / 1000;
      return { mibPerSecond: (bytes - firstLength) / 1048576 / s, firstByteMs: first - t0 };
    },
  };
}

/**
 * One run: exec `dd` of `bytes` zeros (in 64 KiB writes) in `containerId` and read its
 * stdout to the end with `client` (the protocol it speaks). Checks every
 * byte arrived.
 */
export async function measureStdout(client: AgentClient, containerId: string, bytes: number, chunkBytes: number, acknowledge?: false): Promise<Throughput> {
  const execId = `out-${process.pid}-${execs++}`;
  const c = clock(performance.now());
  await client.exec({ containerId, execId, process: proc(writer(bytes)) });
  let got = 0;
  for await (const chunk of client.readOutput({ containerId, execId, maxChunkBytes: chunkBytes, ...(acknowledge === false ? { acknowledge } : {}) })) {
    c.chunk(chunk.data.length);
    got += chunk.data.length;
  }
  if (got !== bytes) throw new Error(`${client.protocol}: read ${got} of ${bytes} bytes`);
  const status = await client.wait({ containerId, execId });
  if (status.code !== 0) throw new Error(`dd exited ${JSON.stringify(status)}`);
  if (client.protocol === 'v2') await client.releaseProcess({ containerId, execId });
  return c.result(bytes);
}

/** The same bytes with no agent: dd -> pipe -> relay process -> unix socket -> here. */
export async function measureRaw(bytes: number, dir: string): Promise<Throughput> {
  const sock = path.join(dir, `raw-${execs++}.sock`);
  let got = 0;
  const c = clock(performance.now());
  const done = new Promise<void>((resolve, reject) => {
    const server = net.createServer((s) => {
      s.on('data', (b: Buffer) => {
        c.chunk(b.length);
        got += b.length;
      });
      s.once('end', () => {
        server.close();
        resolve();
      });
      s.once('error', reject);
    });
    server.listen(sock, () => {
      const relay = `const s=require('net').connect(${JSON.stringify(sock)});process.stdin.pipe(s);`;
      const child = spawn('sh', ['-c', `busybox ${writer(bytes).join(' ')} 2>/dev/null | ${JSON.stringify(process.execPath)} -e ${JSON.stringify(relay)}`], { stdio: 'ignore' });
      child.once('error', reject);
    });
  });
  await done;
  fs.rmSync(sock, { force: true });
  if (got !== bytes) throw new Error(`raw: read ${got} of ${bytes} bytes`);
  return c.result(bytes);
}

/** `calls` sequential round trips of `fn` after `warmup`: p50, p99 in ms. */
export async function measureUnary(fn: () => Promise<unknown>, calls: number, warmup = Math.min(200, calls)): Promise<{ p50: number; p99: number; perSecond: number }> {
  for (let i = 0; i < warmup; i++) await fn();
  const ms: number[] = [];
  const t = performance.now();
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return { p50: pct(ms, 0.5), p99: pct(ms, 0.99), perSecond: calls / ((performance.now() - t) / 1000) };
}

export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const numeric = (c: number) => rows.slice(1).every((r) => /^[\d.x%-]*$/.test(r[c] ?? ''));
  for (const [i, r] of rows.entries()) {
    console.log(r.map((cell, c) => (numeric(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd());
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

/**
 * The throughput table: MiB/s per mode from first byte to last (median of
 * runs), v2's ratios to v1 (64 KiB) and to raw, and the median time to the
 * first byte (for the gRPC modes: ExecProcess through crun).
 */
export function throughputRows(results: Map<string, Throughput[]>, rawName: string | null, bytes: number, runs: number): string[][] {
  const rows = [['measure', 'MiB/s (median)', 'min', 'max', 'vs v1 64K', 'vs raw', 'first byte ms', 'notes']];
  const rate = (name: string) => (results.has(name) ? median(results.get(name)!.map((r) => r.mibPerSecond)) : NaN);
  const v1 = rate(MODES[0]!.name);
  const raw = rawName ? rate(rawName) : NaN;
  for (const [name, runsOf] of results) {
    const xs = runsOf.map((r) => r.mibPerSecond);
    const m = median(xs);
    rows.push([name, fmt(m), fmt(Math.min(...xs)), fmt(Math.max(...xs)), `${fmt(m / v1)}x`, Number.isNaN(raw) ? '-' : `${fmt((m / raw) * 100)}%`,
      fmt(median(runsOf.map((r) => r.firstByteMs))), `${runs} runs of ${bytes / 1048576} MiB`]);
  }
  return rows;
}

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  if (!fs.existsSync(AGENT_BUNDLE)) throw new Error(`${AGENT_BUNDLE} is missing: run npm run build`);
  const bytes = flag('mib', 64) * 1048576;
  const runs = flag('runs', 3);
  const calls = flag('calls', 2000);
  const agent = await startAgent({ args: ['--log-level', 'info'] });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-stdout-'));
  const clients: AgentClient[] = [];
  const closers: Array<() => void> = [];
  try {
    const discovery = discoveryClient(agent.addr);
    closers.push(() => discovery.close());
    const v1 = await AgentClient.connect(agent.addr, { protocols: ['v1'] });
    const v2 = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
    clients.push(v1, v2);
    await v2.createContainer({ containerId: 'bench', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '100000'] }) });
    await v2.startContainer({ containerId: 'bench' });

    const results = new Map<string, Throughput[]>();
    const rawName = 'raw: pipe -> relay process -> unix socket (no gRPC)';
    // Interleaved runs, so drift on the shared machine spreads over every mode.
    for (let run = 0; run < runs; run++) {
      for (const m of MODES) {
        const xs = results.get(m.name) ?? [];
        xs.push(await measureStdout(m.protocol === 'v1' ? v1 : v2, 'bench', bytes, m.chunkBytes, m.acknowledge));
        results.set(m.name, xs);
      }
      const xs = results.get(rawName) ?? [];
      xs.push(await measureRaw(bytes, tmp));
      results.set(rawName, xs);
    }

    const unary = [['unary round trip', 'p50 ms', 'p99 ms', 'calls/s', 'notes']];
    for (const [name, fn] of [
      ['v1 GetGuestDetails', () => v1.v1('GetGuestDetails', { mem_block_size: false, mem_hotplug_probe: false })],
      ['v2 GetGuestDetails', () => v2.v2('GetGuestDetails', { mem_block_size: false, mem_hotplug_probe: false })],
      ['v2 ListContainers (one container)', () => v2.listContainers()],
      ['Negotiate (agent.Discovery)', () => negotiate(discovery)],
    ] as Array<[string, () => Promise<unknown>]>) {
      const r = await measureUnary(fn, calls);
      unary.push([name, fmt(r.p50), fmt(r.p99), fmt(r.perSecond), `${calls} sequential calls on one channel after 200 warm-up`]);
    }

    console.log(`stdout bench: node ${process.version}, ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? ''}; agent ${v2.agent.agent_version}`);
    printTable(throughputRows(results, rawName, bytes, runs));
    console.log('');
    printTable(unary);
    const rate = (name: string) => median(results.get(name)!.map((r) => r.mibPerSecond));
    const v1m = rate(MODES[0]!.name);
    const best = Math.max(rate(MODES[2]!.name), rate(MODES[3]!.name)); // acknowledged, as the typed client reads
    const raw = rate(rawName);
    console.log(`\ngoal: v2 >= 10x v1 (now ${fmt(best / v1m)}x) and >= 50% of raw (now ${fmt((best / raw) * 100)}%)`);
    await v2.removeContainer({ containerId: 'bench' });
  } finally {
    for (const c of clients) c.close();
    for (const c of closers) c();
    await agent.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** A plain agent.Discovery client on a channel of its own. */
export function discoveryClient(addr: string): grpc.Client & Record<string, Function> {
  return new DiscoveryService(addr.replace(/^unix:\/\//, 'unix:'), grpc.credentials.createInsecure(), {}) as unknown as grpc.Client & Record<string, Function>;
}

/** One Negotiate offering v1 and v2. */
export function negotiate(discovery: grpc.Client & Record<string, Function>): Promise<unknown> {
  return new Promise((resolve, reject) =>
    discovery.Negotiate!({ client_name: 'bench', client_version: '0', protocol_versions: ['v1', 'v2'] }, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res))),
  );
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exitCode = 1;
  });
}
