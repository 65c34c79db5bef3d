// Scale: one container grown to many tracked processes (execs of `sleep`, in
// concurrent batches), printing for each step the exec rate over that step,
// the agent's VmRSS and RssAnon, its memory per tracked process, and its
// open fds. Per-event work that grows with the number of processes shows as
// a falling rate. Then the container is removed with all of them. Prints a
// table; asserts nothing.
//   npm run bench:scale                                  (builds first)
//   node --import tsx bench/scale.ts [--processes N] [--step N] [--batch N]
import fs from 'node:fs';
import { AgentClient } from '../src/client/client';
import { agentNodePid, startAgent } from '../test/helpers/agent-process';
import { containerSpec } from '../test/helpers/spec';
import { printTable } from './stdout';

const flag = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const TOTAL = flag('processes', 2000);
const STEP = flag('step', Math.max(100, TOTAL / 10));
const BATCH = flag('batch', 20);
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });

function memoryKb(pid: number): { rss: number; anon: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS'), anon: kb('RssAnon') };
}

async function main(): Promise<void> {
  const agent = await startAgent({ keepLine: (l) => l.includes('"msg":"announce"') });
  const pid = agentNodePid(agent.child.pid!);
  const client = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  const rows = [['tracked processes', 'execs/s (this step)', 'ms per exec (p50 of step)', 'VmRSS MB', 'RssAnon MB', 'RssAnon per process KB (since 0)', 'fds']];
  try {
    await client.createContainer({ containerId: 'scale', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000000'] }) });
    await client.startContainer({ containerId: 'scale' });
    await new Promise((r) => setTimeout(r, 1000));
    const base = memoryKb(pid);
    const fds = () => fs.readdirSync(`/proc/${pid}/fd`).length;
    rows.push(['0', '', '', (base.rss / 1000).toFixed(1), (base.anon / 1000).toFixed(1), '', String(fds())]);
    let n = 0;
    while (n < TOTAL) {
      const t0 = performance.now();
      const times: number[] = [];
      const target = Math.min(TOTAL, n + STEP);
      while (n < target) {
        const batch = Array.from({ length: Math.min(BATCH, target - n) }, (_, i) => n + i);
        await Promise.all(batch.map(async (i) => {
          const s = performance.now();
          await client.exec({ containerId: 'scale', execId: `s${i}`, process: proc(['sleep', '1000000']) });
          times.push(performance.now() - s);
        }));
        n += batch.length;
      }
      const secs = (performance.now() - t0) / 1000;
      const m = memoryKb(pid);
      times.sort((a, b) => a - b);
      rows.push([String(n), (STEP / secs).toFixed(1), times[Math.floor(times.length / 2)]!.toFixed(0), (m.rss / 1000).toFixed(1), (m.anon / 1000).toFixed(1),
        ((m.anon - base.anon) / n).toFixed(1), String(fds())]);
      process.stderr.write(`scale: ${n} processes\n`);
    }
    const t = performance.now();
    await client.removeContainer({ containerId: 'scale' });
    rows.push([`removed (${n})`, '', `${(performance.now() - t).toFixed(0)} ms in all`, '', '', '', String(fds())]);
  } finally {
    client.close();
    await agent.stop();
  }
  console.log(`scale bench (host, the bundle as the tests start it; execs in concurrent batches of ${BATCH}): node ${process.version}`);
  printTable(rows);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
