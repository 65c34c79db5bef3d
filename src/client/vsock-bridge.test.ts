// Tests of the client's unix-to-vsock bridge on the development host: the
// dial function is injected (native.unixConnect to a unix server standing in
// for the agent's vsock port), so no AF_VSOCK socket is ever opened here
// (vsockConnect/vsockListen are replaced by throwing stubs below).
// Run: node --import tsx --test src/client/vsock-bridge.test.ts
// (needs `node build/native/build.mjs` first).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { native } from '../native/native';
import type { NegotiateRequest__Output } from '../generated/agent/NegotiateRequest';
import type { NegotiateResponse } from '../generated/agent/NegotiateResponse';
import { DiscoveryService } from '../protocol';
import { parseAgentAddress } from './address';
import { AgentClient } from './client';
import { openVsockBridge } from './vsock-bridge';

let vsockAttempts = 0;
native.vsockConnect = native.vsockListen = () => {
  vsockAttempts++;
  throw new Error('test must not open AF_VSOCK sockets on the development host');
};
after(() => assert.equal(vsockAttempts, 0));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vsock-bridge-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let seq = 0;
const sockPath = () => path.join(tmp, `s${++seq}.sock`);

function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

async function unixEchoServer(): Promise<{ path: string; server: net.Server; sockets: Set<net.Socket> }> {
  const p = sockPath();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(p, r));
  return { path: p, server, sockets };
}

