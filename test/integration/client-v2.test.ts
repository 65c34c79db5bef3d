// The typed client (src/client) end to end: one bundled agent (dist/agent.cjs,
// real crun, busybox), driven by clients forced to each protocol version with
// `protocols: [V]`, through the same typed calls: containers run with output
// read to the end from offsets and structured exit statuses (v1's integer
// converted, the 137 ambiguity shown), stdin written and closed, signals,
// output resumed by a client restarted from a saved record, the v2-only calls
// (and their clear refusal on v1), and a container made over v1 managed over v2.
// The v2 half needs an agent that serves agent.v2.AgentService; it is skipped,
// saying so, against one that does not.
// Needs root, crun, busybox-static, unshare and `npm run build`.
// Run: node --import tsx --test test/integration/client-v2.test.ts
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { AgentClient, ProtocolVersionError, type OutputChunk, type ProcessRef, type ProtocolVersion } from '../../src/client/client';
import { startAgent, type TestAgent } from '../helpers/agent-process';
import { containerSpec } from '../helpers/spec';

const spec = (args: string[]) => containerSpec({ rootPath: 'busybox', args });

/** Every chunk until eof. */
async function readAll(client: AgentClient, ref: ProcessRef & { stream?: 'stdout' | 'stderr'; maxChunkBytes?: number }): Promise<{ text: string; chunks: OutputChunk[] }> {
  const chunks: OutputChunk[] = [];
  for await (const c of client.readOutput(ref)) chunks.push(c);
  return { text: Buffer.concat(chunks.map((c) => c.data)).toString(), chunks };
}

