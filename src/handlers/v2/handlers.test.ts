// The v2 handler set behind its RpcBoundary (status details on), served by an
// in-process gRPC server on a unix socket, over a small core: a real
// EventBus (a small window), a real RequestLedger, and containers from the
// core's Container with the fake runtime (real processes on this machine).
// What the bundled agent cannot show quickly: a cursor that fell out of the
// event window, and the ReadOutput cursor kept behind what was sent.
// End to end with crun: test/integration/v2.test.ts.
// Run: node --import tsx --test src/handlers/v2/handlers.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { AgentCore } from '../../agent/core';
import { Container } from '../../agent/core/container';
import { EventBus } from '../../agent/core/events';
import { FakeRuntime } from '../../agent/core/fake-runtime.testing';
import { RequestLedger } from '../../agent/core/requests';
import { notFound } from '../../agent/errors';
import { silentLogger } from '../../agent/log';
import { NO_POLICY } from '../../agent/policy/policy';
import { Reaper } from '../../agent/process/reaper';
import { RpcBoundary } from '../../agent/server/rpc';
import { RpcMetrics } from '../../agent/server/rpc-metrics';
import { AgentV2Service } from '../../protocol';
import { decodeStatusDetails, STATUS_DETAILS_KEY } from '../../status-details';
import { v2Handlers } from '.';
import { heldBehind } from './stdio';

type Msg = Record<string, any>;
const OUTPUT_WINDOW = 64 * 1024;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'v2-handlers-'));
const reaper = new Reaper(silentLogger);
const runtime = new FakeRuntime(reaper);
const events = new EventBus({ capacity: 4 });
const containers = new Map<string, Container>();
const core = {
  config: { maxMessageBytes: 4 << 20, outputBufferBytes: OUTPUT_WINDOW },
  policy: NO_POLICY,
  events,
  requests: new RequestLedger(),
  sandbox: {
    container(id: string) {
      const c = containers.get(id);
      if (!c) throw notFound(`container ${id} not found`);
      return c;
    },
    list: () => [...containers.values()],
  },
} as unknown as AgentCore;

let server: grpc.Server;
let client: grpc.Client;
let keepAlive: NodeJS.Timeout;

