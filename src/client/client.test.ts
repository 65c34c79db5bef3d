// The client closes what it opened when connecting fails. Run:
//   node --import tsx --test src/client/client.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { DiscoveryService } from '../protocol';
import { AgentClient } from './client';
import { answer, negotiateAs, startFakeAgent } from './fake-agent.testing';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'client-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Every grpc client made while connecting, to look at its channel afterwards.
const made: grpc.Client[] = [];
const originalWaitForReady = grpc.Client.prototype.waitForReady;
beforeEach(() => {
  made.length = 0;
  grpc.Client.prototype.waitForReady = function (this: grpc.Client, ...args: Parameters<grpc.Client['waitForReady']>) {
    if (!made.includes(this)) made.push(this);
    return originalWaitForReady.apply(this, args);
  };
});
afterEach(() => {
  grpc.Client.prototype.waitForReady = originalWaitForReady;
  for (const c of made) c.close();
});

/** The states of the channels of the clients connect() made (each waits for ready first). */
function channelStates(): grpc.connectivityState[] {
  return made.map((c) => c.getChannel().getConnectivityState(false));
}

describe('AgentClient.connect failure paths', () => {
  it('closes its channel when nothing listens at the address', async () => {
    const addr = `unix://${path.join(tmp, 'nobody.sock')}`;
    await assert.rejects(AgentClient.connect(addr, { connectTimeout: 0.3 }), /cannot reach the agent/);
    assert.ok(made.length > 0, 'connect made a client');
    assert.deepEqual(channelStates(), made.map(() => grpc.connectivityState.SHUTDOWN));
  });

  it('closes its channel when Negotiate answers with an error', async () => {
    const server = new grpc.Server();
    server.addService(DiscoveryService.service, {
      Negotiate: (_call: unknown, callback: grpc.sendUnaryData<never>) =>
        callback({ code: grpc.status.FAILED_PRECONDITION, details: 'no common protocol version' }),
    });
    const sock = path.join(tmp, 'refuses.sock');
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    try {
      await assert.rejects(AgentClient.connect(`unix://${sock}`, { connectTimeout: 5 }), /no common protocol version/);
      assert.ok(made.length > 0, 'connect made a client');
      assert.deepEqual(channelStates(), made.map(() => grpc.connectivityState.SHUTDOWN));
    } finally {
      server.forceShutdown();
    }
  });

  it('retries the v2 probe refused with UNAVAILABLE too, then connects', async () => {
    let refusals = 2;
    const agent = await startFakeAgent({
      discovery: negotiateAs(['v1', 'v2']),
      v2: {
        ListContainers: ((_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
          refusals-- > 0 ? cb({ code: grpc.status.UNAVAILABLE, details: 'Stream refused by server' }) : cb(null, { containers: [] })) as grpc.UntypedHandleCall,
      },
    });
    try {
      const client = await AgentClient.connect(agent.addr, { connectTimeout: 10, retry: { initialDelayMs: 10 } });
      assert.equal(client.protocol, 'v2');
      assert.equal(agent.calls.filter((c) => c.method === 'ListContainers').length, 3, 'two refused, one answered');
      client.close();
    } finally {
      await agent.close();
    }
  });

  it('retries a Negotiate refused with UNAVAILABLE (an agent draining before an exec in place), then connects', async () => {
    const served = negotiateAs(['v1', 'v2']);
    let refusals = 2;
    const agent = await startFakeAgent({
      discovery: {
        Negotiate: ((call: unknown, cb: grpc.sendUnaryData<unknown>) => {
          if (refusals-- > 0) return cb({ code: grpc.status.UNAVAILABLE, details: 'Stream refused by server' });
          (served.Negotiate as (c: unknown, cb: grpc.sendUnaryData<unknown>) => void)(call, cb);
        }) as grpc.UntypedHandleCall,
      },
    });
    try {
      const client = await AgentClient.connect(agent.addr, { connectTimeout: 10, retry: { initialDelayMs: 10 } });
      assert.equal(client.agent.agent_version, '9.8.7');
      assert.equal(agent.calls.filter((c) => c.method === 'Negotiate').length, 3, 'two refused, one answered');
      client.close();
    } finally {
      await agent.close();
    }
  });

  it('ends its socket when the server never answers (a chardev whose guest is not reading: the socket would block the next client)', async () => {
    const sock = path.join(tmp, 'silent.sock');
    const ended: number[] = [];
    const server = net.createServer((s) => {
      s.resume(); // reads the preface, answers nothing
      s.on('end', () => ended.push(Date.now()));
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const t0 = Date.now();
      await assert.rejects(AgentClient.connect(`unix://${sock}`, { connectTimeout: 0.5 }), /cannot reach the agent/);
      for (const deadline = Date.now() + 5000; ended.length === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
      assert.equal(ended.length, 1, 'the connection was ended');
      assert.ok(ended[0]! - t0 < 3000);
    } finally {
      server.close();
    }
  });

  it('ends its sockets when closed', async () => {
    const agent = await startFakeAgent({ discovery: negotiateAs(['v2']), v2: { ListContainers: answer({ containers: [] }) } });
    const opened: net.Socket[] = [];
    const proxy = net.createServer((s) => {
      opened.push(s);
      const up = net.connect(agent.addr.replace(/^unix:\/\//, ''));
      s.pipe(up).pipe(s);
      s.on('error', () => up.destroy());
      up.on('error', () => s.destroy());
    });
    const front = path.join(tmp, 'closes-front.sock');
    await new Promise<void>((resolve) => proxy.listen(front, resolve));
    try {
      const client = await AgentClient.connect(`unix://${front}`, { connectTimeout: 5 });
      assert.equal(opened.length, 1);
      const closed = new Promise((resolve) => opened[0]!.once('close', resolve));
      client.close();
      await closed;
    } finally {
      proxy.close();
      await agent.close();
    }
  });
});
