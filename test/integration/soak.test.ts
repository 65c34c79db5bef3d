// A short soak: 300 container cycles (create, start, exec, wait, kill, wait,
// remove) through the bundled agent must leave no fd, child process, zombie or
// state dir behind. The long run, with a table, is bench/soak.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { AgentClient } from '../../src/client/client';
import { startAgent, type TestAgent } from '../helpers/agent-process';
import { agentNodePid, leftoverState, runSoak, sampleAgent, settledSample, soakLeaks, type AgentSample } from '../helpers/soak';

const WARMUP = 20;
const CYCLES = 300;
const FD_MARGIN = 5;

describe('soak', () => {
  let agent: TestAgent;
  let client: AgentClient;
  before(async () => {
    agent = await startAgent({ args: ['--log-level', 'info'] });
    client = await agent.connect();
  });
  after(async () => {
    client?.close();
    await agent?.stop();
  });

  it(`leaks nothing over ${CYCLES} container cycles`, { timeout: 300_000 }, async () => {
    const pid = agentNodePid(agent.child.pid!);
    await runSoak({ agent, client, cycles: WARMUP, every: WARMUP, prefix: 'warm-' });
    const warm = await settledSample(pid);
    const rows = await runSoak({ agent, client, cycles: CYCLES - WARMUP, every: 70, prefix: 'soak-' });
    const final = await settledSample(pid);
    const leftovers = leftoverState(agent.stateDir);
    const series = rows.map((r) => `${WARMUP + r.cycles}:${r.fds}fds/${r.children}ch`).join(' ');
    assert.deepEqual(soakLeaks(warm, final, leftovers, FD_MARGIN), [], `after warm-up ${JSON.stringify(warm)}, after ${CYCLES}: ${JSON.stringify(final)}; ${series}`);
    assert.ok(agent.alive(), 'the agent died');
  });

  it('counts the zombie children of a process', async () => {
    // sh backgrounds a short sleep, then becomes a long one, which never reaps the first.
    const parent = spawn('sh', ['-c', 'sleep 0.05 & exec sleep 5'], { stdio: 'ignore' });
    try {
      let sample = sampleAgent(parent.pid!);
      for (let i = 0; i < 50 && sample.zombies === 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
        sample = sampleAgent(parent.pid!);
      }
      assert.equal(sample.children, 1);
      assert.equal(sample.zombies, 1);
      assert.match(soakLeaks({ ...sample, zombies: 0, children: 0 }, sample, []).join(), /1 zombie children/);
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('the leak check fails on a leaking series', () => {
    const clean: AgentSample = { vmRssKiB: 60000, rssAnonKiB: 30000, fds: 30, children: 0, zombies: 0 };
    assert.deepEqual(soakLeaks(clean, { ...clean, fds: 35 }, []), []);
    assert.equal(soakLeaks(clean, { ...clean, fds: 36 }, []).length, 1);
    assert.match(soakLeaks(clean, { ...clean, fds: 30 + CYCLES - WARMUP }, [])[0]!, /fds grew from 30 .* to 310/);
    assert.match(soakLeaks(clean, { ...clean, children: 2, zombies: 2 }, []).join(), /2 zombie children/);
    assert.match(soakLeaks(clean, { ...clean, children: 1 }, []).join(), /1 live children/);
    assert.match(soakLeaks(clean, clean, ['containers/soak-7']).join(), /containers\/soak-7/);
  });
});
