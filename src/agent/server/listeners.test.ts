// Serving gRPC on sockets the agent owns: fd-listener.ts (a listening fd ->
// connection injector) and listeners.ts (every listener opens, fails and
// retries on its own). AF_UNIX fds from the addon take the code path vsock fds
// take; no vsock socket is ever opened here (vsockListen and vsockConnect are
// replaced by stubs below).
// Run: node --import tsx --test src/agent/server/listeners.test.ts
// (needs `node build/native/build.mjs` first).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../log';
import { native } from '../../native/native';
import { serverFromListeningFd, socketFromFd } from '../../native/fd-socket';
import { parseAddress } from './address';
import { serveListeningFd } from './fd-listener';
import { ListenerSet } from './listeners';

const noVsock = (): never => {
  throw Object.assign(new Error('test must not open AF_VSOCK sockets on the development host'), { code: 'EAFNOSUPPORT' });
};
native.vsockListen = noVsock;
native.vsockConnect = noVsock;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'listeners-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let seq = 0;
const sockPath = () => path.join(tmp, `s${++seq}.sock`);

const raw = { requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b };
const EchoService: grpc.ServiceDefinition = {
  Echo: { path: '/test.Echo/Echo', requestStream: false, responseStream: false, ...raw },
  Repeat: { path: '/test.Echo/Repeat', requestStream: false, responseStream: true, ...raw },
  Chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, ...raw },
};
const EchoClient = grpc.makeGenericClientConstructor(EchoService, 'Echo');
type Client = grpc.Client & Record<string, Function>;

function echoGrpcServer(): grpc.Server {
  const server = new grpc.Server();
  server.addService(EchoService, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
    // Request: 4-byte count, 4-byte size.
    Repeat: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const count = call.request.readUInt32BE(0);
      const size = call.request.readUInt32BE(4);
      for (let i = 0; i < count; i++) call.write(Buffer.alloc(size, i));
      call.end();
    },
    Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (b: Buffer) => call.write(Buffer.concat([Buffer.from('re:'), b])));
      call.on('end', () => call.end());
    },
  });
  return server;
}

