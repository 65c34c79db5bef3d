// Tests of fd-socket.ts (bare fds -> net.Server / net.Socket) with AF_UNIX
// fds from the addon: the code path is the one vsock fds take, and no vsock
// socket is ever opened here (vsockListen and vsockConnect are replaced by
// throwing stubs below). gRPC over such sockets: src/agent/server/listeners.test.ts.
// Run: node --import tsx --test src/native/fd-socket.test.ts
// (needs `node build/native/build.mjs` first).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { native } from './native';
import { FdSocketError, serverFromListeningFd, socketFromFd } from './fd-socket';

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
