// Bad input of every kind gets a clear status, and the agent keeps serving.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { AgentClient } from '../../src/client/client';
import { DiscoveryService } from '../../src/protocol';
import { startAgent, type TestAgent } from '../helpers/agent-process';
import { containerSpec } from '../helpers/spec';

describe('bad input', () => {
  let agent: TestAgent;
  let client: AgentClient;
  let raw: grpc.Client;

  before(async () => {
    agent = await startAgent({ args: ['--max-message-bytes', String(256 * 1024)] });
    client = await agent.connect();
    raw = new grpc.Client(`unix:${agent.addr.slice('unix://'.length)}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    raw?.close();
    client?.close();
    await agent?.stop();
  });

  /** Sends raw bytes to a method path and returns the status. */
  const rawCall = (path: string, bytes: Buffer) =>
    new Promise<grpc.ServiceError | null>((resolve) =>
      raw.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, bytes, (err) => resolve(err)),
    );

  const stillServes = async () => {
    assert.ok(agent.alive(), 'the agent process is still running');
    const again = await agent.connect();
    assert.equal(again.protocol, 'v1');
    again.close();
  };

  it('unknown container and exec ids are NOT_FOUND', async () => {
    await assert.rejects(client.v1('StartContainer', { container_id: 'ghost' }), { code: grpc.status.NOT_FOUND });
    await assert.rejects(client.v1('WaitProcess', { container_id: 'ghost', exec_id: 'x' }), { code: grpc.status.NOT_FOUND });
  });

  for (const id of ['', '..', '../etc', 'a/b', '-rf', 'x'.repeat(200), 'bad id', 'nul\0byte']) {
    it(`a malformed container id ${JSON.stringify(id).slice(0, 30)} is INVALID_ARGUMENT`, async () => {
      await assert.rejects(client.v1('StartContainer', { container_id: id }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.match(err.details, /container id/);
        return true;
      });
    });
  }

  it('a root file system outside the shared directory is INVALID_ARGUMENT', async () => {
    for (const rootPath of ['../../etc', '/etc', 'busybox/../../..']) {
      const spec = containerSpec({ rootPath, args: ['true'] });
      await assert.rejects(client.v1('CreateContainer', { container_id: 'esc', oci_spec_json: JSON.stringify(spec) }), {
        code: grpc.status.INVALID_ARGUMENT,
      });
    }
  });

  it('a symlink leading out of the shared directory is INVALID_ARGUMENT', async () => {
    const fs = await import('node:fs');
    fs.symlinkSync('/', `${agent.sharedDir}/escape`);
    const spec = containerSpec({ rootPath: 'escape', args: ['true'] });
    await assert.rejects(client.v1('CreateContainer', { container_id: 'esc', oci_spec_json: JSON.stringify(spec) }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /symlink/);
      return true;
    });
  });

  it('a bind mount from outside the shared directory is INVALID_ARGUMENT', async () => {
    const spec = containerSpec({ rootPath: 'busybox', args: ['true'] });
    (spec.mounts as object[]).push({ destination: '/host', type: 'bind', source: '/etc', options: ['rbind'] });
    await assert.rejects(client.v1('CreateContainer', { container_id: 'esc', oci_spec_json: JSON.stringify(spec) }), {
      code: grpc.status.INVALID_ARGUMENT,
    });
  });

  it('a spec that is not JSON, or lacks a process, is INVALID_ARGUMENT', async () => {
    await assert.rejects(client.v1('CreateContainer', { container_id: 'j', oci_spec_json: '{not json' }), {
      code: grpc.status.INVALID_ARGUMENT,
    });
    await assert.rejects(client.v1('CreateContainer', { container_id: 'j', oci_spec_json: '{"ociVersion":"1.0.2","root":{"path":"busybox"}}' }), {
      code: grpc.status.INVALID_ARGUMENT,
    });
  });

  it('malformed protobuf bytes are INVALID_ARGUMENT', async () => {
    // Field 1 with wire type 6, which does not exist. (protobufjs tolerates
    // truncated fields; what it decodes from them the id checks then refuse.)
    const err = await rawCall('/agent.v1.AgentService/CreateContainer', Buffer.from([0x0e]));
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err!.details, /CreateContainer request is not a valid protobuf message/);
    const truncated = await rawCall('/agent.v1.AgentService/CreateContainer', Buffer.from([0x0a, 0x64, 0x41, 0x0b]));
    assert.equal(truncated?.code, grpc.status.INVALID_ARGUMENT);
    await stillServes();
  });

  it('an unknown method and an unknown service are UNIMPLEMENTED', async () => {
    assert.equal((await rawCall('/agent.v1.AgentService/NoSuchMethod', Buffer.alloc(0)))?.code, grpc.status.UNIMPLEMENTED);
    assert.equal((await rawCall('/agent.v9.AgentService/CreateContainer', Buffer.alloc(0)))?.code, grpc.status.UNIMPLEMENTED);
    await stillServes();
  });

  it('an oversized message is RESOURCE_EXHAUSTED', async () => {
    const big = Buffer.alloc(512 * 1024, 0x61);
    await assert.rejects(client.v1('WriteStdin', { container_id: 'c', exec_id: 'e', data: big }), {
      code: grpc.status.RESOURCE_EXHAUSTED,
    });
    await stillServes();
  });

  it('a signal number out of range is INVALID_ARGUMENT', async () => {
    const spec = containerSpec({ rootPath: 'busybox', args: ['sleep', '100'] });
    await client.v1('CreateContainer', { container_id: 'sig', oci_spec_json: JSON.stringify(spec) });
    await client.v1('StartContainer', { container_id: 'sig' });
    await assert.rejects(client.v1('SignalProcess', { container_id: 'sig', exec_id: '', signal: 999 }), {
      code: grpc.status.INVALID_ARGUMENT,
    });
    await assert.rejects(client.v1('ExecProcess', { container_id: 'sig', exec_id: 'e', oci_process_json: '{"args":[]}' }), {
      code: grpc.status.INVALID_ARGUMENT,
    });
    await client.v1('RemoveContainer', { container_id: 'sig' });
  });

  it('Negotiate with no common version is FAILED_PRECONDITION', async () => {
    const d = new DiscoveryService(`unix:${agent.addr.slice('unix://'.length)}`, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      d.Negotiate({ client_name: 't', client_version: '9', protocol_versions: ['v7'] }, (e) => resolve(e)),
    );
    assert.equal(err?.code, grpc.status.FAILED_PRECONDITION);
    assert.match(err!.details, /no common protocol version/);
    d.close();
  });

  it('the agent survived all of it and counted the failures', async () => {
    await stillServes();
    const errors = agent.logs().filter((l) => l.msg === 'failed');
    assert.ok(errors.length > 10);
    assert.ok(!agent.logs().some((l) => l.msg === 'internal error'), 'no INTERNAL errors');
  });
});
