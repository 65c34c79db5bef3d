// Protocol v2 end to end: the bundled agent (dist/agent.cjs), real crun and a
// busybox root file system, driven by raw grpc-js clients of agent.v2 and
// agent.v1 (src/protocol.ts) over one unix socket. A v2 lifecycle (output
// streams from offsets, resumed mid-stream; input at offsets; structured
// exit statuses kept until released; events from a cursor; snapshots),
// request ids (a retry acts once; the same id for another request is
// ALREADY_EXISTS, reason REQUEST_ID_REUSED), v1 and v2 clients managing each
// other's containers and processes and both reading one process's output
// whole, and machine-readable error details on v2 (none on v1).
// Needs root, crun, busybox-static, unshare and `npm run build`.
// Run: node --import tsx --test test/integration/v2.test.ts
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AgentV1Service, AgentV2Service, DiscoveryService } from '../../src/protocol';
import { decodeStatusDetails, STATUS_DETAILS_KEY } from '../../src/status-details';
import { startAgent, type TestAgent } from '../helpers/agent-process';
import { containerSpec } from '../helpers/spec';

type Msg = Record<string, any>;
const DEADLINE_MS = 30_000;
const proc = (args: string[], extra: Record<string, unknown> = {}) => JSON.stringify({ args, ...extra });
const spec = (args: string[]) => JSON.stringify(containerSpec({ rootPath: 'busybox', args }));

/** One unary call by method name; rejects with the grpc-js ServiceError. */
function call(client: grpc.Client, method: string, req: object): Promise<Msg> {
  return new Promise((resolve, reject) => {
    (client as any)[method](req, { deadline: Date.now() + DEADLINE_MS }, (err: grpc.ServiceError | null, res: Msg) => (err ? reject(err) : resolve(res)));
  });
}

interface Failure {
  code: grpc.status;
  details: string;
  /** The ErrorInfo of grpc-status-details-bin; null when the status came without one. */
  info: ReturnType<typeof decodeStatusDetails>;
}

function failureOf(err: unknown): Failure {
  const e = err as grpc.ServiceError;
  assert.ok(typeof e?.code === 'number', `not a gRPC error: ${String(err)}`);
  const bin = e.metadata?.get(STATUS_DETAILS_KEY)[0];
  return { code: e.code, details: e.details, info: bin === undefined ? null : decodeStatusDetails(bin as Buffer) };
}

/** The failure of a call that must fail. */
async function failure(p: Promise<unknown>): Promise<Failure> {
  try {
    await p;
  } catch (err) {
    return failureOf(err);
  }
  assert.fail('the call succeeded');
}

/** A v2 failure: `code`, and the same code and `reason` in its status details (domain "agent"). */
async function v2Failure(p: Promise<unknown>, code: grpc.status, reason: string, details?: RegExp): Promise<Failure> {
  const f = await failure(p);
  assert.equal(f.code, code, `expected ${grpc.status[code]}, got ${grpc.status[f.code]}: ${f.details}`);
  if (details) assert.match(f.details, details);
  assert.ok(f.info, `no status details with ${grpc.status[code]}: ${f.details}`);
  assert.equal(f.info.domain, 'agent');
  assert.equal(f.info.reason, reason);
  assert.equal(f.info.code, code);
  assert.equal(f.info.message, f.details);
  return f;
}

interface ReadResult {
  messages: Msg[];
  data: Buffer;
  /** The stream ended with an eof message (not cancelled). */
  eof: boolean;
}

/**
 * Reads a ReadOutput stream. `cancelAfter`: cancel once that many bytes came
 * (the bytes kept are those of the messages received until then). Checks
 * the offsets are contiguous from the request's and the eof message is last.
 */
function readOutput(client: grpc.Client, req: Msg, cancelAfter?: number): Promise<ReadResult> {
  return new Promise((resolve, reject) => {
    const stream: grpc.ClientReadableStream<Msg> = (client as any).ReadOutput(req, { deadline: Date.now() + 60_000 });
    const messages: Msg[] = [];
    const parts: Buffer[] = [];
    let next = Number(req.offset ?? 0);
    let got = 0;
    let cancelled = false;
    let failed: unknown = null;
    stream.on('data', (m: Msg) => {
      if (cancelled) return;
      try {
        assert.equal(m.offset, next, 'each message starts where the one before ended');
        assert.ok(!messages.at(-1)?.eof, 'nothing follows the eof message');
        if (m.eof) assert.equal(m.data.length, 0, 'the eof message carries no data');
        else assert.ok(m.data.length > 0, 'a message without eof carries data');
      } catch (err) {
        failed = err;
      }
      messages.push(m);
      parts.push(m.data);
      next += m.data.length;
      got += m.data.length;
      if (cancelAfter !== undefined && got >= cancelAfter) {
        cancelled = true;
        stream.cancel();
      }
    });
    const done = (err?: grpc.ServiceError) => {
      if (failed) return reject(failed);
      if (err && !(cancelled && err.code === grpc.status.CANCELLED)) return reject(err);
      resolve({ messages, data: Buffer.concat(parts), eof: messages.at(-1)?.eof === true });
    };
    stream.on('error', done);
    stream.on('end', () => done());
  });
}