function bridgeDir(target: string): string {
  assert.match(target, /^unix:\//);
  return path.dirname(target.slice('unix:'.length));
}

test('parseAgentAddress: vsock needs the bridge, unix/tcp are grpc targets', () => {
  assert.deepEqual(parseAgentAddress('vsock://3:1024'), { kind: 'vsock', cid: 3, port: 1024 });
  assert.deepEqual(parseAgentAddress('unix:///run/a.sock'), { kind: 'grpc', target: 'unix:/run/a.sock' });
  assert.deepEqual(parseAgentAddress('tcp://127.0.0.1:80'), { kind: 'grpc', target: '127.0.0.1:80' });
  assert.throws(() => parseAgentAddress('vsock://-1:1024'), /not unix/); // "any" is for listeners only
  assert.throws(() => parseAgentAddress('vsock://3:4294967295'), /not unix/);
  assert.throws(() => parseAgentAddress('vsock://3'), /not unix/);
});

test('bridge: bytes go both ways, one dial per connection, private dir removed on close', async () => {
  const echo = await unixEchoServer();
  let dials = 0;
  const bridge = await openVsockBridge(3, 1024, { dial: () => (dials++, native.unixConnect(echo.path)) });
  const dir = bridgeDir(bridge.target);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  const local = bridge.target.slice('unix:'.length);

  const payloads = Array.from({ length: 20 }, (_, i) => Buffer.alloc(512 * 1024 + i, i + 1));
  const results = await Promise.all(
    payloads.map(async (payload) => {
      const s = net.connect(local);
      const got = readAll(s);
      s.end(payload);
      return got;
    }),
  );
  results.forEach((r, i) => assert.ok(r.equals(payloads[i]!), `pair ${i} garbled`));
  assert.equal(dials, 20);

  // A live pair is cut by close(), and the temp dir goes.
  const live = net.connect(local);
  live.write('x');
  await new Promise((r) => live.once('data', r));
  const cut = new Promise((r) => live.once('close', r));
  bridge.close();
  bridge.close(); // idempotent
  await cut;
  assert.equal(fs.existsSync(dir), false);
  for (let i = 0; i < 100 && echo.sockets.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(echo.sockets.size, 0, 'the far side of every pair is closed');
  echo.server.close();
});

test('bridge: a failed dial closes that connection and reports the error', async () => {
  const errors: Error[] = [];
  const missing = path.join(tmp, 'nobody-listens.sock');
  const bridge = await openVsockBridge(3, 1024, { dial: () => native.unixConnect(missing), onError: (e) => errors.push(e) });
  const s = net.connect(bridge.target.slice('unix:'.length));
  await new Promise((r) => s.once('close', r));
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.message, /^vsock bridge: cannot connect to 3:1024: connect .*nobody-listens.sock/);
  assert.equal((errors[0]!.cause as NodeJS.ErrnoException).code, 'ENOENT');
  bridge.close();
});

test('bridge: the far end closing ends the local connection', async () => {
  const p = sockPath();
  const server = net.createServer((s) => s.end('bye'));
  await new Promise<void>((r) => server.listen(p, r));
  const bridge = await openVsockBridge(3, 1024, { dial: () => native.unixConnect(p) });
  const s = net.connect(bridge.target.slice('unix:'.length));
  assert.equal((await readAll(s)).toString(), 'bye');
  bridge.close();
  server.close();
});

test('bridge: grpc-js unary and streaming calls through it', async () => {
  const raw = { requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b };
  const service: grpc.ServiceDefinition = {
    Echo: { path: '/t.E/Echo', requestStream: false, responseStream: false, ...raw },
    Many: { path: '/t.E/Many', requestStream: false, responseStream: true, ...raw },
  };
  const server = new grpc.Server();
  server.addService(service, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
    Many: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 0; i < 32; i++) call.write(Buffer.alloc(64 * 1024, i));
      call.end();
    },
  });
  const p = sockPath();
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${p}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  const bridge = await openVsockBridge(3, 1024, { dial: () => native.unixConnect(p) });
  const Ctor = grpc.makeGenericClientConstructor(service, 'E');
  const client = new Ctor(bridge.target, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Function>;
  const echoed = await new Promise<Buffer>((resolve, reject) =>
    client.Echo(Buffer.from('through the bridge'), (err: Error | null, res: Buffer) => (err ? reject(err) : resolve(res))),
  );
  assert.equal(echoed.toString(), 'through the bridge');
  const chunks = await new Promise<Buffer[]>((resolve, reject) => {
    const out: Buffer[] = [];
    const call = client.Many(Buffer.alloc(0)) as grpc.ClientReadableStream<Buffer>;
    call.on('data', (b: Buffer) => out.push(b));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
  assert.equal(chunks.length, 32);
  chunks.forEach((c, i) => assert.ok(c.length === 64 * 1024 && c[0] === i));
  client.close();
  bridge.close();
  server.forceShutdown();
});

test('AgentClient.connect(vsock://) negotiates through the bridge and closes it with the client', async () => {
  // Agent side: any gRPC server on a unix socket stands in (the client must not depend on the agent's code).
  const server = new grpc.Server();
  let negotiated: NegotiateRequest__Output | undefined;
  server.addService(DiscoveryService.service, {
    Negotiate: (call: grpc.ServerUnaryCall<NegotiateRequest__Output, NegotiateResponse>, cb: grpc.sendUnaryData<NegotiateResponse>) => {
      negotiated = call.request;
      cb(null, { agent_version: '9.9.9', protocol_versions: ['v1'], selected_version: 'v1' });
    },
  });
  const p = sockPath();
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${p}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );

  const bridgeDirs = () => new Set(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('agent-vsock-')));
  const before = bridgeDirs();
  let dials = 0;
  const client = await AgentClient.connect('vsock://42:1024', {
    connectTimeout: 5,
    vsockBridge: { dial: () => (dials++, native.unixConnect(p)) },
  });
  assert.equal(client.agent.agent_version, '9.9.9');
  assert.equal(client.protocol, 'v1');
  // The client offers every version it speaks; this agent picked v1.
  assert.deepEqual(negotiated?.protocol_versions, ['v2', 'v1']);
  // The v1 service shares the channel: this fake agent does not implement it.
  await assert.rejects(client.v1('DestroySandbox', {}), (err: grpc.ServiceError) => err.code === grpc.status.UNIMPLEMENTED);
  assert.equal(dials, 1, 'one HTTP/2 connection for both services');

  const mine = [...bridgeDirs()].filter((n) => !before.has(n));
  assert.equal(mine.length, 1, 'connect opened one bridge');
  client.close();
  assert.equal(fs.existsSync(path.join(os.tmpdir(), mine[0]!)), false, 'the bridge went with client.close()');

  // A vsock address nobody answers: connect fails and leaves no bridge behind.
  const before2 = bridgeDirs();
  await assert.rejects(
    AgentClient.connect('vsock://42:1025', { connectTimeout: 1, vsockBridge: { dial: () => native.unixConnect(path.join(tmp, 'none.sock')) } }),
    /cannot reach the agent at vsock:\/\/42:1025/,
  );
  assert.deepEqual([...bridgeDirs()].filter((n) => !before2.has(n)), []);

  server.forceShutdown();
});
