// In-place upgrade, on the host (the bundled agent as an ordinary process,
// under unshare as the tests run it) and with --guest in a VM (the single
// executable as PID 1, over the virtio-serial channel, TCG here): blackout
// and total time with 1, 10 and 100 running processes. A prober connects
// over and over (Negotiate and a first call), each time on a fresh
// connection (what a runtime does after the exec), and records when it was
// answered and by which image: the blackout is the longest time without an
// answer, up to the new image's first; the total from the UpgradeAgent call
// to that first answer; refused counts the probes that failed to connect at all (a
// connection waiting in the backlog is not refused). Beside them the new
// image's own start-up (its announce line: process start -> listening), which
// the blackout contains. Prints a table; asserts nothing.
//   npm run bench:upgrade        (builds first)
//   node --import tsx bench/upgrade.ts [--runs N] [--guest]   (--guest: npm run build:image first)
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GUEST_DIR } from '../build/vm';
import { AgentClient } from '../src/client/client';
import { AGENT_BUNDLE, startAgent } from '../test/helpers/agent-process';
import { containerSpec } from '../test/helpers/spec';
import { startBenchGuest } from './guest-vm';
import { printTable } from './stdout';

const flag = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Run {
  blackoutMs: number;
  totalMs: number;
  stageMs: number;
  refused: number;
}

async function upgradeOnce(addr: string, target: { binary_path: string; sha256: string }, n: number, connectTimeout: number): Promise<Run> {
  const client = await AgentClient.connect(addr, { protocols: ['v2'], connectTimeout });
  // Who answered is told by the upgrade id Discovery shows: the old image's is known now.
  const oldId = client.agent.image?.upgrade_id ?? '';
  const t0 = performance.now();
  // When each probe was answered (by either image): the blackout is the longest gap after the UpgradeAgent answer.
  const answered: number[] = [];
  let refused = 0;
  let stop = false;
  // The prober runs before and during the call: answers from the old image until the exec.
  const probe = (async () => {
    for (;;) {
      if (stop) return null;
      const c = await AgentClient.connect(addr, { protocols: ['v2'], connectTimeout }).catch((err: unknown) => {
        if (/ECONNREFUSED|ENOENT/.test(String(err))) refused++;
        return null;
      });
      const at = performance.now();
      if (c) {
        const id = c.agent.image?.upgrade_id ?? '';
        c.close();
        answered.push(at);
        if (id !== oldId) return { at, id };
      }
    }
  })();
  const plan = await client.v2('UpgradeAgent', { ...target, request_id: `bench-${n}` }, { deadlineSeconds: 300 });
  const stageMs = performance.now() - t0;
  // The blackout starts at its answer (before it, over the serial channel, the call holds the only connection).
  const answeredAt = performance.now();
  client.close();
  const firstNew = await Promise.race([probe, new Promise<null>((r) => setTimeout(() => r(null), 180_000))]);
  stop = true;
  if (firstNew === null) throw new Error('the new image never answered');
  if (firstNew.id !== plan.upgrade_id) throw new Error(`an image of upgrade ${firstNew.id} answered, not the one of ${plan.upgrade_id}`);
  const times = [answeredAt, ...answered.filter((t) => t > answeredAt && t <= firstNew.at)].sort((x, y) => x - y);
  const blackoutMs = Math.max(...times.slice(1).map((t, i) => t - times[i]!));
  return { blackoutMs, totalMs: firstNew.at - t0, stageMs, refused };
}

/** Where the agent runs: an ordinary process here, or PID 1 of a VM. */
interface Subject {
  addr: string;
  /** The UpgradeAgent request for a copy of today's build in the shared directory. */
  target: { binary_path: string; sha256: string };
  /** The agent's JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

async function onHost(): Promise<Subject> {
  const agent = await startAgent({ args: ['--log-level', 'info'] });
  const dir = path.join(agent.sharedDir, 'next');
  fs.mkdirSync(dir);
  for (const f of ['agent.cjs', 'agent_native.node', 'pty.node']) fs.copyFileSync(path.join(path.dirname(AGENT_BUNDLE), f), path.join(dir, f));
  return { addr: agent.addr, target: { binary_path: 'next/agent.cjs', sha256: sha256(path.join(dir, 'agent.cjs')) }, logs: () => agent.logs(), stop: () => agent.stop() };
}

async function inGuest(): Promise<Subject> {
  const guest = await startBenchGuest('upgrade', {
    prepare: (shared) => {
      fs.copyFileSync(path.join(GUEST_DIR, 'agent'), path.join(shared, 'agent-next'));
      fs.chmodSync(path.join(shared, 'agent-next'), 0o755);
    },
  });
  return {
    addr: guest.addr,
    target: { binary_path: 'agent-next', sha256: sha256(path.join(guest.shared, 'agent-next')) },
    logs: guest.logs,
    stop: guest.stop,
  };
}

/** The start-up (process start -> listening, ms) of each image that took over, oldest first. */
const takeoverStartups = (logs: Array<Record<string, unknown>>) =>
  logs.filter((l) => l.msg === 'announce' && l.tookOverFrom).map((l) => Number((l.startupMs as { listening?: number } | undefined)?.listening));

async function main(): Promise<void> {
  const guest = process.argv.includes('--guest');
  const runs = flag('runs', guest ? 1 : 3);
  const connectTimeout = guest ? 120 : 5;
  const rows = [['running processes', 'blackout ms (median)', 'min', 'max', 'new image start-up ms', 'total ms (median)', 'stage+pre-flight ms', 'refused', 'notes']];
  for (const count of [1, 10, 100]) {
    const subject = guest ? await inGuest() : await onHost();
    try {
      const c = await AgentClient.connect(subject.addr, { protocols: ['v2'], connectTimeout });
      await c.createContainer({ containerId: 'b', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '100000'] }) });
      await c.startContainer({ containerId: 'b' });
      for (let i = 1; i < count; i++) await c.exec({ containerId: 'b', execId: `s${i}`, process: proc(['sleep', '100000']) });
      c.close();
      const results: Run[] = [];
      for (let r = 0; r < runs; r++) results.push(await upgradeOnce(subject.addr, subject.target, count * 100 + r, connectTimeout));
      const b = results.map((x) => x.blackoutMs);
      const startups = takeoverStartups(subject.logs());
      rows.push([String(count), median(b).toFixed(0), Math.min(...b).toFixed(0), Math.max(...b).toFixed(0),
        startups.length ? median(startups).toFixed(0) : '?', median(results.map((x) => x.totalMs)).toFixed(0),
        median(results.map((x) => x.stageMs)).toFixed(0), String(results.reduce((n, x) => n + x.refused, 0)), `${runs} upgrade${runs > 1 ? 's in a row' : ''}`]);
    } finally {
      await subject.stop();
    }
  }
  console.log(guest
    ? `upgrade bench (guest: the single executable as PID 1, QEMU ${process.env.AGENT_VM_ACCEL ?? 'accel by probe'}, over the virtio-serial channel)`
    : `upgrade bench (host, an ordinary process): node ${process.version}`);
  printTable(rows);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