/** A WatchEvents stream collecting what it receives. */
function watchEvents(client: grpc.Client, req: Msg) {
  const stream: grpc.ClientReadableStream<Msg> = (client as any).WatchEvents(req);
  const events: Msg[] = [];
  const waiters: Array<() => void> = [];
  let error: grpc.ServiceError | null = null;
  stream.on('data', (e: Msg) => {
    events.push(e);
    for (const w of waiters.splice(0)) w();
  });
  stream.on('error', (err: grpc.ServiceError) => {
    error = err;
    for (const w of waiters.splice(0)) w();
  });
  return {
    events,
    get error() {
      return error;
    },
    /** The first event (in order) matching `pred`; waits for it. */
    async until(pred: (e: Msg) => boolean, timeoutMs = 20_000): Promise<Msg> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find(pred);
        if (found) return found;
        if (error && error.code !== grpc.status.CANCELLED) throw error;
        if (Date.now() > deadline) assert.fail(`no such event within ${timeoutMs} ms; got ${JSON.stringify(events)}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
    },
    cancel: () => stream.cancel(),
  };
}

const isExit = (container: string, exec: string) => (e: Msg) =>
  e.event === 'process_exited' && e.process_exited.container_id === container && e.process_exited.exec_id === exec;
const isState = (container: string, state: string) => (e: Msg) =>
  e.event === 'container_state' && e.container_state.container_id === container && e.container_state.state === state;

/** The v1 polling read of a whole stream (until the empty answer). */
async function v1ReadToEnd(v1: grpc.Client, container_id: string, exec_id: string, onChunk?: (b: Buffer) => void): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const { data } = await call(v1, 'ReadStdout', { container_id, exec_id, len: 65536 });
    if (data.length === 0) return Buffer.concat(parts);
    parts.push(data);
    onChunk?.(data);
  }
}

describe('protocol v2 through the bundled agent', () => {
  let agent: TestAgent;
  let v1: grpc.Client;
  let v2: grpc.Client;
  let discovery: grpc.Client;

  before(async () => {
    agent = await startAgent();
    const target = `unix:${agent.addr.slice('unix://'.length)}`;
    const insecure = grpc.credentials.createInsecure();
    v1 = new AgentV1Service(target, insecure);
    v2 = new AgentV2Service(target, insecure);
    discovery = new DiscoveryService(target, insecure);
  });
  after(async () => {
    for (const c of [v1, v2, discovery]) c?.close();
    await agent?.stop();
  });

  it('Negotiate serves v1 and v2, selects v2, and reports the v2 features and the storage drivers', async () => {
    const res = await call(discovery, 'Negotiate', { client_name: 'v2-test', client_version: '0', protocol_versions: ['v1', 'v2'] });
    assert.deepEqual(res.protocol_versions, ['v1', 'v2']);
    assert.equal(res.selected_version, 'v2');
    for (const c of ['feature:stream-output', 'feature:watch-events', 'feature:request-ids', 'feature:exit-status', 'feature:snapshots',
      'feature:error-details', 'feature:stdio-polling', 'storage:tmpfs', 'storage:9p', 'storage:virtio-blk', 'storage:local']) {
      assert.ok(res.capabilities.includes(c), `${c} in ${res.capabilities.join(', ')}`);
    }
    const onlyV1 = await call(discovery, 'Negotiate', { client_name: 'old', client_version: '0', protocol_versions: ['v1'] });
    assert.equal(onlyV1.selected_version, 'v1');
  });

  it('CreateSandbox: a retry with its request id is answered again; a new request is ALREADY_EXISTS with its reason', async () => {
    await call(v2, 'CreateSandbox', { hostname: '', dns: ['nameserver 10.0.2.3'], request_id: 'sandbox-1' });
    await call(v2, 'CreateSandbox', { hostname: '', dns: ['nameserver 10.0.2.3'], request_id: 'sandbox-1' });
    await v2Failure(call(v2, 'CreateSandbox', {}), grpc.status.ALREADY_EXISTS, 'ALREADY_EXISTS', /sandbox sandbox already exists/);
  });

  describe('a v2 lifecycle', () => {
    let events: ReturnType<typeof watchEvents>;
    before(() => {
      // From the first event on (nothing happened before this point): none is missed however the calls race.
      events = watchEvents(v2, { after_seq: 0 });
    });
    after(() => events?.cancel());

    it('CreateContainer answers the container: created, its init named after it (an empty exec id), running; StartContainer runs it', async () => {
      const { container } = await call(v2, 'CreateContainer', { container_id: 'life', oci_spec_json: spec(['sleep', '1000']) });
      assert.equal(container.container_id, 'life');
      assert.equal(container.state, 'CONTAINER_STATE_CREATED');
      assert.ok(Math.abs(container.created_at_unix_ms - Date.now()) < 60_000, `created_at ${container.created_at_unix_ms}`);
      assert.equal(container.init.exec_id, 'life');
      assert.ok(container.init.pid > 0);
      assert.equal(container.init.running, true);
      assert.equal(container.init.exit_status, null);
      assert.deepEqual(container.execs, []);
      await call(v2, 'StartContainer', { container_id: 'life' });
      const got = (await call(v2, 'GetContainer', { container_id: 'life' })).container;
      assert.equal(got.state, 'CONTAINER_STATE_RUNNING');
      assert.equal(got.init.pid, container.init.pid);
      assert.equal(got.created_at_unix_ms, container.created_at_unix_ms);
      const started = await events.until((e) => e.event === 'process_started' && e.process_started.exec_id === 'life');
      assert.equal(started.process_started.pid, container.init.pid);
      await events.until(isState('life', 'CONTAINER_STATE_CREATED'));
      await events.until(isState('life', 'CONTAINER_STATE_RUNNING'));
    });

    const LINES = Array.from({ length: 60 }, (_, i) => `line ${i} of the counter\n`).join('');

    it('ReadOutput follows a process to its end, resumes mid-stream from the offset kept, and refuses released bytes', async () => {
      const { process: p } = await call(v2, 'ExecProcess', {
        container_id: 'life', exec_id: 'counter',
        oci_process_json: proc(['sh', '-c', 'i=0; while [ $i -lt 60 ]; do echo "line $i of the counter"; i=$((i+1)); sleep 0.02; done']),
      });
      assert.equal(p.exec_id, 'counter');
      assert.ok(p.pid > 0);
      assert.equal(p.terminal, false);
      assert.deepEqual(p.stdout, { start_offset: 0, end_offset: p.stdout.end_offset, ended: false });
      // Part of it, in small chunks, then the client goes away.
      const first = await readOutput(v2, { container_id: 'life', exec_id: 'counter', stream: 'OUTPUT_STREAM_STDOUT', offset: 0, max_chunk_bytes: 16 }, 200);
      assert.equal(first.eof, false);
      assert.ok(first.data.length >= 200);
      assert.ok(first.messages.every((m) => m.data.length <= 16), 'chunks of at most max_chunk_bytes');
      assert.equal(first.data.toString(), LINES.slice(0, first.data.length));
      // From the offset after the last byte kept: the rest, each byte once, then eof at the final offset.
      const rest = await readOutput(v2, { container_id: 'life', exec_id: 'counter', stream: 'OUTPUT_STREAM_STDOUT', offset: first.data.length });
      assert.equal(rest.eof, true);
      assert.equal(Buffer.concat([first.data, rest.data]).toString(), LINES);
      assert.equal(rest.messages.at(-1)!.offset, LINES.length, 'the eof message names the final offset');
      // A resumed read at the final offset: at once eof, nothing more.
      const again = await readOutput(v2, { container_id: 'life', exec_id: 'counter', stream: 'OUTPUT_STREAM_STDOUT', offset: LINES.length });
      assert.deepEqual(again.messages.map((m) => [m.offset, m.data.length, m.eof]), [[LINES.length, 0, true]]);
      // Every reader is past the bytes: they are released, and the error says where the stream starts now.
      const gone = await v2Failure(
        readOutput(v2, { container_id: 'life', exec_id: 'counter', stream: 'OUTPUT_STREAM_STDOUT', offset: 0 }),
        grpc.status.OUT_OF_RANGE, 'OUT_OF_RANGE', /already released; read from/,
      );
      assert.equal(gone.info!.metadata.first_offset, String(LINES.length));
      await v2Failure(
        readOutput(v2, { container_id: 'life', exec_id: 'counter', stream: 'OUTPUT_STREAM_STDOUT', offset: LINES.length + 1 }),
        grpc.status.OUT_OF_RANGE, 'OUT_OF_RANGE', /past the end/,
      );
      const stderr = await readOutput(v2, { container_id: 'life', exec_id: 'counter', stream: 'OUTPUT_STREAM_STDERR', offset: 0 });
      assert.deepEqual(stderr.messages.map((m) => [m.offset, m.data.length, m.eof]), [[0, 0, true]]);
      await v2Failure(
        readOutput(v2, { container_id: 'life', exec_id: 'counter', stream: 'OUTPUT_STREAM_UNSPECIFIED', offset: 0 }),
        grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', /is not an output stream/,
      );
      await v2Failure(
        readOutput(v2, { container_id: 'life', exec_id: 'counter', stream: 'OUTPUT_STREAM_STDOUT', offset: 0, reader: '../v1' }),
        grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', /reader .* is invalid/,
      );
    });

    it('WaitProcess returns the structured status and keeps it; ReleaseProcess lets the agent forget the process', async () => {
      const { status } = await call(v2, 'WaitProcess', { container_id: 'life', exec_id: 'counter' });
      assert.equal(status.code, 0);
      assert.equal(status.signal, 0);
      assert.equal(status.core_dumped, false);
      assert.equal(status.oom_killed, false);
      assert.ok(status.started_at_unix_ms > 0 && status.exited_at_unix_ms >= status.started_at_unix_ms);
      // Kept: asked again (a lost answer), the same record.
      assert.deepEqual((await call(v2, 'WaitProcess', { container_id: 'life', exec_id: 'counter' })).status, status);
      const listed = (await call(v2, 'GetContainer', { container_id: 'life' })).container.execs.find((e: Msg) => e.exec_id === 'counter');
      assert.equal(listed.running, false);
      assert.deepEqual(listed.exit_status, status);
      assert.deepEqual(listed.stdout, { start_offset: LINES.length, end_offset: LINES.length, ended: true });
      const exited = await events.until(isExit('life', 'counter'));
      assert.deepEqual(exited.process_exited.status, status, 'the event carries the same structured status');
      await call(v2, 'ReleaseProcess', { container_id: 'life', exec_id: 'counter', request_id: 'release-counter' });
      // A retry of the release is answered again, though the process is forgotten.
      await call(v2, 'ReleaseProcess', { container_id: 'life', exec_id: 'counter', request_id: 'release-counter' });
      const execs = (await call(v2, 'GetContainer', { container_id: 'life' })).container.execs;
      assert.equal(execs.some((e: Msg) => e.exec_id === 'counter'), false, 'released and read to the end: forgotten');
      await v2Failure(call(v2, 'WaitProcess', { container_id: 'life', exec_id: 'counter' }), grpc.status.NOT_FOUND, 'NOT_FOUND', /process counter not found/);
    });

    it('a signal death is the signal, not 128 + signal; ReleaseProcess before the exit is FAILED_PRECONDITION', async () => {
      await call(v2, 'ExecProcess', { container_id: 'life', exec_id: 'sleeper', oci_process_json: proc(['sleep', '1000']) });
      await v2Failure(call(v2, 'ReleaseProcess', { container_id: 'life', exec_id: 'sleeper' }), grpc.status.FAILED_PRECONDITION, 'FAILED_PRECONDITION', /has not exited/);
      await call(v2, 'SignalProcess', { container_id: 'life', exec_id: 'sleeper', signal: 15 });
      const { status } = await call(v2, 'WaitProcess', { container_id: 'life', exec_id: 'sleeper' });
      assert.equal(status.signal, 15);
      assert.equal(status.code, 0);
      const exited = await events.until(isExit('life', 'sleeper'));
      assert.equal(exited.process_exited.status.signal, 15);
      await call(v2, 'ReleaseProcess', { container_id: 'life', exec_id: 'sleeper' });
    });

    it('exec ids are exact: an empty one names no process (not the init, as in v1)', async () => {
      await v2Failure(call(v2, 'SignalProcess', { container_id: 'life', exec_id: '', signal: 10 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', /exec id "" is invalid/);
      await v2Failure(call(v2, 'WaitProcess', { container_id: 'life', exec_id: '' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
      assert.equal((await call(v2, 'GetContainer', { container_id: 'life' })).container.init.running, true);
    });

    it('WriteInput at offsets: a retry of the same bytes is applied once, a gap is OUT_OF_RANGE, close ends the input', async () => {
      await call(v2, 'ExecProcess', { container_id: 'life', exec_id: 'cat', oci_process_json: proc(['cat']) });
      const w = (offset: number, data: string, more: Msg = {}) =>
        call(v2, 'WriteInput', { container_id: 'life', exec_id: 'cat', offset, data: Buffer.from(data), ...more });
      assert.equal((await w(0, 'abc')).offset, 3);
      assert.equal((await w(0, 'abc')).offset, 3, 'the same bytes again: not written twice');
      assert.equal((await w(1, 'bcd')).offset, 4, 'overlapping: only the new byte');
      const gap = await v2Failure(w(9, 'x'), grpc.status.OUT_OF_RANGE, 'OUT_OF_RANGE', /past the input written so far \(4 bytes\)/);
      assert.equal(gap.info!.metadata.written, '4');
      assert.equal((await w(4, 'ef', { close: true })).offset, 6);
      assert.equal((await w(4, 'ef', { close: true })).offset, 6, 'a retried close');
      const out = await readOutput(v2, { container_id: 'life', exec_id: 'cat', stream: 'OUTPUT_STREAM_STDOUT', offset: 0 });
      assert.equal(out.data.toString(), 'abcdef');
      assert.equal((await call(v2, 'WaitProcess', { container_id: 'life', exec_id: 'cat' })).status.code, 0);
      const info = (await call(v2, 'GetContainer', { container_id: 'life' })).container.execs.find((e: Msg) => e.exec_id === 'cat');
      assert.equal(info.stdin_offset, 6);
      await call(v2, 'ReleaseProcess', { container_id: 'life', exec_id: 'cat' });
    });

    it('WatchEvents from a cursor: the same events in the same order, and on from there as they happen', async () => {
      const seen = [...events.events];
      assert.ok(seen.length >= 8, `events so far: ${seen.length}`);
      assert.equal(seen[0]!.seq, 1);
      seen.forEach((e, i) => i > 0 && assert.equal(e.seq, seen[i - 1]!.seq + 1, 'no gaps, in order'));
      const middle = seen[3]!;
      const resumed = watchEvents(v2, { after_seq: middle.seq });
      try {
        const last = seen.at(-1)!;
        await resumed.until((e) => e.seq === last.seq);
        assert.deepEqual(resumed.events.slice(0, seen.length - 4), seen.slice(4));
        // From now: only what happens next. Every stream gets it.
        const fresh = watchEvents(v2, { from_now: true });
        try {
          await new Promise((r) => setTimeout(r, 500)); // for the call to reach the agent
          await call(v2, 'ExecProcess', { container_id: 'life', exec_id: 'blip', oci_process_json: proc(['true']) });
          const a = await events.until(isExit('life', 'blip'));
          const b = await resumed.until(isExit('life', 'blip'));
          const c = await fresh.until(isExit('life', 'blip'));
          assert.deepEqual(a, b);
          assert.deepEqual(a, c);
          assert.ok(fresh.events[0]!.seq > last.seq, 'nothing from before the call');
          assert.equal(fresh.events[0]!.event, 'process_started');
          assert.equal(fresh.events[0]!.process_started.exec_id, 'blip');
        } finally {
          fresh.cancel();
        }
      } finally {
        resumed.cancel();
      }
      // A cursor the agent never reached (from an earlier agent, say) is OUT_OF_RANGE naming what is held.
      const ahead = watchEvents(v2, { after_seq: 1_000_000 });
      await assert.rejects(ahead.until(() => false), (err: unknown) => {
        const f = failureOf(err);
        assert.equal(f.code, grpc.status.OUT_OF_RANGE);
        assert.equal(f.info?.reason, 'EVENT_CURSOR_OUT_OF_RANGE');
        assert.equal(f.info?.metadata.oldest_seq, '1');
        assert.ok(Number(f.info?.metadata.last_seq) >= seen.at(-1)!.seq);
        return true;
      });
    });

    it('ListContainers lists it with its processes; RemoveContainer (timeout 0: the default) removes it, and the event says so', async () => {
      await call(v2, 'WaitProcess', { container_id: 'life', exec_id: 'blip' });
      const { containers } = await call(v2, 'ListContainers', {});
      const life = containers.find((c: Msg) => c.container_id === 'life');
      assert.ok(life);
      assert.equal(life.state, 'CONTAINER_STATE_RUNNING');
      assert.equal(life.init.exec_id, 'life');
      const names = life.execs.map((e: Msg) => e.exec_id);
      assert.ok(names.includes('blip'), 'waited for, not released: listed');
      assert.ok(!names.includes('counter') && !names.includes('cat'), 'released and read to the end: not listed');
      assert.equal(life.execs.find((e: Msg) => e.exec_id === 'blip').exit_status.code, 0);
      await call(v2, 'RemoveContainer', { container_id: 'life', timeout_seconds: 0 });
      await events.until(isState('life', 'CONTAINER_STATE_REMOVED'));
      await v2Failure(call(v2, 'GetContainer', { container_id: 'life' }), grpc.status.NOT_FOUND, 'NOT_FOUND', /container life not found/);
    });
  });

  describe('request ids', () => {
    before(async () => {
      await call(v2, 'CreateContainer', { container_id: 'idem', exec_id: 'idem-init', oci_spec_json: spec(['sleep', '1000']), request_id: 'create-idem' });
      await call(v2, 'StartContainer', { container_id: 'idem', request_id: 'start-idem' });
    });
    after(async () => {
      await call(v2, 'RemoveContainer', { container_id: 'idem' }).catch(() => {});
    });

    it('CreateContainer retried (after and during the first call) creates one container and answers the first result', async () => {
      const req = { container_id: 'idem', exec_id: 'idem-init', oci_spec_json: spec(['sleep', '1000']), request_id: 'create-idem' };
      const retry = (await call(v2, 'CreateContainer', req)).container;
      assert.equal(retry.container_id, 'idem');
      assert.equal(retry.init.exec_id, 'idem-init');
      assert.equal(retry.state, 'CONTAINER_STATE_CREATED', 'the first answer, from before it was started');
      await call(v2, 'StartContainer', { container_id: 'idem', request_id: 'start-idem' });
      const twice = { container_id: 'twice', oci_spec_json: spec(['sleep', '1000']), request_id: 'create-twice' };
      const [a, b] = await Promise.all([call(v2, 'CreateContainer', twice), call(v2, 'CreateContainer', twice)]);
      assert.deepEqual(a, b);
      const { containers } = await call(v2, 'ListContainers', {});
      assert.equal(containers.filter((c: Msg) => c.container_id === 'twice').length, 1);
      await call(v2, 'RemoveContainer', { container_id: 'twice', request_id: 'remove-twice' });
      await call(v2, 'RemoveContainer', { container_id: 'twice', request_id: 'remove-twice' });
    });

    it('ExecProcess retried starts one process; WriteInput retried writes once', async () => {
      const exec = { container_id: 'idem', exec_id: 'cat', oci_process_json: proc(['cat']), request_id: 'exec-cat' };
      const first = (await call(v2, 'ExecProcess', exec)).process;
      const again = (await call(v2, 'ExecProcess', exec)).process;
      assert.deepEqual(again, first);
      const execs = (await call(v2, 'GetContainer', { container_id: 'idem' })).container.execs;
      assert.deepEqual(execs.map((e: Msg) => [e.exec_id, e.pid]), [['cat', first.pid]]);
      // A retried write with its request id, then the next write: the answer to the retry is the first one's.
      const write = { container_id: 'idem', exec_id: 'cat', offset: 0, data: Buffer.from('once\n'), request_id: 'write-1' };
      assert.equal((await call(v2, 'WriteInput', write)).offset, 5);
      assert.equal((await call(v2, 'WriteInput', { ...write, offset: 5, data: Buffer.from('more'), close: true, request_id: 'write-2' })).offset, 9);
      assert.equal((await call(v2, 'WriteInput', write)).offset, 5, 'the first answer');
      const out = await readOutput(v2, { container_id: 'idem', exec_id: 'cat', stream: 'OUTPUT_STREAM_STDOUT', offset: 0 });
      assert.equal(out.data.toString(), 'once\nmore');
    });

    it('the same request id with other arguments, or for another call, is ALREADY_EXISTS, reason REQUEST_ID_REUSED, and does nothing', async () => {
      const other = { container_id: 'idem-other', exec_id: 'idem-init', oci_spec_json: spec(['sleep', '1000']), request_id: 'create-idem' };
      await v2Failure(call(v2, 'CreateContainer', other), grpc.status.ALREADY_EXISTS, 'REQUEST_ID_REUSED', /request id "create-idem" was already used/);
      await v2Failure(call(v2, 'CreateContainer', { ...other, container_id: 'idem', oci_spec_json: spec(['sleep', '999']) }), grpc.status.ALREADY_EXISTS, 'REQUEST_ID_REUSED');
      await v2Failure(
        call(v2, 'ExecProcess', { container_id: 'idem', exec_id: 'other', oci_process_json: proc(['true']), request_id: 'exec-cat' }),
        grpc.status.ALREADY_EXISTS, 'REQUEST_ID_REUSED',
      );
      await v2Failure(call(v2, 'PauseContainer', { container_id: 'idem', request_id: 'exec-cat' }), grpc.status.ALREADY_EXISTS, 'REQUEST_ID_REUSED');
      await v2Failure(
        call(v2, 'WriteInput', { container_id: 'idem', exec_id: 'cat', offset: 0, data: Buffer.from('ONCE\n'), request_id: 'write-1' }),
        grpc.status.ALREADY_EXISTS, 'REQUEST_ID_REUSED',
      );
      const { containers } = await call(v2, 'ListContainers', {});
      assert.equal(containers.some((c: Msg) => c.container_id === 'idem-other'), false);
      const idem = containers.find((c: Msg) => c.container_id === 'idem');
      assert.equal(idem.state, 'CONTAINER_STATE_RUNNING', 'not paused');
      assert.equal(idem.execs.some((e: Msg) => e.exec_id === 'other'), false);
      await v2Failure(call(v2, 'StartContainer', { container_id: 'idem', request_id: 'bad id with spaces' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', /request id/);
    });
  });

  describe('v1 and v2 on one agent', () => {
    it("each manages the other's containers and processes", async () => {
      // Made by v1, driven by v2.
      await call(v1, 'CreateContainer', { container_id: 'byv1', exec_id: 'byv1', oci_spec_json: spec(['sleep', '1000']) });
      await call(v1, 'StartContainer', { container_id: 'byv1' });
      const seen = (await call(v2, 'GetContainer', { container_id: 'byv1' })).container;
      assert.equal(seen.state, 'CONTAINER_STATE_RUNNING');
      assert.equal(seen.init.exec_id, 'byv1');
      await call(v2, 'ExecProcess', { container_id: 'byv1', exec_id: 'from-v2', oci_process_json: proc(['sh', '-c', 'echo made by v2; exit 7']) });
      assert.equal((await v1ReadToEnd(v1, 'byv1', 'from-v2')).toString(), 'made by v2\n');
      assert.equal((await call(v1, 'WaitProcess', { container_id: 'byv1', exec_id: 'from-v2' })).status, 7);
      const { processes } = await call(v2, 'ListProcesses', { container_id: 'byv1' });
      assert.ok(processes.some((p: Msg) => p.pid === seen.init.pid && p.args.join(' ') === 'sleep 1000'), JSON.stringify(processes));

      // Made by v2, driven by v1.
      await call(v2, 'CreateContainer', { container_id: 'byv2', oci_spec_json: spec(['sleep', '1000']) });
      await call(v1, 'StartContainer', { container_id: 'byv2' });
      await call(v1, 'ExecProcess', { container_id: 'byv2', exec_id: 'from-v1', oci_process_json: proc(['sleep', '1000']) });
      assert.equal((await call(v2, 'GetContainer', { container_id: 'byv2' })).container.execs[0].exec_id, 'from-v1');
      await call(v1, 'SignalProcess', { container_id: 'byv2', exec_id: 'from-v1', signal: 9 });
      const { status } = await call(v2, 'WaitProcess', { container_id: 'byv2', exec_id: 'from-v1' });
      assert.deepEqual([status.code, status.signal], [0, 9]);
      assert.equal((await call(v1, 'WaitProcess', { container_id: 'byv2', exec_id: 'from-v1' })).status, 137, 'the same exit, v1-style');
      // v1 signals the init by an empty exec id; v2 sees it end.
      await call(v1, 'SignalProcess', { container_id: 'byv2', exec_id: '', signal: 9 });
      assert.equal((await call(v2, 'WaitProcess', { container_id: 'byv2', exec_id: 'byv2' })).status.signal, 9);
      assert.equal((await call(v2, 'GetContainer', { container_id: 'byv2' })).container.state, 'CONTAINER_STATE_STOPPED');
      await call(v1, 'RemoveContainer', { container_id: 'byv2' });
      await v2Failure(call(v2, 'GetContainer', { container_id: 'byv2' }), grpc.status.NOT_FOUND, 'NOT_FOUND');
      await call(v2, 'RemoveContainer', { container_id: 'byv1' });
      await assert.rejects(call(v1, 'StartContainer', { container_id: 'byv1' }), { code: grpc.status.NOT_FOUND });
    });

    it("v1 polling and a v2 stream both read all of one process's output (a few MiB), neither missing a byte", async () => {
      await call(v2, 'CreateContainer', { container_id: 'both', oci_spec_json: spec(['sleep', '1000']) });
      await call(v2, 'StartContainer', { container_id: 'both' });
      const N = 400_000; // about 2.7 MiB, well past the 1 MiB output window
      const expected = crypto.createHash('sha256');
      let expectedBytes = 0;
      for (let i = 1; i <= N; i += 10_000) {
        const text = Array.from({ length: Math.min(10_000, N - i + 1) }, (_, k) => `${i + k}\n`).join('');
        expected.update(text);
        expectedBytes += text.length;
      }
      const want = expected.digest('hex');
      // It waits for a line of input: both readers are in place before the first byte exists
      // (a reader holds bytes from where it first reads; what came before it is not its to keep).
      await call(v2, 'ExecProcess', { container_id: 'both', exec_id: 'seq', oci_process_json: proc(['sh', '-c', `read go; seq 1 ${N}`]) });
      const viaV1 = crypto.createHash('sha256');
      let v1Bytes = 0;
      const reads = Promise.all([
        v1ReadToEnd(v1, 'both', 'seq', (b) => {
          viaV1.update(b);
          v1Bytes += b.length;
        }).then(() => undefined),
        readOutput(v2, { container_id: 'both', exec_id: 'seq', stream: 'OUTPUT_STREAM_STDOUT', offset: 0, max_chunk_bytes: 1 << 20 }),
      ]);
      await new Promise((r) => setTimeout(r, 500));
      await call(v2, 'WriteInput', { container_id: 'both', exec_id: 'seq', offset: 0, data: Buffer.from('go\n') });
      const [, v2Read] = await reads;
      assert.equal(v1Bytes, expectedBytes);
      assert.equal(viaV1.digest('hex'), want, 'v1 got every byte, in order');
      assert.equal(v2Read.eof, true);
      assert.equal(v2Read.data.length, expectedBytes);
      assert.equal(crypto.createHash('sha256').update(v2Read.data).digest('hex'), want, 'v2 got every byte, in order');
      assert.ok(v2Read.messages.every((m) => m.data.length <= 1 << 20));
      assert.equal((await call(v2, 'WaitProcess', { container_id: 'both', exec_id: 'seq' })).status.code, 0);
      await call(v2, 'RemoveContainer', { container_id: 'both' });
    });
  });

  it("the policy's RPC rules apply to v2 by version, and a v2 denial says POLICY_DENIED in its details", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'v2-policy-'));
    const file = path.join(dir, 'policy.json');
    fs.writeFileSync(file, JSON.stringify({
      format: 1,
      rpcs: { default: 'allow', rules: [{ protocols: ['v2'], methods: ['ListContainers', 'CopyFile'], action: 'deny', why: 'not for v2 clients' }] },
    }));
    const guarded = await startAgent({ args: ['--policy', file] });
    const target = `unix:${guarded.addr.slice('unix://'.length)}`;
    const g1 = new AgentV1Service(target, grpc.credentials.createInsecure());
    const g2 = new AgentV2Service(target, grpc.credentials.createInsecure());
    try {
      const denied = await v2Failure(call(g2, 'ListContainers', {}), grpc.status.PERMISSION_DENIED, 'POLICY_DENIED', /not for v2 clients/);
      assert.equal(denied.info!.metadata.policy, file);
      assert.match(denied.info!.metadata.digest ?? '', /^sha256:/);
      await v2Failure(call(g2, 'GetContainer', { container_id: 'ghost' }), grpc.status.NOT_FOUND, 'NOT_FOUND');
      const copy = { path: path.join(guarded.sharedDir, 'copied'), file_size: 2, file_mode: 0o644, dir_mode: 0o755, offset: 0, data: Buffer.from('ok') };
      await v2Failure(call(g2, 'CopyFile', copy), grpc.status.PERMISSION_DENIED, 'POLICY_DENIED');
      assert.equal(fs.existsSync(copy.path), false);
      await call(g1, 'CopyFile', copy);
      assert.equal(fs.readFileSync(copy.path, 'utf8'), 'ok', 'the rule names v2 only');
    } finally {
      g1.close();
      g2.close();
      await guarded.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('errors carry google.rpc.Status with an ErrorInfo on v2, and plain statuses on v1', async () => {
    await v2Failure(call(v2, 'StartContainer', { container_id: 'nope' }), grpc.status.NOT_FOUND, 'NOT_FOUND', /container nope not found/);
    await v2Failure(call(v2, 'CreateContainer', { container_id: 'bad', oci_spec_json: '{' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', /oci_spec_json is not valid JSON/);
    await v2Failure(
      readOutput(v2, { container_id: 'nope', exec_id: 'x', stream: 'OUTPUT_STREAM_STDOUT', offset: 0 }),
      grpc.status.NOT_FOUND, 'NOT_FOUND',
    );
    const v1Error = await failure(call(v1, 'StartContainer', { container_id: 'nope' }));
    assert.equal(v1Error.code, grpc.status.NOT_FOUND);
    assert.equal(v1Error.info, null, 'v1 sends no status details');
    const v1Bad = await failure(call(v1, 'CreateContainer', { container_id: 'bad', exec_id: 'bad', oci_spec_json: '{' }));
    assert.equal(v1Bad.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(v1Bad.info, null);
    assert.ok(agent.alive());
  });
});