describe('the typed client over each protocol version, against one agent', () => {
  let agent: TestAgent;
  let served: string[] = [];
  before(async () => {
    agent = await startAgent();
    const probe = await AgentClient.connect(agent.addr, { protocols: ['v1'] });
    served = probe.agent.protocol_versions;
    probe.close();
  });
  after(async () => agent?.stop());

  for (const version of ['v1', 'v2'] as ProtocolVersion[]) {
    describe(`a client forced to ${version}`, () => {
      let client: AgentClient;
      /** Skips the test when the agent does not serve this version. */
      const needs = (t: TestContext): boolean => {
        if (served.includes(version)) return true;
        t.skip(`dist/agent.cjs serves ${served.join(', ')}, not ${version}`);
        return false;
      };
      const id = (name: string) => `${version}-${name}`;
      before(async () => {
        if (served.includes(version)) client = await AgentClient.connect(agent.addr, { protocols: [version] });
      });
      after(() => client?.close());

      it('speaks the version it was told to', (t) => {
        if (!needs(t)) return;
        assert.equal(client.protocol, version);
        assert.equal(client.negotiated.fallback, null);
      });

      it('runs a container: stdout and stderr to their ends from offset 0, a structured exit status', async (t) => {
        if (!needs(t)) return;
        const c = id('run');
        await client.createContainer({ containerId: c, ociSpec: spec(['sh', '-c', 'echo hello; echo oops >&2; exit 3']) });
        await client.startContainer({ containerId: c });
        const out = await readAll(client, { containerId: c });
        assert.equal(out.text, 'hello\n');
        assert.equal(out.chunks[0]!.offset, 0);
        assert.deepEqual(out.chunks.at(-1), { offset: 6, data: Buffer.alloc(0), eof: true });
        assert.equal((await readAll(client, { containerId: c, stream: 'stderr' })).text, 'oops\n');
        const status = await client.wait({ containerId: c });
        assert.deepEqual([status.code, status.signal, status.shellStatus, status.source, status.ambiguous], [3, null, 3, version, false]);
        if (version === 'v2') assert.ok(status.exitedAtMs && status.startedAtMs && status.exitedAtMs >= status.startedAtMs);
        await client.removeContainer({ containerId: c });
      });

      describe('in a running container', () => {
        const box = id('box');
        before(async () => {
          if (!served.includes(version)) return;
          await client.createContainer({ containerId: box, ociSpec: spec(['sleep', '1000']) });
          await client.startContainer({ containerId: box });
        });
        after(async () => {
          if (served.includes(version)) await client.removeContainer({ containerId: box });
        });

        it('writes stdin at the offsets it counts, closes it, and reads what cat echoed', async (t) => {
          if (!needs(t)) return;
          await client.exec({ containerId: box, execId: 'cat', process: { args: ['cat'], cwd: '/', env: ['PATH=/bin'] } });
          assert.deepEqual(await client.writeInput({ containerId: box, execId: 'cat', data: 'abc' }), { offset: 3 });
          assert.deepEqual(await client.writeInput({ containerId: box, execId: 'cat', data: Buffer.from('def\n') }), { offset: 7 });
          await client.closeInput({ containerId: box, execId: 'cat' });
          assert.equal((await readAll(client, { containerId: box, execId: 'cat' })).text, 'abcdef\n');
          assert.equal((await client.wait({ containerId: box, execId: 'cat' })).code, 0);
        });

        it('signals a process: SIGKILL is signal 9 (from v1, a guess it flags)', async (t) => {
          if (!needs(t)) return;
          await client.exec({ containerId: box, execId: 'sleeper', process: { args: ['sleep', '100'], cwd: '/', env: ['PATH=/bin'] } });
          await client.signal({ containerId: box, execId: 'sleeper', signal: 'SIGKILL' });
          const s = await client.wait({ containerId: box, execId: 'sleeper' });
          assert.deepEqual([s.code, s.signal, s.shellStatus, s.ambiguous], [null, 9, 137, version === 'v1']);
          // v1 forgot the exec (status collected, no output); v2 keeps it until released and read to the end.
          if (version === 'v2') await readAll(client, { containerId: box, execId: 'sleeper' });
        });

        it('exit(137) and SIGKILL: v2 tells them apart, v1 cannot (and says so)', async (t) => {
          if (!needs(t)) return;
          await client.exec({ containerId: box, execId: 'x137', process: { args: ['sh', '-c', 'exit 137'], cwd: '/', env: ['PATH=/bin'] } });
          const s = await client.wait({ containerId: box, execId: 'x137' });
          if (version === 'v2') assert.deepEqual([s.code, s.signal, s.ambiguous], [137, null, false]);
          else assert.deepEqual([s.code, s.signal, s.ambiguous], [null, 9, true]);
          if (version === 'v2') await readAll(client, { containerId: box, execId: 'x137' });
        });

        it('a restarted client resumes reading from the offset it saved: every byte once', async (t) => {
          if (!needs(t)) return;
          await client.exec({ containerId: box, execId: 'seq', process: { args: ['seq', '1', '3000'], cwd: '/', env: ['PATH=/bin'] } });
          const whole = Array.from({ length: 3000 }, (_, i) => `${i + 1}\n`).join('');
          await client.wait({ containerId: box, execId: 'seq' });
          const first: Buffer[] = [];
          for await (const c of client.readOutput({ containerId: box, execId: 'seq', maxChunkBytes: 1000 })) {
            first.push(c.data);
            if (Buffer.concat(first).length >= 3000) break;
          }
          const record = JSON.stringify(client.saveState());
          const saved = JSON.parse(record).streams.find((s: { exec_id: string }) => s.exec_id === 'seq');
          assert.equal(saved.offset, Buffer.concat(first).length);
          const resumed = await AgentClient.resume(record, { protocols: [version] });
          try {
            assert.equal(resumed.protocol, version);
            const rest = await readAll(resumed, { containerId: box, execId: 'seq', maxChunkBytes: 1000 });
            assert.equal(rest.chunks[0]!.offset, saved.offset);
            assert.equal(Buffer.concat(first).toString() + rest.text, whole);
            if (version === 'v2') await resumed.releaseProcess({ containerId: box, execId: 'seq' });
          } finally {
            resumed.close();
          }
        });

        it('the v2-only calls: snapshots, events from a cursor, release; on v1 a clear refusal', async (t) => {
          if (!needs(t)) return;
          if (version === 'v1') {
            const why = served.includes('v2')
              ? /needs protocol v2; this client speaks v1 with the agent at unix:\/\/\S+ \(version \S+, which serves v1, v2\)/
              : /needs protocol v2; the agent at unix:\/\/\S+ speaks v1 \(version \S+\)/;
            await assert.rejects(client.listContainers(), (e: unknown) => e instanceof ProtocolVersionError && why.test(e.message));
            await assert.rejects(client.getContainer(box), why);
            await assert.rejects(client.releaseProcess({ containerId: box, execId: 'cat' }), why);
            await assert.rejects(client.watchEvents().next(), why);
            return;
          }
          const all = await client.listContainers();
          const mine = all.find((c) => c.containerId === box);
          assert.ok(mine, `listContainers has ${box}`);
          assert.equal(mine.state, 'running');
          assert.equal(mine.init?.execId, box);
          const info = await client.getContainer(box);
          const cat = info.execs.find((p) => p.execId === 'cat');
          assert.ok(cat, 'the exited exec is listed until released');
          assert.equal(cat.exitStatus?.code, 0);
          assert.equal(cat.stdinOffset, 7);

          const events = [];
          for await (const e of client.watchEvents({ afterSeq: 0 })) {
            events.push(e);
            if (e.type === 'process_exited' && e.containerId === box && e.execId === 'sleeper') break;
          }
          const killed = events.at(-1)!;
          assert.ok(killed.type === 'process_exited' && killed.status?.signal === 9);
          assert.ok(events.some((e) => e.type === 'process_started' && e.containerId === box && e.execId === 'cat'));
          assert.equal(client.lastEventSeq, killed.seq);
          // From the cursor on: the next event is a later one.
          await client.exec({ containerId: box, execId: 'late', process: { args: ['true'], cwd: '/', env: ['PATH=/bin'] } });
          const next = await client.watchEvents().next();
          assert.ok(!next.done && next.value.seq > killed.seq);

          for (const execId of ['cat', 'sleeper', 'x137']) await client.releaseProcess({ containerId: box, execId });
          assert.deepEqual(client.outstandingRequests(), []);
        });
      });
    });
  }

  it('a container made over v1 is seen and waited for over v2', async (t) => {
    if (!served.includes('v2')) return t.skip(`dist/agent.cjs serves ${served.join(', ')}, not v2`);
    const v1 = await AgentClient.connect(agent.addr, { protocols: ['v1'] });
    const v2 = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
    try {
      await v1.createContainer({ containerId: 'cross', execId: 'cross-init', ociSpec: spec(['sh', '-c', 'echo across; exit 5']) });
      await v1.startContainer({ containerId: 'cross' });
      // v2 learns the init's exec id from GetContainer: no exec id given.
      assert.equal((await v2.wait({ containerId: 'cross' })).code, 5);
      assert.equal((await readAll(v2, { containerId: 'cross' })).text, 'across\n');
      assert.equal((await v2.getContainer('cross')).init?.execId, 'cross-init');
      await v2.removeContainer({ containerId: 'cross' });
    } finally {
      v1.close();
      v2.close();
    }
  });
});
