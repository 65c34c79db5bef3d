// The typed API's own logic against fake agents of each version: which RPC
// each method makes and with what, v1's polling and client-side offsets, the
// init process named by exec id on v2, stdin offsets and their order. Run:
//   node --import tsx --test src/client/typed-api.test.ts
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AgentClient } from './client';
import { answer, negotiateAs, startFakeAgent, type FakeAgent } from './fake-agent.testing';

let agent: FakeAgent | null = null;
let client: AgentClient | null = null;
afterEach(async () => {
  client?.close();
  client = null;
  await agent?.close();
  agent = null;
});

const spec = { ociVersion: '1.0.2', process: { args: ['true'] } };

describe('typed API over v1', () => {
  it('makes the v1 calls with v1 conventions (empty exec id for the init), and converts the status', async () => {
    const output = [Buffer.from('one '), Buffer.from('two')];
    agent = await startFakeAgent({
      discovery: negotiateAs(['v1']),
      v1: {
        CreateSandbox: answer({}), CreateContainer: answer({}), StartContainer: answer({}), ExecProcess: answer({}),
        SignalProcess: answer({}), WaitProcess: answer({ status: 137 }), RemoveContainer: answer({}), DestroySandbox: answer({}),
        ReadStdout: answer(() => ({ data: output.shift() ?? Buffer.alloc(0) })),
        // Takes at most 3 bytes a call, so the client has to loop.
        WriteStdin: answer((req) => ({ len: Math.min(3, (req.data as Buffer).length) })),
        CloseStdin: answer({}),
      },
    });
    client = await AgentClient.connect(agent.addr);
    assert.equal(client.protocol, 'v1');
    await client.createSandbox({ hostname: 'h', sandboxId: 's', storages: [{ driver: '9p', source: 'kataShared', mountPoint: '/m' }] });
    await client.createContainer({ containerId: 'c1', ociSpec: spec });
    await client.startContainer({ containerId: 'c1' });
    await client.signal({ containerId: 'c1', signal: 'KILL' });
    const status = await client.wait({ containerId: 'c1' });
    assert.deepEqual([status.code, status.signal, status.ambiguous, status.source], [null, 9, true, 'v1']);
    const chunks = [];
    for await (const c of client.readOutput({ containerId: 'c1' })) chunks.push([c.offset, c.data.toString(), c.eof]);
    assert.deepEqual(chunks, [[0, 'one ', false], [4, 'two', false], [7, '', true]]);
    assert.deepEqual(await client.writeInput({ containerId: 'c1', data: 'abcdefg' }), { offset: 7 });
    await client.closeInput({ containerId: 'c1' });
    await client.removeContainer({ containerId: 'c1', timeoutSeconds: 3 });
    await client.destroySandbox();

    const byMethod = (m: string) => agent!.calls.filter((c) => c.method === m).map((c) => c.request);
    assert.equal(byMethod('CreateSandbox')[0]!.sandbox_id, 's');
    assert.deepEqual((byMethod('CreateSandbox')[0]!.storages as unknown[])[0], { driver: '9p', driver_options: [], source: 'kataShared', fstype: '', options: [], mount_point: '/m' });
    assert.equal(byMethod('CreateContainer')[0]!.exec_id, 'c1', 'the init exec id defaults to the container id');
    assert.deepEqual(JSON.parse(byMethod('CreateContainer')[0]!.oci_spec_json as string), spec);
    assert.deepEqual(byMethod('SignalProcess')[0], { container_id: 'c1', exec_id: '', signal: 9 });
    assert.deepEqual(byMethod('WaitProcess')[0], { container_id: 'c1', exec_id: '' });
    assert.deepEqual(byMethod('ReadStdout').map((r) => [r.exec_id, r.len]), [['', 65536], ['', 65536], ['', 65536]]);
    assert.deepEqual(byMethod('WriteStdin').map((r) => (r.data as Buffer).toString()), ['abcdefg', 'defg', 'g']);
    assert.equal(byMethod('RemoveContainer')[0]!.timeout, 3);
    assert.equal(agent.calls.some((c) => c.service === 'v2'), false);
  });

  it('v1 output offsets are counted client-side: a later reader starts where the earlier stopped, skips forward, cannot go back', async () => {
    const output = [Buffer.from('abcd'), Buffer.from('efgh'), Buffer.from('ijkl')];
    agent = await startFakeAgent({ discovery: negotiateAs(['v1']), v1: { ReadStderr: answer(() => ({ data: output.shift() ?? Buffer.alloc(0) })) } });
    client = await AgentClient.connect(agent.addr);
    for await (const c of client.readOutput({ containerId: 'c', execId: 'e', stream: 'stderr' })) {
      assert.deepEqual([c.offset, c.data.toString()], [0, 'abcd']);
      break;
    }
    const reader = client.readOutput({ containerId: 'c', execId: 'e', stream: 'stderr', offset: 2 });
    await assert.rejects(reader.next(), /protocol v1 cannot read stderr of c\/e from offset 2: v1 reads consume the output, and this client has read up to offset 4/);
    const rest = [];
    for await (const c of client.readOutput({ containerId: 'c', execId: 'e', stream: 'stderr', offset: 6 })) rest.push([c.offset, c.data.toString(), c.eof]);
    assert.deepEqual(rest, [[6, 'gh', false], [8, 'ijkl', false], [12, '', true]]);
  });

  it('v2-only calls fail with the versions named', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1']) });
    client = await AgentClient.connect(agent.addr);
    for (const call of [() => client!.listContainers(), () => client!.getContainer('c'), () => client!.releaseProcess({ containerId: 'c', execId: 'e' })]) {
      await assert.rejects(call(), /needs protocol v2; the agent at unix:\/\/\S+ speaks v1 \(version 9\.8\.7\)$/);
    }
  });
});

