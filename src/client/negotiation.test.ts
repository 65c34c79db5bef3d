// How AgentClient.connect picks a protocol version, against tiny servers that
// serve only some of the services: fallbacks to v1 (logged), clear errors
// naming both sides' versions, required capabilities, forced versions, and
// v2's status details decoded into AgentCallError. Run:
//   node --import tsx --test src/client/negotiation.test.ts
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AgentCallError, AgentClient, NegotiationError, ProtocolVersionError, type ClientLogger } from './client';
import { answer, failWith, negotiateAs, startFakeAgent, type FakeAgent } from './fake-agent.testing';

let agent: FakeAgent | null = null;
let client: AgentClient | null = null;
afterEach(async () => {
  client?.close();
  client = null;
  await agent?.close();
  agent = null;
});

function logger(): { log: ClientLogger; lines: Array<[string, string]> } {
  const lines: Array<[string, string]> = [];
  return { lines, log: (level, message) => lines.push([level, message]) };
}

const v1Only = { GetGuestDetails: answer({}) };
const v2Minimal = { ListContainers: answer({ containers: [] }) };

describe('negotiation', () => {
  it('uses v2 when Negotiate selects it and agent.v2.AgentService answers', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1', 'v2']), v1: v1Only, v2: v2Minimal });
    const { log, lines } = logger();
    client = await AgentClient.connect(agent.addr, { log });
    assert.equal(client.protocol, 'v2');
    assert.equal(client.negotiated.fallback, null);
    assert.deepEqual(agent.calls[0]!.request.protocol_versions, ['v2', 'v1']);
    // The probe that v2 is really served.
    assert.deepEqual(agent.calls.map((c) => `${c.service}.${c.method}`), ['discovery.Negotiate', 'v2.ListContainers']);
    assert.deepEqual(lines.filter(([l]) => l === 'warn'), []);
  });

  it('falls back to v1, and logs it, when Negotiate selects v2 but the v2 service is missing (UNIMPLEMENTED)', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1', 'v2']) });
    const { log, lines } = logger();
    client = await AgentClient.connect(agent.addr, { log });
    assert.equal(client.protocol, 'v1');
    assert.match(client.negotiated.fallback ?? '', /does not serve agent\.v2\.AgentService \(UNIMPLEMENTED/);
    const warns = lines.filter(([l]) => l === 'warn').map(([, m]) => m);
    assert.equal(warns.length, 1);
    assert.match(warns[0]!, /falling back to protocol v1/);
    // A v2-only call then says why it cannot be made.
    await assert.rejects(client.listContainers(), (err: unknown) => {
      assert.ok(err instanceof ProtocolVersionError);
      assert.match(err.message, new RegExp(`^listContainers needs protocol v2; the agent at ${agent!.addr} speaks v1 \\(version 9\\.8\\.7\\)`));
      return true;
    });
  });

  it('says nothing on stderr by default, even when it falls back', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1', 'v2']) });
    const written: string[] = [];
    const original = process.stderr.write;
    process.stderr.write = ((chunk: string | Uint8Array) => (written.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      client = await AgentClient.connect(agent.addr);
    } finally {
      process.stderr.write = original;
    }
    assert.equal(client.protocol, 'v1');
    assert.ok(client.negotiated.fallback);
    assert.deepEqual(written, []);
  });

  it('uses v1 without any fallback when Discovery answers v1 only', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1']), v1: v1Only });
    const { log, lines } = logger();
    client = await AgentClient.connect(agent.addr, { log });
    assert.equal(client.protocol, 'v1');
    assert.equal(client.negotiated.fallback, null);
    assert.deepEqual(lines.filter(([l]) => l === 'warn'), []);
    assert.deepEqual(agent.calls.map((c) => c.method), ['Negotiate'], 'nothing probed: v1 was selected by the agent');
    const watching = client.watchEvents();
    await assert.rejects(watching.next(), /^ProtocolVersionError: watchEvents needs protocol v2; the agent at unix:\/\/.* speaks v1 \(version 9\.8\.7\)$/);
    await assert.rejects(client.v2('ListContainers', {}), /needs protocol v2/);
  });

  it('falls back to v1 when the agent has no Discovery (UNIMPLEMENTED) but serves v1', async () => {
    agent = await startFakeAgent({ v1: v1Only });
    const { log, lines } = logger();
    client = await AgentClient.connect(agent.addr, { log });
    assert.equal(client.protocol, 'v1');
    assert.equal(client.agent.agent_version, 'unknown');
    assert.deepEqual(client.agent.protocol_versions, ['v1']);
    assert.match(client.negotiated.fallback ?? '', /has no agent\.Discovery \(Negotiate: UNIMPLEMENTED/);
    assert.equal(lines.filter(([l, m]) => l === 'warn' && /falling back to protocol v1/.test(m)).length, 1);
    assert.deepEqual(agent.calls.map((c) => `${c.service}.${c.method}`), ['v1.GetGuestDetails']);
  });

  it('falls back to v1 when Negotiate answers INVALID_ARGUMENT (as some servers do for an unknown service)', async () => {
    agent = await startFakeAgent({ discovery: { Negotiate: failWith(grpc.status.INVALID_ARGUMENT, 'unknown service agent.Discovery') }, v1: v1Only });
    client = await AgentClient.connect(agent.addr);
    assert.equal(client.protocol, 'v1');
    assert.match(client.negotiated.fallback ?? '', /INVALID_ARGUMENT: unknown service agent\.Discovery/);
  });

  it('falls back to v1 when the v2 probe answers INVALID_ARGUMENT', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1', 'v2']), v2: { ListContainers: failWith(grpc.status.INVALID_ARGUMENT, 'unknown service') } });
    client = await AgentClient.connect(agent.addr);
    assert.equal(client.protocol, 'v1');
  });

  it('keeps v2 when the probe is answered with another error (the service exists, e.g. PERMISSION_DENIED)', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1', 'v2']), v2: { ListContainers: failWith(grpc.status.PERMISSION_DENIED, 'denied by policy') } });
    client = await AgentClient.connect(agent.addr);
    assert.equal(client.protocol, 'v2');
  });

  it('fails, naming both sides, when the server serves nothing at all', async () => {
    agent = await startFakeAgent({});
    await assert.rejects(AgentClient.connect(agent.addr), (err: unknown) => {
      assert.ok(err instanceof NegotiationError);
      assert.match(err.message, /^no common protocol version: the agent at unix:\/\/\S+ has no agent\.Discovery .* does not serve agent\.v1\.AgentService either/);
      assert.match(err.message, /this client \(agent-client \S+\) speaks v2, v1/);
      return true;
    });
  });

  it('fails with both sides\' versions when there is no common version (FAILED_PRECONDITION)', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1']), v1: v1Only });
    await assert.rejects(AgentClient.connect(agent.addr, { protocols: ['v2'] }), (err: unknown) => {
      assert.ok(err instanceof NegotiationError);
      assert.match(err.message, /^no common protocol version with the agent at unix:\/\/\S+: this client \(agent-client \S+\) speaks v2; the agent \(version 9\.8\.7\) serves v1/);
      assert.deepEqual(err.sides.agentProtocols, ['v1']);
      assert.deepEqual(err.sides.clientProtocols, ['v2']);
      return true;
    });
  });

  it('does not fall back to v1 when the client was told to speak v2 only', async () => {
    agent = await startFakeAgent({ v1: v1Only });
    await assert.rejects(AgentClient.connect(agent.addr, { protocols: ['v2'] }), /no common protocol version: the agent at \S+ has no agent\.Discovery.*could only speak v1.*speaks v2;/);
    agent.calls.length = 0;
    await agent.close();
    agent = await startFakeAgent({ discovery: negotiateAs(['v1', 'v2']), v1: v1Only });
    await assert.rejects(AgentClient.connect(agent.addr, { protocols: ['v2'] }), (err: unknown) => {
      assert.ok(err instanceof NegotiationError);
      assert.match(err.message, /no usable common protocol version: .* selected v2 but does not serve agent\.v2\.AgentService/);
      assert.match(err.message, /speaks v2; the agent \(version 9\.8\.7\) serves v1, v2/);
      return true;
    });
  });

  it('speaks v1 when forced, and says so when a v2-only call is made', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1', 'v2']), v1: v1Only, v2: v2Minimal });
    client = await AgentClient.connect(agent.addr, { protocols: ['v1'] });
    assert.equal(client.protocol, 'v1');
    assert.deepEqual(agent.calls[0]!.request.protocol_versions, ['v1']);
    await assert.rejects(client.getContainer('c1'), /^ProtocolVersionError: getContainer needs protocol v2; this client speaks v1 with the agent at \S+ \(version 9\.8\.7, which serves v1, v2\): connect offering v2$/);
  });

  it('refuses an unknown protocol version or an empty list before calling anything', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1']) });
    await assert.rejects(AgentClient.connect(agent.addr, { protocols: ['v3' as never] }), /does not speak v3/);
    await assert.rejects(AgentClient.connect(agent.addr, { protocols: [] }), /no protocol version to offer/);
    assert.deepEqual(agent.calls, []);
  });

  it('fails when a required capability is missing, naming it and both versions; connects when it is there', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1', 'v2'], { capabilities: ['feature:tty'] }), v1: v1Only, v2: v2Minimal });
    await assert.rejects(AgentClient.connect(agent.addr, { require: ['feature:tty', 'feature:stream-output'] }), (err: unknown) => {
      assert.ok(err instanceof NegotiationError);
      assert.deepEqual(err.missingCapabilities, ['feature:stream-output']);
      assert.match(err.message, /lacks the capability feature:stream-output that this client requires \(protocol v2 in use; the agent reports feature:tty\)/);
      assert.match(err.message, /speaks v2, v1; the agent \(version 9\.8\.7\) serves v1, v2/);
      return true;
    });
    client = await AgentClient.connect(agent.addr, { require: ['feature:tty'] });
    assert.equal(client.protocol, 'v2');
  });

  it('a required capability is missing when the agent has no Discovery to report any', async () => {
    agent = await startFakeAgent({ v1: v1Only });
    await assert.rejects(AgentClient.connect(agent.addr, { require: ['feature:tty'] }), /lacks the capability feature:tty .*the agent reports no capabilities/);
  });

  it('passes other Negotiate failures on unchanged', async () => {
    agent = await startFakeAgent({ discovery: { Negotiate: failWith(grpc.status.PERMISSION_DENIED, 'nope') }, v1: v1Only });
    await assert.rejects(AgentClient.connect(agent.addr), (err: unknown) => (err as grpc.ServiceError).code === grpc.status.PERMISSION_DENIED);
  });
});

