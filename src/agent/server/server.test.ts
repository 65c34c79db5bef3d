// Every method of every service the server serves decodes strictly: a guard
// that a service added later (a new protocol version) is wrapped too.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { AgentCore } from '../core';
import { silentLogger } from '../log';
import { NO_POLICY } from '../policy/policy';
import { packageDefinition } from '../../protocol';
import { decodeStatusDetails, STATUS_DETAILS_KEY } from '../../status-details';
import { withServedServices } from './reflection';
import { RpcMetrics } from './rpc-metrics';
import { createServer, type AgentServer } from './server';

/** Every service the protocol, health and reflection define: name and method paths. */
function definedServices(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [name, def] of Object.entries(withServedServices(packageDefinition()))) {
    const methods = Object.values(def as Record<string, { path?: unknown }>);
    if (methods.length > 0 && methods.every((m) => typeof m?.path === 'string')) out.set(name, methods.map((m) => m.path as string));
  }
  return out;
}

describe('the agent server', () => {
  let dir: string;
  let agentServer: AgentServer;
  let client: grpc.Client;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'server-'));
    // No handler runs in these tests: a core with what createServer reads is enough.
    const core = { config: { maxMessageBytes: 1 << 20, outputBufferBytes: 1 << 16 }, policy: NO_POLICY } as unknown as AgentCore;
    agentServer = createServer(core, new RpcMetrics(), silentLogger);
    const sock = path.join(dir, 's.sock');
    await new Promise<void>((resolve, reject) =>
      agentServer.server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    client = new grpc.Client(`unix:${sock}`, grpc.credentials.createInsecure());
  });
  after(() => {
    client?.close();
    agentServer?.server.forceShutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const rawCall = (p: string, bytes: Buffer) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const deadline = Date.now() + 10_000;
      client.makeUnaryRequest(p, (b: Buffer) => b, (b: Buffer) => b, bytes, { deadline }, (err) => resolve(err));
    });

  it('a malformed v2 request carries its reason in the status details; v1 and Discovery keep plain statuses', async () => {
    const details = (err: grpc.ServiceError | null) => {
      const bin = err?.metadata.get(STATUS_DETAILS_KEY)[0];
      return bin === undefined ? null : decodeStatusDetails(bin as Buffer);
    };
    const v2 = await rawCall('/agent.v2.AgentService/CreateContainer', Buffer.from([0x0e]));
    assert.equal(v2?.code, grpc.status.INVALID_ARGUMENT);
    const info = details(v2);
    assert.equal(info?.reason, 'INVALID_ARGUMENT');
    assert.equal(info?.domain, 'agent');
    assert.equal(info?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(info?.message ?? '', /agent\.v2\.CreateContainerRequest at offset 0: invalid wire type 6/);
    for (const p of ['/agent.v1.AgentService/CreateContainer', '/agent.Discovery/Negotiate']) {
      const plain = await rawCall(p, Buffer.from([0x0e]));
      assert.equal(plain?.code, grpc.status.INVALID_ARGUMENT, p);
      assert.equal(details(plain), null, p);
    }
  });

  it('answers malformed bytes with INVALID_ARGUMENT on every method of every service it serves', async () => {
    const served: string[] = [];
    for (const [name, paths] of definedServices()) {
      // Field 1 with wire type 6: no valid message of any type. Streaming methods answer a unary call the same way.
      const codes = await Promise.all(paths.map(async (p) => [p, (await rawCall(p, Buffer.from([0x0e])))?.code] as const));
      if (codes.every(([, code]) => code === grpc.status.UNIMPLEMENTED)) continue; // defined, not served
      served.push(name);
      for (const [p, code] of codes) assert.equal(code, grpc.status.INVALID_ARGUMENT, `${p}: ${code === undefined ? 'OK' : grpc.status[code]}`);
    }
    for (const name of ['agent.Discovery', 'agent.v1.AgentService', 'agent.v2.AgentService', 'grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection']) {
      assert.ok(served.includes(name), `${name} is served`);
    }
  });
});
