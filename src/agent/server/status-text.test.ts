import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AgentError, invalidArgument } from '../errors';
import { silentLogger } from '../log';
import { RpcBoundary, toStatus } from './rpc';
import { RpcMetrics } from './rpc-metrics';
import { capStatusMessage, capStatusMessages, MAX_STATUS_BYTES } from './status-text';

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

describe('capStatusMessage', () => {
  it('leaves an ordinary message alone', () => {
    assert.equal(capStatusMessage('container "c1" not found'), 'container "c1" not found');
    assert.equal(capStatusMessage('é 日本 🙂'), 'é 日本 🙂');
  });

  it('cuts at MAX_STATUS_BYTES bytes (1 KiB), saying how long the message was', () => {
    const capped = capStatusMessage('x'.repeat(64 * 1024));
    assert.equal(MAX_STATUS_BYTES, 1024);
    assert.ok(bytes(capped) <= 1024, `${bytes(capped)} bytes`);
    assert.ok(bytes(capped) > 900);
    assert.match(capped, /^x+\.\.\. \(status message cut, 65536 bytes\)$/);
    assert.equal(capStatusMessage('y'.repeat(1024)), 'y'.repeat(1024), 'exactly the limit is not cut');
    assert.ok(bytes(capStatusMessage('z'.repeat(1025))) <= 1024);
  });

  it('counts bytes, not characters, and never cuts a character in half', () => {
    for (const ch of ['é', '日', '🙂']) {
      for (let pad = 0; pad < 4; pad++) {
        const capped = capStatusMessage('a'.repeat(pad) + ch.repeat(2000));
        assert.ok(bytes(capped) <= 1024, `${ch} ${pad}: ${bytes(capped)}`);
        assert.ok(!capped.includes('\ufffd'), 'no broken character');
        assert.ok(Buffer.from(capped, 'utf8').toString('utf8') === capped);
        assert.match(capped, new RegExp(`^a{${pad}}(${ch})+\\.\\.\\. \\(status message cut, ${pad + bytes(ch) * 2000} bytes\\)$`, 'u'));
      }
    }
  });

  it('replaces lone surrogates, which grpc-js cannot encode into the trailer (no status would be sent at all)', () => {
    const lone = 'Unexpected token \ud83d in JSON';
    assert.equal(capStatusMessage(lone), 'Unexpected token \ufffd in JSON');
    assert.equal(capStatusMessage('pair \ud83d\ude00 kept'), 'pair \ud83d\ude00 kept');
    assert.doesNotThrow(() => encodeURI(capStatusMessage(`x\udc00${'y'.repeat(5000)}\ud800`)));
  });

  it('replaces control characters: tab, CR, LF by a space, the others escaped', () => {
    assert.equal(capStatusMessage('crun said:\nline 2\r\n\tx\0y\x1b[31m\x7f\u0085'), 'crun said: line 2  \tx\\u0000y\\u001b[31m\\u007f\\u0085'.replace('\t', ' '));
    assert.match(capStatusMessage('\0'.repeat(100_000)), /^(\\u0000)+\.\.\. \(status message cut, 100000 bytes\)$/);
    assert.ok(bytes(capStatusMessage('\0'.repeat(100_000))) <= 1024);
  });
});

describe('the RPC boundary caps every status', () => {
  it('toStatus caps a core error message and an unexpected error, keeping the pointer to the log', () => {
    const core = toStatus(invalidArgument(`container id ${'x'.repeat(100_000)} is invalid`), 'StartContainer');
    assert.equal(core.code, grpc.status.INVALID_ARGUMENT);
    assert.ok(bytes(core.details) <= 1024);
    assert.match(core.details, /^container id x+\.\.\. \(status message cut, 100024 bytes\)$/);
    const internal = toStatus(new Error(`boom\n${'y'.repeat(1 << 20)}`), 'CopyFile');
    assert.equal(internal.code, grpc.status.INTERNAL);
    assert.ok(bytes(internal.details) <= 1024);
    assert.match(internal.details, /^CopyFile failed unexpectedly: boom y+\.\.\. \(status message cut, \d+ bytes\) \(details in the agent log\)$/);
  });

  it('a handler throwing a huge message yields a short status', async () => {
    const rpc = new RpcBoundary(silentLogger, new RpcMetrics());
    const handler = rpc.unary(() => { throw new AgentError('not-found', `container ${'c'.repeat(70_000)} not found`); });
    const call = { getPath: () => '/agent.v1.AgentService/StartContainer', once: () => undefined, request: {} } as unknown as grpc.ServerUnaryCall<unknown, unknown>;
    const err = await new Promise<Partial<grpc.StatusObject> | null>((resolve) => handler(call, ((e: Partial<grpc.StatusObject> | null) => resolve(e)) as grpc.sendUnaryData<unknown>));
    assert.equal(err?.code, grpc.status.NOT_FOUND);
    assert.ok(bytes(String(err?.details)) <= 1024);
  });
});

describe('capStatusMessages, the interceptor, in a real server', () => {
  let dir: string;
  let server: grpc.Server;
  let client: grpc.Client;
  const huge = `service ${'s'.repeat(64 * 1024)}\nunknown`;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'status-cap-'));
    server = new grpc.Server({ interceptors: [capStatusMessages()] });
    // Not behind the RPC boundary, like grpc-health-check echoing a service name.
    const method = (name: string) => ({
      path: `/t.T/${name}`, requestStream: false, responseStream: false,
      requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b,
    });
    server.addService({ Fail: method('Fail'), Ok: method('Ok') }, {
      Fail: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.NOT_FOUND, details: huge }),
      Ok: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from('fine')),
    });
    const sock = path.join(dir, 's.sock');
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    client = new grpc.Client(`unix:${sock}`, grpc.credentials.createInsecure());
  });
  after(() => {
    client?.close();
    server?.forceShutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const call = (name: string) =>
    new Promise<{ err: grpc.ServiceError | null; res?: Buffer }>((resolve) =>
      client.makeUnaryRequest(`/t.T/${name}`, (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (err, res) => resolve({ err, res })),
    );

  it('delivers the real status code with a short message, and the channel keeps working', async () => {
    const { err } = await call('Fail');
    assert.equal(err?.code, grpc.status.NOT_FOUND, `${err?.code} ${err?.details.slice(0, 100)}`);
    assert.ok(bytes(err!.details) <= 1024);
    assert.match(err!.details, /^service s+\.\.\. \(status message cut, 65552 bytes\)$/);
    const next = await call('Ok');
    assert.equal(next.err, null);
    assert.equal(next.res?.toString(), 'fine');
  });
});
