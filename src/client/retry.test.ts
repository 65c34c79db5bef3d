// Retries after a dropped connection: a fake v2 agent behind a proxy that cuts
// every connection while a call is in flight. Mutations are sent again with
// the same request id (and stay outstanding if they never get through),
// ReadOutput re-attaches at the last offset, WatchEvents after the last seq;
// nothing of v1 is retried. Run:
//   node --import tsx --test src/client/retry.test.ts
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { ReadOutputRequest__Output } from '../generated/agent/v2/ReadOutputRequest';
import type { WatchEventsRequest__Output } from '../generated/agent/v2/WatchEventsRequest';
import { AgentCallError, AgentClient, type ClientLogger } from './client';
import { answer, failWith, negotiateAs, startFakeAgent, type FakeAgent } from './fake-agent.testing';
import { backoffDelay, DEFAULT_RETRY, withRetries } from './retry';

let agent: FakeAgent | null = null;
let client: AgentClient | null = null;
afterEach(async () => {
  client?.close();
  client = null;
  await agent?.close();
  agent = null;
});

const fast = { attempts: 4, initialDelayMs: 20, maxDelayMs: 100 };
const warnings: string[] = [];
const log: ClientLogger = (level, m) => void (level === 'warn' && warnings.push(m));

/** A unary handler that cuts the connection on its first `drops` calls (never answering them), then answers `res`. */
function dropFirst(drops: number, res: unknown): grpc.UntypedHandleCall {
  let n = 0;
  return ((_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
    if (n++ < drops) {
      agent!.dropAll();
      return;
    }
    cb(null, res);
  }) as grpc.UntypedHandleCall;
}

const v2Base = { ListContainers: answer({ containers: [] }) };

describe('retries of v2 mutations', () => {
  it('sends a call dropped mid-flight again with the same request id, and it succeeds', async () => {
    agent = await startFakeAgent({ proxy: true, discovery: negotiateAs(['v1', 'v2']), v2: { ...v2Base, StartContainer: dropFirst(1, {}) } });
    client = await AgentClient.connect(agent.addr, { retry: fast, log });
    warnings.length = 0;
    await client.startContainer({ containerId: 'c1' });
    const starts = agent.calls.filter((c) => c.method === 'StartContainer');
    assert.equal(starts.length, 2, 'the dropped call and its retry');
    const id = starts[0]!.request.request_id as string;
    assert.match(id, /^[0-9a-f-]{36}$/, 'a random request id');
    assert.equal(starts[1]!.request.request_id, id, 'the retry carries the same id');
    assert.deepEqual(starts[1]!.request, starts[0]!.request, 'and the same arguments');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`StartContainer failed \\(UNAVAILABLE: .*\\); retry 1/3 in \\d+ ms with the same request id ${id}`));
    assert.deepEqual(client.outstandingRequests(), []);
  });

  it('uses the request id the caller gives', async () => {
    agent = await startFakeAgent({ proxy: true, discovery: negotiateAs(['v2']), v2: { ...v2Base, SignalProcess: dropFirst(2, {}) } });
    client = await AgentClient.connect(agent.addr, { retry: fast });
    await client.signal({ containerId: 'c1', execId: 'e1', signal: 'SIGTERM', requestId: 'mine-1' });
    const ids = agent.calls.filter((c) => c.method === 'SignalProcess').map((c) => c.request.request_id);
    assert.deepEqual(ids, ['mine-1', 'mine-1', 'mine-1']);
    assert.equal(agent.calls.at(-1)!.request.signal, 15);
  });

  it('gives up after the bounded number of attempts; the request stays outstanding (outcome unknown)', async () => {
    agent = await startFakeAgent({ proxy: true, discovery: negotiateAs(['v2']), v2: { ...v2Base, RemoveContainer: dropFirst(99, {}) } });
    client = await AgentClient.connect(agent.addr, { retry: fast });
    const t0 = Date.now();
    await assert.rejects(client.removeContainer({ containerId: 'c1', requestId: 'rm-1' }), (err: unknown) =>
      err instanceof AgentCallError && err.code === grpc.status.UNAVAILABLE && err.requestId === 'rm-1' && err.method === 'v2.RemoveContainer');
    assert.equal(agent.calls.filter((c) => c.method === 'RemoveContainer').length, fast.attempts);
    assert.ok(Date.now() - t0 >= 10 + 20 + 40, 'backed off between attempts');
    const outstanding = client.outstandingRequests();
    assert.equal(outstanding.length, 1);
    assert.equal(outstanding[0]!.requestId, 'rm-1');
    assert.equal(outstanding[0]!.method, 'RemoveContainer');
    assert.equal(outstanding[0]!.containerId, 'c1');
    // And the resume record carries it.
    assert.deepEqual(client.saveState().outstanding.map((r) => r.request_id), ['rm-1']);
  });

  it('does not retry other failures', async () => {
    agent = await startFakeAgent({ proxy: true, discovery: negotiateAs(['v2']), v2: { ...v2Base, StartContainer: failWith(grpc.status.NOT_FOUND, 'no c1', 'NOT_FOUND') } });
    client = await AgentClient.connect(agent.addr, { retry: fast });
    await assert.rejects(client.startContainer({ containerId: 'c1' }), /NOT_FOUND/);
    assert.equal(agent.calls.filter((c) => c.method === 'StartContainer').length, 1);
  });

  it('raw v2 calls retry only when asked, and then get a request id', async () => {
    agent = await startFakeAgent({ proxy: true, discovery: negotiateAs(['v2']), v2: { ...v2Base, PauseContainer: dropFirst(1, {}), ResumeContainer: dropFirst(1, {}) } });
    client = await AgentClient.connect(agent.addr, { retry: fast });
    await assert.rejects(client.v2('PauseContainer', { container_id: 'c1' }), (err: unknown) => err instanceof AgentCallError && err.code === grpc.status.UNAVAILABLE);
    await client.v2('ResumeContainer', { container_id: 'c1' }, { retry: true });
    const resumes = agent.calls.filter((c) => c.method === 'ResumeContainer');
    assert.equal(resumes.length, 2);
    assert.ok(resumes[0]!.request.request_id);
    assert.equal(resumes[1]!.request.request_id, resumes[0]!.request.request_id);
  });

  it('v1 mutations are never retried (no request ids: a retry could act twice)', async () => {
    agent = await startFakeAgent({ proxy: true, discovery: negotiateAs(['v1']), v1: { StartContainer: dropFirst(1, {}) } });
    client = await AgentClient.connect(agent.addr, { retry: fast });
    await assert.rejects(client.startContainer({ containerId: 'c1' }), (err: unknown) => err instanceof AgentCallError && err.code === grpc.status.UNAVAILABLE);
    assert.equal(agent.calls.filter((c) => c.method === 'StartContainer').length, 1);
  });
});

