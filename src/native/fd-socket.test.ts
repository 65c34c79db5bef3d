// Tests of fd-socket.ts (bare fds -> net.Server / net.Socket) and of
// vsock.ts's serveListeningFd (gRPC on a listening fd through a connection
// injector), with AF_UNIX fds from the addon: the code path is the one vsock
// fds take, and no vsock socket is ever opened here (vsockListen and
// vsockConnect are replaced by throwing stubs below).
// Run: node --import tsx --test src/native/fd-socket.test.ts
// (needs `node build/native/build.mjs` first).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { native } from './native';
import { FdSocketError, serverFromListeningFd, socketFromFd } from './fd-socket';
import { bindEndpoint, parseAddress } from '../agent/server/transport';
import { serveListeningFd } from '../agent/server/vsock';

const noVsock = (): never => {
  throw new Error('test must not open AF_VSOCK sockets on the development host');
};
native.vsockListen = noVsock;
native.vsockConnect = noVsock;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fd-socket-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let seq = 0;
const sockPath = () => path.join(tmp, `s${++seq}.sock`);

function once<T = unknown>(emitter: NodeJS.EventEmitter, event: string, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for '${event}'`)), ms);
    emitter.once(event, (v: T) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/** Everything a socket sends until it ends. */
function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

function echoServer(p: string, backlog = 64): net.Server {
  const server = serverFromListeningFd(native.unixListen(p, backlog));
  server.on('connection', (s: net.Socket) => s.pipe(s));
  return server;
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

test('echo round trip: listening fd server, connected fd socket', async () => {
  const p = sockPath();
  const server = echoServer(p);
  assert.equal(server.listening, true);
  const accepted = once<net.Socket>(server, 'connection');
  const client = socketFromFd(native.unixConnect(p));
  assert.ok(client instanceof net.Socket);
  const got = readAll(client);
  client.end('hello over an fd');
  assert.ok((await accepted) instanceof net.Socket);
  assert.equal((await got).toString(), 'hello over an fd');
  await once(client, 'close');
  await closeServer(server);
});

test('plain net clients and servers interoperate with fd-wrapped ends', async () => {
  const p = sockPath();
  const server = echoServer(p);
  const viaNet = net.connect(p);
  const got = readAll(viaNet);
  viaNet.end('from net.connect');
  assert.equal((await got).toString(), 'from net.connect');

  const p2 = sockPath();
  const plain = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => plain.listen(p2, r));
  const wrapped = socketFromFd(native.unixConnect(p2));
  const got2 = readAll(wrapped);
  wrapped.end('to net.Server');
  assert.equal((await got2).toString(), 'to net.Server');
  await closeServer(plain);
  await closeServer(server);
});

test('many concurrent connections with large payloads (back-pressure)', async () => {
  const p = sockPath();
  const server = echoServer(p, 128);
  let connections = 0;
  server.on('connection', () => connections++);
  const N = 40;
  const payloads = Array.from({ length: N }, (_, i) => Buffer.alloc(256 * 1024 + i, i));
  const results = await Promise.all(
    payloads.map(async (payload) => {
      const s = socketFromFd(native.unixConnect(p));
      const got = readAll(s);
      s.end(payload);
      return got;
    }),
  );
  results.forEach((r, i) => assert.ok(r.equals(payloads[i]!), `connection ${i} echoed wrong bytes`));
  assert.equal(connections, N);
  await closeServer(server);
});

test('close: server stops accepting, peer sees end, destroy frees the fd', async () => {
  const p = sockPath();
  const server = echoServer(p);
  const accepted = once<net.Socket>(server, 'connection');
  const client = socketFromFd(native.unixConnect(p));
  const serverSide = await accepted;

  // Closing the listener does not touch accepted connections...
  const closed = closeServer(server);
  assert.equal(server.listening, false);
  assert.throws(() => native.unixConnect(p), { code: 'ECONNREFUSED' });
  client.write('still there');
  assert.equal(((await once<Buffer>(client, 'data')) as Buffer).toString(), 'still there');

  // ...the server's 'close' waits for them; destroying one end ends the other.
  const clientEnded = once(client, 'end');
  serverSide.destroy();
  await clientEnded;
  await once(client, 'close');
  assert.equal(client.destroyed, true);
  await closed;
});

test('half close: with allowHalfOpen, end() shuts down writing and reading goes on', async () => {
  const p = sockPath();
  const server = serverFromListeningFd(native.unixListen(p, 8));
  const serverGot = new Promise<string>((resolve) =>
    server.once('connection', (s: net.Socket) => {
      readAll(s).then((b) => resolve(b.toString()));
      s.on('end', () => s.end('reply after end'));
    }),
  );
  const client = socketFromFd(native.unixConnect(p), { allowHalfOpen: true });
  const clientGot = readAll(client);
  client.end('request');
  assert.equal(await serverGot, 'request');
  assert.equal((await clientGot).toString(), 'reply after end');
  await closeServer(server);
});

test('bad fds: TypeError for non-integers, FdSocketError (fd still ours) otherwise', () => {
  assert.throws(() => socketFromFd(-1), TypeError);
  assert.throws(() => serverFromListeningFd(1.5), TypeError);
  // An fd number nothing has open.
  const fd = native.unixListen(sockPath(), 1);
  native.closeFd(fd);
  assert.throws(() => socketFromFd(fd), (err: unknown) => err instanceof FdSocketError && (err as NodeJS.ErrnoException).code === 'EBADF');
  // An fd libuv already watches (a listening server's) is refused and left open.
  const p = sockPath();
  const lfd = native.unixListen(p, 1);
  const server = serverFromListeningFd(lfd);
  assert.throws(() => serverFromListeningFd(lfd), (err: unknown) => err instanceof FdSocketError && (err as NodeJS.ErrnoException).code === 'EEXIST');
  assert.equal(native.getCloexec(lfd), true, 'the refused fd is still open');
  server.close();
});

test('a non-socket fd fails to listen with an error event', async () => {
  const fd = fs.openSync(path.join(tmp, 'plain-file'), 'w');
  const server = serverFromListeningFd(fd);
  const err = await once<NodeJS.ErrnoException>(server, 'error');
  assert.equal(err.code, 'ENOTSOCK');
  assert.equal(server.listening, false);
});

// ---- gRPC through fd sockets ------------------------------------------------

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

test('addon socket errors carry code, errno and syscall; fds are close-on-exec', () => {
  const p = sockPath();
  const fd = native.unixListen(p, 4);
  assert.equal(native.getCloexec(fd), true);
  assert.throws(() => native.unixListen(p, 4), { code: 'EADDRINUSE', errno: os.constants.errno.EADDRINUSE, syscall: 'bind' });
  assert.throws(() => native.unixConnect(path.join(tmp, 'x'.repeat(200))), { code: 'ENAMETOOLONG', syscall: 'connect' });
  assert.throws(() => native.unixConnect(path.join(tmp, 'absent.sock')), { code: 'ENOENT', syscall: 'connect' });
  assert.throws(() => native.unixListen(p, -1), TypeError);
  const c = native.unixConnect(p);
  assert.equal(native.getCloexec(c), true);
  const d = native.dupFd(c);
  assert.notEqual(d, c);
  for (const x of [d, c, fd]) native.closeFd(x);
  assert.throws(() => native.closeFd(fd), { code: 'EBADF', syscall: 'close' });
});

test('bindEndpoint(vsock://-1:1024) goes through listenVsock (vsockListen stubbed with an AF_UNIX socket)', async () => {
  const p = sockPath();
  const calls: number[][] = [];
  native.vsockListen = (cid, port, backlog) => {
    calls.push([cid, port, backlog]);
    return native.unixListen(p, backlog);
  };
  try {
    const server = echoGrpcServer();
    const bound = await bindEndpoint(server, parseAddress('vsock://-1:1024'));
    assert.deepEqual(calls, [[-1, 1024, 511]]);
    assert.equal(bound.address, 'vsock://-1:1024');
    assert.ok(bound.vsock && bound.vsock.fd >= 0);
    assert.equal(bound.vsock.cid, -1);
    assert.equal(bound.vsock.port, 1024);
    const client = newClient(p);
    assert.equal((await unary(client, Buffer.from('via listenVsock'))).toString(), 'via listenVsock');
    client.close();
    await new Promise<void>((r) => server.tryShutdown(() => r()));
    assert.equal(bound.vsock.fd, -1, 'shutting the grpc.Server down closed the listener');

    // unix endpoints still go through grpc-js bindAsync.
    const s2 = echoGrpcServer();
    const p2 = sockPath();
    const b2 = await bindEndpoint(s2, parseAddress(`unix://${p2}`));
    assert.deepEqual(b2, { address: `unix://${p2}` });
    const c2 = newClient(p2);
    assert.equal((await unary(c2, Buffer.from('bindAsync'))).toString(), 'bindAsync');
    c2.close();
    s2.forceShutdown();
  } finally {
    native.vsockListen = noVsock;
  }
});
