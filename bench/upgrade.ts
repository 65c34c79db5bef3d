// In-place upgrade on the host (the bundled agent as an ordinary process,
// under unshare as the tests run it): blackout and total time with 1, 10 and
// 100 running processes. A prober asks Negotiate over and over, each time on
// a fresh connection (what a runtime does after the exec), and records who
// answered: the blackout is from the last answer of the old image to the
// first of the new one; the total from the UpgradeAgent call to that first
// answer; refused counts the probes that failed to connect at all (a
// connection waiting in the backlog is not refused). Prints a table; asserts
// nothing.
//   npm run bench:upgrade        (builds first)
//   node --import tsx bench/upgrade.ts [--runs N]
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AgentClient } from '../src/client/client';
import { AGENT_BUNDLE, startAgent } from '../test/helpers/agent-process';
import { containerSpec } from '../test/helpers/spec';
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

async function upgradeOnce(addr: string, target: { binary_path: string; sha256: string }, n: number): Promise<Run> {
  const client = await AgentClient.connect(addr, { protocols: ['v2'] });
  const t0 = performance.now();
  let lastOld = t0;
  let refused = 0;
  let upgradeId = '';
  let stop = false;
  // The prober runs before and during the call: answers from the old image until the exec.
  const probe = (async () => {
    for (;;) {
      if (stop) return null;
      const c = await AgentClient.connect(addr, { protocols: ['v2'], connectTimeout: 5 }).catch((err: unknown) => {
        if (/ECONNREFUSED|ENOENT/.test(String(err))) refused++;
        return null;
      });
      const at = performance.now();
      if (c) {
        const id = c.agent.image?.upgrade_id ?? '';
        c.close();
        if (upgradeId && id === upgradeId) return at;
        lastOld = at;
      }
    }
  })();
  const plan = await client.v2('UpgradeAgent', { ...target, request_id: `bench-${n}` });
  upgradeId = plan.upgrade_id;
  const stageMs = performance.now() - t0;
  client.close();
  const firstNew = await Promise.race([probe, new Promise<null>((r) => setTimeout(() => r(null), 60_000))]);
  stop = true;
  if (firstNew === null) throw new Error('the new image never answered');
  return { blackoutMs: firstNew - lastOld, totalMs: firstNew - t0, stageMs, refused };
}

async function main(): Promise<void> {
  const runs = flag('runs', 3);
  const rows = [['running processes', 'blackout ms (median)', 'min', 'max', 'total ms (median)', 'stage+pre-flight ms', 'refused', 'notes']];
  for (const count of [1, 10, 100]) {
    const agent = await startAgent({ args: ['--log-level', 'info'] });
    try {
      const dir = path.join(agent.sharedDir, 'next');
      fs.mkdirSync(dir);
      for (const f of ['agent.cjs', 'agent_native.node', 'pty.node']) fs.copyFileSync(path.join(path.dirname(AGENT_BUNDLE), f), path.join(dir, f));
      const target = { binary_path: 'next/agent.cjs', sha256: crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, 'agent.cjs'))).digest('hex') };
      const c = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
      await c.createContainer({ containerId: 'b', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '100000'] }) });
      await c.startContainer({ containerId: 'b' });
      for (let i = 1; i < count; i++) await c.exec({ containerId: 'b', execId: `s${i}`, process: proc(['sleep', '100000']) });
      c.close();
      const results: Run[] = [];
      for (let r = 0; r < runs; r++) results.push(await upgradeOnce(agent.addr, target, count * 100 + r));
      const b = results.map((x) => x.blackoutMs);
      rows.push([String(count), median(b).toFixed(0), Math.min(...b).toFixed(0), Math.max(...b).toFixed(0), median(results.map((x) => x.totalMs)).toFixed(0),
        median(results.map((x) => x.stageMs)).toFixed(0), String(results.reduce((n, x) => n + x.refused, 0)), `${runs} upgrades in a row`]);
    } finally {
      await agent.stop();
    }
  }
  console.log(`upgrade bench (host, an ordinary process): node ${process.version}`);
  printTable(rows);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