before(async () => {
  reaper.start();
  keepAlive = setInterval(() => {}, 1000);
  server = new grpc.Server();
  server.addService(AgentV2Service.service, v2Handlers(core, new RpcBoundary(silentLogger, new RpcMetrics(), NO_POLICY, { statusDetails: true })));
  const sock = path.join(tmp, 'v2.sock');
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  client = new AgentV2Service(`unix:${sock}`, grpc.credentials.createInsecure());
});
after(async () => {
  client?.close();
  server?.forceShutdown();
  for (const c of containers.values()) await c.remove(5).catch(() => {});
  clearInterval(keepAlive);
  reaper.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const call = (method: string, req: object) =>
  new Promise<Msg>((resolve, reject) => (client as any)[method](req, { deadline: Date.now() + 10_000 }, (err: Error | null, res: Msg) => (err ? reject(err) : resolve(res))));

const detailsOf = (err: unknown) => {
  const bin = (err as grpc.ServiceError).metadata?.get(STATUS_DETAILS_KEY)[0];
  return bin === undefined ? null : decodeStatusDetails(bin as Buffer);
};

/** Opens a server stream and collects its messages; `done` settles with its end (null) or its error. */
function open(method: string, req: object) {
  const stream: grpc.ClientReadableStream<Msg> = (client as any)[method](req);
  const messages: Msg[] = [];
  const done = new Promise<grpc.ServiceError | null>((resolve) => {
    stream.on('error', resolve);
    stream.on('end', () => resolve(null));
  });
  stream.on('data', (m: Msg) => messages.push(m));
  const until = async (n: number) => {
    for (let i = 0; messages.length < n && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(messages.length >= n, `${messages.length} of ${n} messages`);
  };
  return { stream, messages, done, until };
}

const state = (id: string) => events.publish({ type: 'container-state', containerId: id, state: 'running', at: 1 });

describe('v2 WatchEvents over the core bus', () => {
  it('from a cursor still held: the events after it, then what comes; from_now: only what comes', async () => {
    for (let i = 1; i <= 6; i++) state(`w${i}`); // seqs 1..6; the window holds 3..6
    const fromCursor = open('WatchEvents', { after_seq: 4 });
    const fromNow = open('WatchEvents', { from_now: true, after_seq: 1 });
    await fromCursor.until(2);
    await new Promise((r) => setTimeout(r, 50));
    state('w7');
    await fromCursor.until(3);
    await fromNow.until(1);
    assert.deepEqual(fromCursor.messages.map((m) => [m.seq, m.container_state.container_id]), [[5, 'w5'], [6, 'w6'], [7, 'w7']]);
    assert.deepEqual(fromNow.messages.map((m) => m.seq), [7], 'from_now ignores after_seq');
    assert.equal(fromNow.messages[0]!.event, 'container_state');
    fromCursor.stream.cancel();
    fromNow.stream.cancel();
    assert.equal((await fromCursor.done)?.code, grpc.status.CANCELLED);
    // The bus lets go of the watchers once they went away.
    for (let i = 0; events.waiting > 0 && i < 100; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(events.waiting, 0);
  });

  it('a cursor that fell out of the window is OUT_OF_RANGE, naming the oldest seq held', async () => {
    const err = await open('WatchEvents', { after_seq: 1 }).done;
    assert.equal(err?.code, grpc.status.OUT_OF_RANGE);
    assert.match(err!.details, /event cursor 1 fell out of the kept window/);
    const info = detailsOf(err);
    assert.equal(info?.reason, 'EVENT_CURSOR_OUT_OF_RANGE');
    assert.deepEqual(info?.metadata, { oldest_seq: String(events.oldestSeq), last_seq: String(events.lastSeq) });
    assert.equal(events.oldestSeq, 4);
  });
});

describe('v2 ReadOutput over a real process', () => {
  let c: Container;
  before(async () => {
    const bundle = path.join(tmp, 'r1');
    c = await Container.create('r1', 'r1', bundle, { ociVersion: '1.0.2', process: { args: ['sleep', '30'], cwd: '/' }, root: { path: '/' } }, false,
      { runtime, reaper, log: silentLogger, outputBufferBytes: OUTPUT_WINDOW });
    containers.set('r1', c);
    await c.start();
  });

  it("keeps the reader's cursor behind what it sent, so a client whose stream broke resumes from the bytes it kept", async () => {
    const lag = heldBehind(OUTPUT_WINDOW);
    assert.equal(lag, OUTPUT_WINDOW / 4);
    const total = 5 * OUTPUT_WINDOW;
    // All of it at once, then silence: the stream sends everything and waits at the end.
    await c.exec('big', { args: ['sh', '-c', `head -c ${total} /dev/zero | tr '\\0' z; exec sleep 30`], cwd: '/' });
    const req = { container_id: 'r1', exec_id: 'big', stream: 'OUTPUT_STREAM_STDOUT', reader: 'shim', max_chunk_bytes: 4096 };
    const first = open('ReadOutput', { ...req, offset: 0 });
    const stdout = c.process('big').io.stdout;
    for (let i = 0; !(stdout.end === total && stdout.waiting === 1) && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stdout.waiting, 1, 'the stream sent all and waits for more');
    first.stream.cancel();
    await first.done;
    const held = stdout.reader('v2.shim').position;
    assert.equal(held, total - lag, 'the client reader is held lag bytes behind what was sent (all of it)');
    assert.equal(stdout.start, held, 'nothing after the held cursor was released');
    // A client that kept less than it was sent (its last messages were lost) resumes from what it kept, back to the held cursor.
    await assert.rejects(
      new Promise((_, reject) => void open('ReadOutput', { ...req, offset: held - 1 }).done.then(reject)),
      (err: grpc.ServiceError) => err.code === grpc.status.OUT_OF_RANGE && detailsOf(err)?.metadata.first_offset === String(held),
    );
    const rest = open('ReadOutput', { ...req, offset: held });
    for (let i = 0; Buffer.concat(rest.messages.map((m) => m.data)).length < lag && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
    c.signal('big', 9);
    assert.equal(await rest.done, null);
    const data = Buffer.concat(rest.messages.map((m) => m.data));
    assert.equal(held + data.length, total);
    assert.ok(data.every((b) => b === 0x7a));
    const last = rest.messages.at(-1)!;
    assert.deepEqual([last.offset, last.data.length, last.eof], [total, 0, true]);
    assert.equal(stdout.reader('v2.shim').position, total - lag, "the client's reader still held behind, though it was sent the eof");
    assert.equal(stdout.reader('v2.shim').reachedEnd, false);
    // Waited for (kept: asked twice) and then released: every v2 reader at the end, the exec forgotten.
    const { status } = await call('WaitProcess', { container_id: 'r1', exec_id: 'big' });
    assert.deepEqual([status.code, status.signal], [0, 9]);
    assert.deepEqual((await call('WaitProcess', { container_id: 'r1', exec_id: 'big' })).status, status);
    assert.equal(c.process('big').status?.signal, 9, 'kept until released');
    await call('ReleaseProcess', { container_id: 'r1', exec_id: 'big' });
    assert.throws(() => c.process('big'), /not found/);
    assert.ok(stdout.reader('v2.shim').reachedEnd);
    assert.equal(stdout.start, total);
  });

  it('a client that stopped taking messages after the agent sent the eof resumes from what it kept', async () => {
    await c.exec('short', { args: ['sh', '-c', 'seq 1 3000'], cwd: '/' });
    const whole = Array.from({ length: 3000 }, (_, i) => `${i + 1}\n`).join('');
    const req = { container_id: 'r1', exec_id: 'short', stream: 'OUTPUT_STREAM_STDOUT', max_chunk_bytes: 1000 };
    assert.equal((await call('WaitProcess', { container_id: 'r1', exec_id: 'short' })).status.code, 0);
    const first = open('ReadOutput', { ...req, offset: 0 });
    assert.equal(await first.done, null, 'the whole stream, eof included, was sent');
    // The client kept three messages and dropped the rest (it stopped, or crashed).
    const rest = open('ReadOutput', { ...req, offset: 3000 });
    assert.equal(await rest.done, null);
    assert.equal(whole.slice(0, 3000) + Buffer.concat(rest.messages.map((m) => m.data)).toString(), whole);
    // Asked at the final offset: the reader is at the end; released, the exec is forgotten.
    const end = open('ReadOutput', { ...req, offset: whole.length });
    assert.equal(await end.done, null);
    assert.deepEqual(end.messages.map((m) => [m.offset, m.eof]), [[whole.length, true]]);
    assert.ok(c.process('short').io.stdout.reader('v2.default').reachedEnd);
    await call('ReleaseProcess', { container_id: 'r1', exec_id: 'short' });
    assert.throws(() => c.process('short'), /not found/);
  });

  it('ReleaseProcess forgets an exec whose output no v2 client read (unless v1 still reads it)', async () => {
    await c.exec('unread', { args: ['sh', '-c', 'echo never read'], cwd: '/' });
    await call('WaitProcess', { container_id: 'r1', exec_id: 'unread' });
    await c.exec('v1-reads', { args: ['sh', '-c', 'echo one; echo two'], cwd: '/' });
    await call('WaitProcess', { container_id: 'r1', exec_id: 'v1-reads' });
    assert.equal((await c.readOutput('v1-reads', 'stdout', 'v1', 'next', 4)).data.toString(), 'one\n');
    for (let i = 0; !(c.process('unread').io.stdout.ended && c.process('v1-reads').io.stderr.ended) && i < 100; i++) await new Promise((r) => setTimeout(r, 10));
    await call('ReleaseProcess', { container_id: 'r1', exec_id: 'unread' });
    assert.throws(() => c.process('unread'), /not found/);
    await call('ReleaseProcess', { container_id: 'r1', exec_id: 'v1-reads' });
    assert.equal(c.process('v1-reads').io.stdout.start, 4, 'what v1 has not read is kept for it');
    assert.equal((await c.readOutput('v1-reads', 'stdout', 'v1', 'next', 100)).data.toString(), 'two\n');
    assert.equal((await c.readOutput('v1-reads', 'stdout', 'v1', 'next', 100)).eof, true);
    assert.throws(() => c.process('v1-reads'), /not found/, 'v1 read it to the end: forgotten');
  });

  it('acknowledged_only: nothing sent is released until AcknowledgeOutput (or a later offset) says so; the window holds the process back', async () => {
    const total = 3 * OUTPUT_WINDOW;
    await c.exec('acked', { args: ['sh', '-c', `head -c ${total} /dev/zero | tr '\\0' a`], cwd: '/' });
    const req = { container_id: 'r1', exec_id: 'acked', stream: 'OUTPUT_STREAM_STDOUT', reader: 'rt', max_chunk_bytes: 4096, acknowledged_only: true };
    const first = open('ReadOutput', { ...req, offset: 0 });
    const stdout = c.process('acked').io.stdout;
    const received = () => first.messages.reduce((n, m) => n + m.data.length, 0);
    for (let i = 0; received() < OUTPUT_WINDOW && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    // Sent all the window holds, released none of it, and no more comes: the process waits in write(2).
    assert.equal(stdout.start, 0);
    assert.ok(stdout.retained >= OUTPUT_WINDOW && received() <= stdout.end, `${stdout.retained} held, ${received()} received`);
    const stalled = received();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(received(), stalled, 'nothing past the window');
    // The client acknowledges half of what it got: that much is released, and more flows.
    const half = Math.floor(stalled / 2);
    assert.deepEqual(await call('AcknowledgeOutput', { ...req, offset: half }), { start_offset: half });
    for (let i = 0; received() <= stalled && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(received() > stalled);
    first.stream.cancel();
    await first.done;
    // A new stream from the acknowledged offset gets every byte from there, acknowledging as it goes.
    const rest = open('ReadOutput', { ...req, offset: half });
    let acked = half;
    for (let i = 0; !rest.messages.at(-1)?.eof && i < 2000; i++) {
      const got = half + rest.messages.reduce((n, m) => n + m.data.length, 0);
      if (got > acked) await call('AcknowledgeOutput', { ...req, offset: (acked = got) });
      else await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(await rest.done, null);
    const data = Buffer.concat(rest.messages.map((m) => m.data));
    assert.equal(half + data.length, total);
    assert.ok(data.every((b) => b === 0x61));
    await call('AcknowledgeOutput', { ...req, offset: total });
    assert.ok(stdout.reader('v2.rt').reachedEnd, 'the final offset of the ended stream acknowledged: the reader has it all');
    // Hostile acknowledgements: past the end, an unknown exec, a bad reader name.
    await assert.rejects(call('AcknowledgeOutput', { ...req, offset: total + 1 }), (err: grpc.ServiceError) => err.code === grpc.status.OUT_OF_RANGE);
    await assert.rejects(call('AcknowledgeOutput', { ...req, exec_id: 'nope', offset: 0 }), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
    await assert.rejects(call('AcknowledgeOutput', { ...req, reader: '../x', offset: 0 }), (err: grpc.ServiceError) => err.code === grpc.status.INVALID_ARGUMENT);
    await call('WaitProcess', { container_id: 'r1', exec_id: 'acked' });
    await call('ReleaseProcess', { container_id: 'r1', exec_id: 'acked' });
    assert.throws(() => c.process('acked'), /not found/);
  });

  it('a stream waiting at the end of a live process ends when the client cancels, and holds nothing back', async () => {
    await c.exec('quiet', { args: ['sh', '-c', 'echo one; exec sleep 30'], cwd: '/' });
    const s = open('ReadOutput', { container_id: 'r1', exec_id: 'quiet', stream: 'OUTPUT_STREAM_STDOUT', offset: 0 });
    await s.until(1);
    assert.equal(s.messages[0]!.data.toString(), 'one\n');
    const stdout = c.process('quiet').io.stdout;
    for (let i = 0; stdout.waiting === 0 && i < 100; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stdout.waiting, 1, 'the stream waits for more');
    s.stream.cancel();
    assert.equal((await s.done)?.code, grpc.status.CANCELLED);
    for (let i = 0; stdout.waiting > 0 && i < 100; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stdout.waiting, 0, 'the wait was given up');
    c.signal('quiet', 9);
  });
});
