// What keeping the state file costs (src/agent/state/): the same calls
// against two agents, one saving its state after every change (the default)
// and one with --save-state false, interleaved. Per agent: a container with
// N idle execs (so each save captures a realistic document), then timed
// rounds of exec + wait + release of `true` and of unary v2 SignalProcess
// (SIGCONT to a running sleep, with a request id: a mutating call that changes nothing else),
// and the state file's size. Prints a table; asserts nothing.
//   npm run bench:state          (builds first)
//   node --import tsx bench/state.ts [--execs N] [--rounds N] [--calls N]
import fs from 'node:fs';
import path from 'node:path';
import { AgentClient } from '../src/client/client';
import { startAgent, type TestAgent } from '../test/helpers/agent-process';
import { containerSpec } from '../test/helpers/spec';
import { measureUnary, printTable } from './stdout';

const flag = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(p * xs.length) - 1)]!;

interface Side {
  name: string;
  agent: TestAgent;
  client: AgentClient;
  cycles: number[];
  unary: Array<{ p50: number; p99: number }>;
}

async function side(name: string, args: string[], idleExecs: number): Promise<Side> {
  const agent = await startAgent({ args: ['--log-level', 'info', ...args] });
  const client = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  await client.createContainer({ containerId: 'st', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '100000'] }) });
  await client.startContainer({ containerId: 'st' });
  for (let i = 0; i < idleExecs; i++) await client.exec({ containerId: 'st', execId: `idle-${i}`, process: proc(['sleep', '100000']) });
  return { name, agent, client, cycles: [], unary: [] };
}

let n = 0;
async function cycle(s: Side): Promise<void> {
  const execId = `c-${n++}`;
  const t0 = performance.now();
  await s.client.exec({ containerId: 'st', execId, process: proc(['true']) });
  await s.client.wait({ containerId: 'st', execId });
  await s.client.releaseProcess({ containerId: 'st', execId });
  s.cycles.push(performance.now() - t0);
}

async function main(): Promise<void> {
  const idle = flag('execs', 50);
  const rounds = flag('rounds', 5);
  const calls = flag('calls', 500);
  const sides = [await side('saving state (default)', [], idle), await side('--save-state false', ['--save-state', 'false'], idle)];
  try {
    for (let r = 0; r < rounds; r++) {
      for (const s of sides) {
        for (let i = 0; i < 10; i++) await cycle(s);
        let k = 0;
        s.unary.push(await measureUnary(() => s.client.v2('SignalProcess', { container_id: 'st', exec_id: 'idle-0', signal: 18, request_id: `sig-${r}-${k++}` }), calls, 20));
      }
    }
    const rows = [['agent', 'exec+wait+release p50 ms', 'p99 ms', 'SignalProcess p50 ms', 'p99 ms', 'state file', 'notes']];
    for (const s of sides) {
      const file = path.join(s.agent.stateDir, 'state.json');
      const size = fs.existsSync(file) ? `${(fs.statSync(file).size / 1024).toFixed(1)} KiB` : 'none';
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
      rows.push([s.name, pct(s.cycles, 0.5).toFixed(1), pct(s.cycles, 0.99).toFixed(1), med(s.unary.map((u) => u.p50)).toFixed(2), med(s.unary.map((u) => u.p99)).toFixed(2), size,
        `${s.cycles.length} cycles, ${rounds}x${calls} calls; ${idle + 1} processes tracked`]);
    }
    console.log(`state bench: node ${process.version}; agent ${sides[0]!.client.agent.agent_version}; interleaved rounds`);
    printTable(rows);
  } finally {
    for (const s of sides) {
      s.client.close();
      await s.agent.stop();
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