function newClient(p: string): Client {
  return new EchoClient(`unix:${p}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as Client;
}

function unary(client: Client, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => client.Echo(payload, { deadline: Date.now() + 10_000 }, (err: Error | null, res: Buffer) => (err ? reject(err) : resolve(res))));
}

function repeat(client: Client, count: number, size: number): Promise<Buffer[]> {
  const req = Buffer.alloc(8);
  req.writeUInt32BE(count, 0);
  req.writeUInt32BE(size, 4);
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const call = client.Repeat(req) as grpc.ClientReadableStream<Buffer>;
    call.on('data', (b: Buffer) => out.push(b));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

function chat(client: Client, messages: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const out: string[] = [];
    const call = client.Chat() as grpc.ClientDuplexStream<Buffer, Buffer>;
    call.on('data', (b: Buffer) => out.push(b.toString()));
    call.on('error', reject);
    call.on('end', () => resolve(out));
    for (const m of messages) call.write(Buffer.from(m));
    call.end();
  });
}

test('grpc-js serves unary and streaming calls through injected fd sockets', async () => {
  const p = sockPath();
  const server = echoGrpcServer();
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const listener = serverFromListeningFd(native.unixListen(p, 64));
  let accepted = 0;
  listener.on('connection', (s: net.Socket) => {
    accepted++;
    injector.injectConnection(s);
  });

  const clients = [newClient(p), newClient(p), newClient(p)];
  for (const c of clients) assert.equal((await unary(c, Buffer.from('ping'))).toString(), 'ping');
  const big = Buffer.alloc(3 * 1024 * 1024, 7);
  assert.ok((await unary(clients[0]!, big)).equals(big));
  const streamed = await repeat(clients[1]!, 64, 64 * 1024);
  assert.equal(streamed.length, 64);
  streamed.forEach((b, i) => assert.ok(b.length === 64 * 1024 && b[0] === i % 256));
  assert.deepEqual(await chat(clients[2]!, ['a', 'b', 'c']), ['re:a', 're:b', 're:c']);
  const parallel = await Promise.all(Array.from({ length: 50 }, (_, i) => unary(clients[i % 3]!, Buffer.from(`m${i}`))));
  assert.deepEqual(parallel.map(String), Array.from({ length: 50 }, (_, i) => `m${i}`));
  assert.equal(accepted, 3, 'one connection per client channel');

  for (const c of clients) c.close();
  listener.close();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
});

test('serveListeningFd: serves, close() stops accepting and ends sessions', async () => {
  const p = sockPath();
  const server = echoGrpcServer();
  const errors: Error[] = [];
  const listener = serveListeningFd(native.unixListen(p, 64), server, { onError: (e) => errors.push(e) });
  assert.ok(listener.fd >= 0);
  const client = newClient(p);
  assert.equal((await unary(client, Buffer.from('x'))).toString(), 'x');
  assert.equal(listener.accepted, 1);

  listener.close();
  assert.equal(listener.fd, -1);
  listener.close(); // idempotent
  assert.throws(() => native.unixConnect(p), { code: 'ECONNREFUSED' });
  // The session got GOAWAY; the channel tries to reconnect and finds nothing.
  await assert.rejects(unary(client, Buffer.from('y')), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED);
  client.close();
  assert.deepEqual(errors, []);
  server.forceShutdown();
});

test('serveListeningFd: grpc.Server.tryShutdown also stops accepting', async () => {
  const p = sockPath();
  const server = echoGrpcServer();
  const listener = serveListeningFd(native.unixListen(p, 64), server);
  const client = newClient(p);
  assert.equal((await unary(client, Buffer.from('x'))).toString(), 'x');
  client.close();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
  assert.equal(listener.fd, -1);
  assert.throws(() => native.unixConnect(p), { code: 'ECONNREFUSED' });
});

test('serveListeningFd: detach() keeps the socket listening; the next server answers the backlog', async () => {
  const p = sockPath();
  const first = echoGrpcServer();
  const listener = serveListeningFd(native.unixListen(p, 64), first);
  const c1 = newClient(p);
  assert.equal((await unary(c1, Buffer.from('old'))).toString(), 'old');

  const fd = listener.detach();
  assert.equal(listener.fd, -1);
  assert.throws(() => listener.detach(), /already closed or detached/);
  assert.equal(native.getCloexec(fd), true, 'the duplicate is close-on-exec until the upgrade clears it');
  // Not accepted by anyone now, but not refused: the connection waits in the backlog.
  const waiting = native.unixConnect(p);
  const waitingSocket = socketFromFd(waiting);
  // The already injected session still works.
  assert.equal((await unary(c1, Buffer.from('still'))).toString(), 'still');
  c1.close();
  await new Promise<void>((r) => first.tryShutdown(() => r()));

  // "The new image": serves the same socket from the duplicate fd.
  const second = echoGrpcServer();
  const listener2 = serveListeningFd(fd, second);
  const c2 = newClient(p);
  assert.equal((await unary(c2, Buffer.from('new'))).toString(), 'new');
  // The connection queued during the gap was accepted by the new server (accepted counts it).
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(listener2.accepted, 2);
  waitingSocket.destroy();
  c2.close();
  listener2.close();
  second.forceShutdown();
});


const FAST_RETRY = { firstMs: 20, maxMs: 40 };

test('ListenerSet: a listener that cannot open never stops the others; it is retried until it opens', async () => {
  const server = echoGrpcServer();
  const good = sockPath();
  // A unix socket under a regular file cannot be bound until the file becomes a directory.
  const blocker = path.join(tmp, `blocker${++seq}`);
  fs.writeFileSync(blocker, '');
  const late = path.join(blocker, 'late.sock');
  const set = new ListenerSet(server, silentLogger, FAST_RETRY);
  set.add(parseAddress('vsock://-1:1024'));
  set.add(parseAddress(`unix://${late}`));
  set.add(parseAddress(`unix://${good}`));
  const first = await set.settled();
  assert.deepEqual(first.map((l) => l.state), ['retrying', 'retrying', 'serving']);
  assert.match(first[0]!.lastError!, /AF_VSOCK/);
  assert.equal(first[1]!.failures, 1);

  const client = newClient(good);
  assert.equal((await unary(client, Buffer.from('served'))).toString(), 'served');

  // The obstacle goes away: the retry opens the listener and it serves too.
  fs.rmSync(blocker);
  fs.mkdirSync(blocker);
  for (let i = 0; i < 100 && set.status()[1]!.state !== 'serving'; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(set.status()[1]!.state, 'serving');
  assert.ok(set.status()[0]!.failures >= 2, 'vsock keeps being retried');
  const lateClient = newClient(late);
  assert.equal((await unary(lateClient, Buffer.from('late'))).toString(), 'late');

  set.close();
  assert.deepEqual(set.status().map((l) => l.state), ['closed', 'closed', 'closed']);
  const failuresAtClose = set.status()[0]!.failures;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(set.status()[0]!.failures, failuresAtClose, 'no retry after close');
  assert.throws(() => native.unixConnect(good), { code: 'ECONNREFUSED' });
  client.close();
  lateClient.close();
  server.forceShutdown();
});

test('ListenerSet: tcp on 127.0.0.1 port 0 reports the bound port; a port in use is retried, not fatal', async () => {
  const server = echoGrpcServer();
  const set = new ListenerSet(server, silentLogger, FAST_RETRY);
  set.add(parseAddress('tcp://127.0.0.1:0'));
  const [tcp] = await set.settled();
  assert.equal(tcp!.state, 'serving');
  const port = Number(/:(\d+)$/.exec(tcp!.address)![1]);
  assert.ok(port > 0);
  const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Client;
  assert.equal((await unary(client, Buffer.from('tcp'))).toString(), 'tcp');

  const second = new ListenerSet(server, silentLogger, FAST_RETRY);
  second.add(parseAddress(`tcp://127.0.0.1:${port}`));
  const [busy] = await second.settled();
  assert.equal(busy!.state, 'retrying');
  assert.match(busy!.lastError!, /EADDRINUSE/);
  second.close();
  set.close();
  client.close();
  server.forceShutdown();
});

test('ListenerSet: a stale unix socket file is replaced; a regular file in the way is not removed', async () => {
  const server = echoGrpcServer();
  const stale = sockPath();
  native.closeFd(native.unixListen(stale, 1)); // leaves the socket file behind
  const regular = path.join(tmp, `regular${++seq}`);
  fs.writeFileSync(regular, 'keep me');
  const set = new ListenerSet(server, silentLogger, FAST_RETRY);
  set.add(parseAddress(`unix://${stale}`));
  set.add(parseAddress(`unix://${regular}`));
  const [a, b] = await set.settled();
  assert.equal(a!.state, 'serving');
  assert.equal(b!.state, 'retrying');
  assert.equal(fs.readFileSync(regular, 'utf8'), 'keep me');
  set.close();
  server.forceShutdown();
});

test('ListenerSet.stopAccepting: no new connection, but sessions already accepted still get their answers', async () => {
  const server = echoGrpcServer();
  const p = sockPath();
  const set = new ListenerSet(server, silentLogger, FAST_RETRY);
  set.add(parseAddress(`unix://${p}`));
  await set.settled();
  const client = newClient(p);
  assert.equal((await unary(client, Buffer.from('before'))).toString(), 'before');
  set.stopAccepting();
  assert.throws(() => native.unixConnect(p), { code: 'ECONNREFUSED' });
  assert.equal((await unary(client, Buffer.from('after'))).toString(), 'after', 'the accepted session is still served');
  set.close();
  client.close();
  server.forceShutdown();
});
