// Soak of the bundled agent (dist/agent.cjs): N container cycles (create,
// start, exec `echo x`, wait and read it, SIGKILL the init, wait, remove)
// through the real client, one after the other, with a row every 1,000 cycles
// (every cycles/10 for shorter runs): speed, agent memory, open fds, children
// and zombies. The goal is flat columns. Asserts nothing.
// Run: node --import tsx bench/soak.ts [--cycles N] [--every N] (after a build).
// See bench/README.md.
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { AgentClient } from '../src/client/client';
import { AGENT_BUNDLE, startAgent, type TestAgent } from '../test/helpers/agent-process';
import {
  agentNodePid, formatSoakRow, leftoverState, runSoak, sampleAgent, settledSample, SOAK_COLUMNS, type AgentSample,
} from '../test/helpers/soak';

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '10000' },
    every: { type: 'string' },
  },
});
const cycles = Number(values.cycles);
if (!Number.isInteger(cycles) || cycles < 1) throw new Error(`--cycles must be a positive integer, not ${values.cycles}`);
const every = values.every ? Number(values.every) : cycles >= 10_000 ? 1000 : Math.max(1, Math.round(cycles / 10));
if (!Number.isInteger(every) || every < 1) throw new Error(`--every must be a positive integer, not ${values.every}`);

// Fixed widths: rows are printed one at a time, as they come.
const WIDTH = SOAK_COLUMNS.map((c) => Math.max(c.length, 8));
const line = (cells: string[]) => cells.map((v, i) => v.padStart(WIDTH[i]!)).join('  ');

const sampleLine = (label: string, s: AgentSample) =>
  `${label}: VmRSS ${(s.vmRssKiB / 1024).toFixed(1)} MiB, RssAnon ${(s.rssAnonKiB / 1024).toFixed(1)} MiB, ${s.fds} fds, ${s.children} children, ${s.zombies} zombies`;

async function main(): Promise<void> {
  let agent: TestAgent | undefined;
  let client: AgentClient | undefined;
  const stop = async () => {
    client?.close();
    await agent?.stop();
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(130)));
  try {
    agent = await startAgent({ args: ['--log-level', 'info'] });
    client = await agent.connect();
    const pid = agentNodePid(agent.child.pid!, AGENT_BUNDLE);
    console.log(`agent soak: ${cycles} cycles, a row every ${every}; node ${process.version}, ${os.cpus().length} CPUs; agent pid ${pid}${pid === agent.child.pid ? '' : ` under ${agent.child.pid}`}`);
    console.log(sampleLine('before the first cycle', sampleAgent(pid)));
    console.log(line(SOAK_COLUMNS));
    console.log(line(WIDTH.map((w) => '-'.repeat(w))));
    await runSoak({
      agent, client, cycles, every,
      onRow: (row) => console.log(line(formatSoakRow(row))),
    });
    console.log(sampleLine('settled after the last cycle', await settledSample(pid)));
    const left = leftoverState(agent.stateDir);
    console.log(`state left in the agent's state dir: ${left.length ? left.join(', ') : 'none'}`);
  } finally {
    await stop();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exitCode = 1;
});