describe('v2 streams re-attach', () => {
  it('ReadOutput re-attaches at the last offset after the connection drops', async () => {
    const requests: ReadOutputRequest__Output[] = [];
    const readOutput = (call: grpc.ServerWritableStream<ReadOutputRequest__Output, unknown>) => {
      requests.push(call.request);
      const text = Buffer.from('hello, world: the whole stream');
      if (requests.length === 1) {
        call.write({ offset: 0, data: text.subarray(0, 5), eof: false });
        call.write({ offset: 5, data: text.subarray(5, 12), eof: false });
        setTimeout(() => agent!.dropAll(), 50);
        return;
      }
      // The second attach starts where the client asked, and overlaps one byte to check it is not handed out twice.
      const from = Number(call.request.offset) - 1;
      call.write({ offset: from, data: text.subarray(from), eof: false });
      call.write({ offset: text.length, data: Buffer.alloc(0), eof: true });
      call.end();
    };
    agent = await startFakeAgent({ proxy: true, discovery: negotiateAs(['v2']), v2: { ...v2Base, ReadOutput: readOutput as grpc.UntypedHandleCall } });
    client = await AgentClient.connect(agent.addr, { retry: fast });
    const chunks: Array<{ offset: number; data: string; eof: boolean }> = [];
    for await (const c of client.readOutput({ containerId: 'c1', execId: 'e1', stream: 'stderr' })) {
      chunks.push({ offset: c.offset, data: c.data.toString(), eof: c.eof });
    }
    assert.deepEqual(requests.map((r) => [r.offset, r.stream, r.exec_id]), [[0, 'OUTPUT_STREAM_STDERR', 'e1'], [12, 'OUTPUT_STREAM_STDERR', 'e1']]);
    assert.equal(chunks.map((c) => c.data).join(''), 'hello, world: the whole stream');
    assert.deepEqual(chunks.map((c) => c.offset), [0, 5, 12, 30]);
    assert.deepEqual(chunks.map((c) => c.eof), [false, false, false, true]);
    assert.deepEqual(client.saveState().streams, [{ container_id: 'c1', exec_id: 'e1', stream: 'stderr', offset: 30 }]);
  });

  it('ReadOutput starts from a given offset, and from the tracked one next time', async () => {
    const offsets: number[] = [];
    const readOutput = (call: grpc.ServerWritableStream<ReadOutputRequest__Output, unknown>) => {
      offsets.push(Number(call.request.offset));
      call.write({ offset: call.request.offset, data: Buffer.from('abc'), eof: false });
      call.write({ offset: Number(call.request.offset) + 3, data: Buffer.from('def'), eof: false });
    };
    agent = await startFakeAgent({ discovery: negotiateAs(['v2']), v2: { ...v2Base, ReadOutput: readOutput as grpc.UntypedHandleCall } });
    client = await AgentClient.connect(agent.addr, { retry: fast });
    for await (const c of client.readOutput({ containerId: 'c1', execId: 'e1', offset: 100 })) {
      assert.equal(c.offset, 100);
      break; // leaving early cancels the stream; the chunk taken counts
    }
    for await (const c of client.readOutput({ containerId: 'c1', execId: 'e1' })) {
      assert.equal(c.offset, 103);
      break;
    }
    assert.deepEqual(offsets, [100, 103]);
  });

  it('WatchEvents re-attaches after the last seq it handed out', async () => {
    const requests: WatchEventsRequest__Output[] = [];
    const watch = (call: grpc.ServerWritableStream<WatchEventsRequest__Output, unknown>) => {
      requests.push(call.request);
      if (requests.length === 1) {
        call.write({ seq: 7, at_unix_ms: 1000, process_started: { container_id: 'c1', exec_id: 'c1', pid: 42 } });
        call.write({ seq: 8, at_unix_ms: 1001, container_state: { container_id: 'c1', state: 'CONTAINER_STATE_RUNNING' } });
        setTimeout(() => agent!.dropAll(), 50);
        return;
      }
      call.write({ seq: 9, at_unix_ms: 1002, process_exited: { container_id: 'c1', exec_id: 'c1', pid: 42, status: { code: 0, signal: 9, oom_killed: true } } });
      call.write({ seq: 10, at_unix_ms: 1003, oom_killed: { container_id: 'c1' } });
      call.end();
    };
    agent = await startFakeAgent({ proxy: true, discovery: negotiateAs(['v2']), v2: { ...v2Base, WatchEvents: watch as grpc.UntypedHandleCall } });
    client = await AgentClient.connect(agent.addr, { retry: fast });
    const events = [];
    for await (const e of client.watchEvents({ fromNow: true })) events.push(e);
    assert.deepEqual(requests.map((r) => [r.after_seq, r.from_now]), [[0, true], [8, false]]);
    assert.deepEqual(events.map((e) => [e.seq, e.type]), [[7, 'process_started'], [8, 'container_state'], [9, 'process_exited'], [10, 'oom_killed']]);
    const exited = events[2]!;
    assert.ok(exited.type === 'process_exited');
    assert.equal(exited.status?.signal, 9);
    assert.equal(exited.status?.oomKilled, true);
    assert.equal(client.lastEventSeq, 10);
    assert.equal(client.saveState().event_cursor, 10);
  });

  it('a stream that keeps dropping fails after the bounded attempts in a row', async () => {
    let attaches = 0;
    const watch = (call: grpc.ServerWritableStream<WatchEventsRequest__Output, unknown>) => {
      // The first attach delivers an event; every later one is cut before sending anything.
      if (++attaches === 1) call.write({ seq: 1, at_unix_ms: 1 });
      setTimeout(() => agent!.dropAll(), 20);
    };
    agent = await startFakeAgent({ proxy: true, discovery: negotiateAs(['v2']), v2: { ...v2Base, WatchEvents: watch as grpc.UntypedHandleCall } });
    client = await AgentClient.connect(agent.addr, { retry: { ...fast, attempts: 3 } });
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const e of client!.watchEvents({ afterSeq: 0 })) seen.push(e.seq);
    }, (err: unknown) => err instanceof AgentCallError && err.code === grpc.status.UNAVAILABLE && err.method === 'v2.WatchEvents');
    assert.deepEqual(seen, [1]);
    // Attempts count from the last progress: the attach that delivered seq 1 (then dropped) and two re-attaches.
    assert.equal(attaches, 3);
  });
});

describe('backoff', () => {
  it('doubles from the initial delay, is capped, and is jittered to between half and all of it', () => {
    const p = { attempts: 10, initialDelayMs: 100, maxDelayMs: 1000 };
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(p, n, () => 1)), [100, 200, 400, 800, 1000, 1000]);
    assert.deepEqual([1, 2, 3].map((n) => backoffDelay(p, n, () => 0)), [50, 100, 200]);
    assert.ok(DEFAULT_RETRY.attempts > 1);
  });

  it('withRetries retries only UNAVAILABLE, and stops at the bound', async () => {
    const unavailable = Object.assign(new Error('gone'), { code: grpc.status.UNAVAILABLE });
    let n = 0;
    await assert.rejects(withRetries({ attempts: 3, initialDelayMs: 1, maxDelayMs: 1 }, async () => {
      n++;
      throw unavailable;
    }), /gone/);
    assert.equal(n, 3);
    n = 0;
    const internal = Object.assign(new Error('bug'), { code: grpc.status.INTERNAL });
    await assert.rejects(withRetries({ attempts: 3, initialDelayMs: 1, maxDelayMs: 1 }, async () => {
      n++;
      throw internal;
    }), /bug/);
    assert.equal(n, 1);
  });
});