describe('typed API over v2', () => {
  const container = (stdinOffset: number) => ({
    container: {
      container_id: 'c1', state: 'CONTAINER_STATE_RUNNING', created_at_unix_ms: 5,
      init: { exec_id: 'init-1', pid: 10, running: true, stdin_offset: stdinOffset, stdout: { start_offset: 0, end_offset: 3, ended: false } },
      execs: [{ exec_id: 'e1', pid: 11, running: false, exit_status: { code: 3 } }],
    },
  });

  it('names the init by its exec id (asking GetContainer once when it did not create it), and converts snapshots', async () => {
    agent = await startFakeAgent({
      discovery: negotiateAs(['v1', 'v2']),
      v2: {
        ListContainers: answer({ containers: [container(0).container] }),
        GetContainer: answer(container(0)),
        SignalProcess: answer({}),
        WaitProcess: answer({ status: { code: 0, signal: 15, core_dumped: true, started_at_unix_ms: 1, exited_at_unix_ms: 2 } }),
        ReleaseProcess: answer({}),
      },
    });
    client = await AgentClient.connect(agent.addr);
    assert.equal(client.protocol, 'v2');
    await client.signal({ containerId: 'c1', signal: 15 });
    const status = await client.wait({ containerId: 'c1' });
    assert.deepEqual(status, { code: null, signal: 15, coreDumped: true, oomKilled: false, startedAtMs: 1, exitedAtMs: 2, shellStatus: 143, source: 'v2', ambiguous: false });
    await client.releaseProcess({ containerId: 'c1' });
    const calls = agent.calls.filter((c) => c.service === 'v2' && c.method !== 'ListContainers');
    assert.deepEqual(calls.map((c) => [c.method, c.request.exec_id ?? c.request.container_id]), [['GetContainer', 'c1'], ['SignalProcess', 'init-1'], ['WaitProcess', 'init-1'], ['ReleaseProcess', 'init-1']]);
    assert.ok(calls[1]!.request.request_id && calls[3]!.request.request_id && calls[1]!.request.request_id !== calls[3]!.request.request_id, 'each mutation its own id');

    const [info] = await client.listContainers();
    assert.deepEqual(info, {
      containerId: 'c1', state: 'running', createdAtMs: 5,
      init: { execId: 'init-1', pid: 10, running: true, terminal: false, startedAtMs: null, exitStatus: null, stdout: { startOffset: 0, endOffset: 3, ended: false }, stderr: null, stdinOffset: 0 },
      execs: [{
        execId: 'e1', pid: 11, running: false, terminal: false, startedAtMs: null, stdout: null, stderr: null, stdinOffset: 0,
        exitStatus: { code: 3, signal: null, coreDumped: false, oomKilled: false, startedAtMs: null, exitedAtMs: null, shellStatus: 3, source: 'v2', ambiguous: false },
      }],
    });
  });

  it('writes input at tracked offsets, one write after the other, and closes at the end offset', async () => {
    let agentOffset = 0;
    agent = await startFakeAgent({
      discovery: negotiateAs(['v2']),
      v2: {
        ListContainers: answer({ containers: [] }),
        CreateContainer: answer({}),
        ExecProcess: answer({}),
        GetContainer: answer(container(40)),
        WriteInput: ((call: grpc.ServerUnaryCall<Record<string, any>, unknown>, cb: grpc.sendUnaryData<unknown>) => {
          const { offset, data } = call.request;
          // A slow agent: the writes must still arrive in order, each at the offset the previous one ended at.
          setTimeout(() => {
            // As the agent does: a write that does not start at its offset is refused.
            if (Number(offset) !== agentOffset) return cb({ code: grpc.status.OUT_OF_RANGE, details: `write at ${offset}, stdin is at ${agentOffset}` });
            agentOffset += data.length;
            cb(null, { offset: agentOffset });
          }, 30 - data.length);
        }) as grpc.UntypedHandleCall,
      },
    });
    client = await AgentClient.connect(agent.addr);
    await client.createContainer({ containerId: 'c2', execId: 'i2', ociSpec: JSON.stringify(spec) });
    const results = await Promise.all([client.writeInput({ containerId: 'c2', data: 'a' }), client.writeInput({ containerId: 'c2', data: 'bbbbbbbbbb' }), client.writeInput({ containerId: 'c2', data: 'cc' })]);
    assert.deepEqual(results.map((r) => r.offset), [1, 11, 13]);
    await client.closeInput({ containerId: 'c2' });
    const writes = agent.calls.filter((c) => c.method === 'WriteInput').map((c) => [c.request.exec_id, Number(c.request.offset), (c.request.data as Buffer).toString(), c.request.close]);
    assert.deepEqual(writes, [['i2', 0, 'a', false], ['i2', 1, 'bbbbbbbbbb', false], ['i2', 11, 'cc', false], ['i2', 13, '', true]]);
    assert.equal(agent.calls.filter((c) => c.method === 'GetContainer').length, 0, 'it created the container: it knows its init and offset');

    // A process it did not start: the offset comes from the agent's snapshot.
    agentOffset = 40;
    assert.deepEqual(await client.writeInput({ containerId: 'c1', data: 'xy' }), { offset: 42 });
    assert.equal(agent.calls.filter((c) => c.method === 'WriteInput').at(-1)!.request.offset, 40);
  });
});
