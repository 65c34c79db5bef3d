// The agent's saved state (src/agent/state/) as a running agent keeps it:
// STATE_DIR/state.json follows containers and processes as they change
// (pids with their start ticks, the stdio descriptors to hand over, stream
// offsets and readers, exit statuses not yet released, request ids), with
// nothing left of what was removed; a state found at start is set aside, not
// used; --save-state false writes none.
// Needs root, crun, busybox-static, unshare and `npm run build`.
// Run: node --import tsx --test test/integration/state-file.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AgentClient } from '../../src/client/client';
import { decodeState } from '../../src/agent/state/codec';
import { STATE_FILE } from '../../src/agent/state/store';
import { processStartTime } from '../../src/agent/process/reaper';
import { startAgent, type TestAgent } from '../helpers/agent-process';
import { containerSpec } from '../helpers/spec';

const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });

/** The state file once `pred` holds for it (saves are coalesced and written off the event loop). */
async function stateWhen(agent: TestAgent, pred: (s: ReturnType<typeof decodeState>['state']) => boolean) {
  const file = path.join(agent.stateDir, STATE_FILE);
  let last = '';
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    try {
      last = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const { state } = decodeState(last, file);
    if (pred(state)) return state;
  }
  throw new Error(`the state never matched; last:\n${last}`);
}

describe('the saved state of a running agent', () => {
  let agent: TestAgent;
  let client: AgentClient;
  before(async () => {
    agent = await startAgent();
    client = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  });
  after(async () => {
    client?.close();
    await agent?.stop();
  });

  it('the announce line carries the start-up breakdown, in order (ms since the process started)', () => {
    const announce = agent.logs().find((l) => l.msg === 'announce') as { startupMs?: Record<string, number> } | undefined;
    const s = announce?.startupMs;
    assert.ok(s, 'startupMs in the announce line');
    const steps = ['main', 'config', 'runtime', 'core', 'listening'].map((k) => s[k]!);
    assert.ok(steps.every((v) => typeof v === 'number' && v > 0), JSON.stringify(s));
    assert.deepEqual(steps, [...steps].sort((a, b) => a - b), `in order: ${JSON.stringify(s)}`);
  });

  it('follows containers and processes: pids with start ticks, stdio fds, offsets, statuses, request ids; removed ones go', async () => {
    await client.createContainer({ containerId: 'st', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] }) });
    await client.startContainer({ containerId: 'st' });
    await client.exec({ containerId: 'st', execId: 'talk', process: proc(['sh', '-c', 'echo hello; exit 4']) });
    assert.equal((await client.wait({ containerId: 'st', execId: 'talk' })).code, 4);
    const s = await stateWhen(agent, (x) => x.containers[0]?.execs[0]?.exit?.code === 4 && x.containers[0]!.execs[0]!.stdout.ended);
    const c = s.containers[0]!;
    assert.equal(c.id, 'st');
    assert.equal(c.state, 'running');
    assert.ok(c.bundle.startsWith(agent.stateDir));
    assert.ok(c.init.pid !== null && c.init.pidStartTicks === processStartTime(c.init.pid), 'the init named by pid and start ticks');
    for (const fd of [c.init.fds.stdin, c.init.fds.stdout, c.init.fds.stderr]) {
      assert.ok(fd !== null && fs.readlinkSync(`/proc/${agent.child.pid}/fd/${fd}`).startsWith('socket:'), `fd ${fd} is a socket the agent holds`);
    }
    const talk = c.execs[0]!;
    assert.deepEqual([talk.execId, talk.exit?.code, talk.exit?.signal, talk.collected], ['talk', 4, null, false]);
    assert.deepEqual([talk.stdout.start, talk.stdout.end, talk.stdout.ended], [0, 6, true]);
    assert.equal(s.writtenBy, client.agent.agent_version);
    assert.ok(s.requests.some((r) => r.result !== undefined), 'the request ids of the calls made');
    assert.ok(s.lastEventSeq >= 4);

    // Read and released: the exec is gone from the state; then the container.
    await client.releaseProcess({ containerId: 'st', execId: 'talk' });
    await stateWhen(agent, (x) => x.containers[0]?.execs.length === 0);
    await client.removeContainer({ containerId: 'st' });
    await stateWhen(agent, (x) => x.containers.length === 0);
  });
});

describe('a state found at start, and --save-state false', () => {
  it('is set aside (named in a warning), not used; with --save-state false nothing is written', async () => {
    const first = await startAgent();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'state-stale-'));
    const file = path.join(dir, STATE_FILE);
    try {
      await stateWhen(first, () => true);
      fs.copyFileSync(path.join(first.stateDir, STATE_FILE), file);
    } finally {
      await first.stop();
    }
    // Another agent on a state dir holding that state: not a handover.
    const second = await startAgent({ args: ['--state-dir', dir, '--save-state', 'false'] });
    try {
      const warning = second.logs().find((l) => l.msg === 'a state from an earlier agent was found at start (not a handover): set aside, not used');
      assert.ok(warning, 'warned about the stale state');
      assert.match(String(warning.state), /state\.json\.stale-\d+$/);
      assert.ok(fs.existsSync(String(warning.state)), 'kept, not deleted');
      const c = await second.connect();
      await c.createContainer({ containerId: 'quiet', ociSpec: containerSpec({ rootPath: 'busybox', args: ['true'] }) });
      c.close();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(fs.existsSync(file), false, 'no state written with --save-state false');
    } finally {
      await second.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
