// Stdout throughput and unary latency by protocol version, against the
// bundled agent (dist/agent.cjs). Prints tables; asserts nothing.
//   npm run bench:stdout                       (builds first)
//   node --import tsx bench/stdout.ts [--mib N] [--runs N] [--calls N]
// One process in a busybox container writes N MiB (default 64) to stdout
// (`head -c BYTES /dev/zero`); the client reads it all, and the time from
// ExecProcess to the last byte is taken:
// - v1: ReadStdout polls (the typed API's v1 path: one unary call per chunk);
// - v2: the ReadOutput stream (the typed API's v2 path), 64 KiB and 1 MiB chunks;
// - raw: the same bytes with no gRPC and no agent: `head` writing into a pipe,
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

export type Mode = { name: string; protocol: 'v1' | 'v2'; chunkBytes: number };
export const MODES: Mode[] = [
  { name: 'v1 ReadStdout polling, len 64 KiB', protocol: 'v1', chunkBytes: 64 * 1024 },
  { name: 'v1 ReadStdout polling, len 1 MiB', protocol: 'v1', chunkBytes: 1024 * 1024 },
  { name: 'v2 ReadOutput stream, 64 KiB chunks', protocol: 'v2', chunkBytes: 64 * 1024 },
  { name: 'v2 ReadOutput stream, 1 MiB chunks', protocol: 'v2', chunkBytes: 1024 * 1024 },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
};
const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });

let execs = 0;

/**
 * One run: exec `head -c bytes /dev/zero` in `containerId` and read its
 * stdout to the end with `client` (the protocol it speaks); MiB/s from
 * ExecProcess to the last byte. Checks every byte arrived.
 */
export async function measureStdout(client: AgentClient, containerId: string, bytes: number, chunkBytes: number): Promise<number> {
  const execId = `out-${process.pid}-${execs++}`;
  const t0 = performance.now();
  await client.exec({ containerId, execId, process: proc(['head', '-c', String(bytes), '/dev/zero']) });
  let got = 0;
  for await (const c of client.readOutput({ containerId, execId, maxChunkBytes: chunkBytes })) got += c.data.length;
  const s = (performance.now() - t0) / 1000;
  if (got !== bytes) throw new Error(`${client.protocol}: read ${got} of ${bytes} bytes`);
  const status = await client.wait({ containerId, execId });
  if (status.code !== 0) throw new Error(`head exited ${JSON.stringify(status)}`);
  if (client.protocol === 'v2') await client.releaseProcess({ containerId, execId });
  return bytes / 1048576 / s;
}

/** The same bytes with no agent: head -> pipe -> relay process -> unix socket -> here. MiB/s. */
export async function measureRaw(bytes: number, dir: string): Promise<number> {
  const sock = path.join(dir, `raw-${execs++}.sock`);
  let got = 0;
  const t0 = performance.now();
  const done = new Promise<void>((resolve, reject) => {
    const server = net.createServer((s) => {
      s.on('data', (b: Buffer) => (got += b.length));
      s.once('end', () => {
        server.close();
        resolve();
      });
      s.once('error', reject);
    });
    server.listen(sock, () => {
      const relay = `const s=require('net').connect(${JSON.stringify(sock)});process.stdin.pipe(s);`;
      const child = spawn('sh', ['-c', `head -c ${bytes} /dev/zero | ${JSON.stringify(process.execPath)} -e ${JSON.stringify(relay)}`], { stdio: 'ignore' });
      child.once('error', reject);
    });
  });
  await done;
  const s = (performance.now() - t0) / 1000;
  fs.rmSync(sock, { force: true });
  if (got !== bytes) throw new Error(`raw: read ${got} of ${bytes} bytes`);
  return bytes / 1048576 / s;
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

/** The throughput table: MiB/s per mode (median of runs), and v2's ratios to v1 (64 KiB) and to raw. */
export function throughputRows(results: Map<string, number[]>, rawName: string | null, bytes: number, runs: number): string[][] {
  const rows = [['measure', 'MiB/s (median)', 'min', 'max', 'vs v1 64K', 'vs raw', 'notes']];
  const v1 = median(results.get(MODES[0]!.name) ?? [NaN]);
  const raw = rawName ? median(results.get(rawName) ?? [NaN]) : NaN;
  for (const [name, xs] of results) {
    const m = median(xs);
    rows.push([name, fmt(m), fmt(Math.min(...xs)), fmt(Math.max(...xs)), `${fmt(m / v1)}x`, Number.isNaN(raw) ? '-' : `${fmt((m / raw) * 100)}%`,
      `${runs} runs of ${bytes / 1048576} MiB`]);
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

    const results = new Map<string, number[]>();
    const rawName = 'raw: pipe -> relay process -> unix socket (no gRPC)';
    // Interleaved runs, so drift on the shared machine spreads over every mode.
    for (let run = 0; run < runs; run++) {
      for (const m of MODES) {
        const xs = results.get(m.name) ?? [];
        xs.push(await measureStdout(m.protocol === 'v1' ? v1 : v2, 'bench', bytes, m.chunkBytes));
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
    const v1m = median(results.get(MODES[0]!.name)!);
    const best = Math.max(median(results.get(MODES[2]!.name)!), median(results.get(MODES[3]!.name)!));
    const raw = median(results.get(rawName)!);
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