describe('AgentCallError', () => {
  it('decodes v2 status details into reason and metadata', async () => {
    agent = await startFakeAgent({
      discovery: negotiateAs(['v1', 'v2']),
      v2: { ...v2Minimal, GetContainer: failWith(grpc.status.NOT_FOUND, 'container c9 not found', 'NOT_FOUND', { container_id: 'c9' }) },
    });
    client = await AgentClient.connect(agent.addr);
    await assert.rejects(client.getContainer('c9'), (err: unknown) => {
      assert.ok(err instanceof AgentCallError);
      assert.equal(err.code, grpc.status.NOT_FOUND);
      assert.equal(err.codeName, 'NOT_FOUND');
      assert.equal(err.details, 'container c9 not found');
      assert.equal(err.reason, 'NOT_FOUND');
      assert.equal(err.domain, 'agent');
      assert.deepEqual(err.metadata, { container_id: 'c9' });
      assert.equal(err.method, 'v2.GetContainer');
      assert.equal(err.message, 'v2.GetContainer failed: NOT_FOUND: container c9 not found [NOT_FOUND]');
      return true;
    });
    // Raw v2 calls decode the same way.
    await assert.rejects(client.v2('GetContainer', { container_id: 'c9' }), (err: unknown) => err instanceof AgentCallError && err.reason === 'NOT_FOUND');
  });

  it('has reason null and no metadata for a status without details (v1), and carries the mutation\'s request id', async () => {
    agent = await startFakeAgent({
      discovery: negotiateAs(['v1', 'v2']),
      v1: { ...v1Only, StartContainer: failWith(grpc.status.FAILED_PRECONDITION, 'not created') },
      v2: { ...v2Minimal, StartContainer: failWith(grpc.status.FAILED_PRECONDITION, 'not created', 'FAILED_PRECONDITION') },
    });
    const v1 = await AgentClient.connect(agent.addr, { protocols: ['v1'] });
    try {
      await assert.rejects(v1.startContainer({ containerId: 'c1' }), (err: unknown) => {
        assert.ok(err instanceof AgentCallError);
        assert.equal(err.method, 'v1.StartContainer');
        assert.equal(err.reason, null);
        assert.deepEqual(err.metadata, {});
        return true;
      });
      // The raw v1 call still rejects with grpc-js's own error, as it always did.
      await assert.rejects(v1.v1('StartContainer', { container_id: 'c1' }), (err: unknown) =>
        !(err instanceof AgentCallError) && (err as grpc.ServiceError).code === grpc.status.FAILED_PRECONDITION);
    } finally {
      v1.close();
    }
    client = await AgentClient.connect(agent.addr);
    await assert.rejects(client.startContainer({ containerId: 'c1', requestId: 'req-7' }), (err: unknown) =>
      err instanceof AgentCallError && err.requestId === 'req-7' && err.reason === 'FAILED_PRECONDITION');
    assert.deepEqual(client.outstandingRequests(), [], 'a definite failure is not outstanding');
  });
});
