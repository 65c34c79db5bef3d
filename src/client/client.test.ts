// The client closes what it opened when connecting fails. Run:
//   node --import tsx --test src/client/client.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { DiscoveryService } from '../protocol';
import { AgentClient } from './client';

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
});
