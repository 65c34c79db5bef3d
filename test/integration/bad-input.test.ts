// Bad input of every kind gets a clear status, and the agent keeps serving.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
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
    assert.equal(again.protocol, 'v2');
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
    // Field 1 with wire type 6, which does not exist.
    const err = await rawCall('/agent.v1.AgentService/CreateContainer', Buffer.from([0x0e]));
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err!.details, /CreateContainer request is not a valid protobuf message/);
    const truncated = await rawCall('/agent.v1.AgentService/CreateContainer', Buffer.from([0x0a, 0x64, 0x41, 0x0b]));
    assert.equal(truncated?.code, grpc.status.INVALID_ARGUMENT);
    await stillServes();
  });

  describe('strict decoding (bytes protobufjs alone would decode)', () => {
    // A raw client: bytes in, bytes out, nothing checked on the way.
    const identity = (b: Buffer) => b;
    const rawMethod = (name: string) => ({
      path: `/agent.v1.AgentService/${name}`, requestStream: false, responseStream: false,
      requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity,
    });
    const RawAgent = grpc.makeGenericClientConstructor({ CreateContainer: rawMethod('CreateContainer'), CopyFile: rawMethod('CopyFile') }, 'RawAgent');
    let rawAgent: grpc.Client & Record<string, (req: Buffer, cb: (err: grpc.ServiceError | null) => void) => void>;
    before(() => {
      rawAgent = new RawAgent(`unix:${agent.addr.slice('unix://'.length)}`, grpc.credentials.createInsecure()) as typeof rawAgent;
    });
    after(() => rawAgent?.close());
    const send = (method: 'CreateContainer' | 'CopyFile', bytes: Buffer) =>
      new Promise<grpc.ServiceError | null>((resolve) => rawAgent[method]!(bytes, (err) => resolve(err)));

    const varint = (n: number) => {
      const out: number[] = [];
      for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
      return [...out, n];
    };
    const lenField = (field: number, data: Buffer) => Buffer.concat([Buffer.from([...varint(field * 8 + 2), ...varint(data.length)]), data]);
    const varintField = (field: number, n: number) => Buffer.from([...varint(field * 8), ...varint(n)]);
    /** A string field that says it is 100 bytes long and carries `text`, placed last so nothing follows. */
    const cutShort = (field: number, text: string) => Buffer.concat([Buffer.from([field * 8 + 2, 100]), Buffer.from(text)]);
    const spec = Buffer.from(JSON.stringify(containerSpec({ rootPath: 'busybox', args: ['true'] })));

    it('a CreateContainer whose container_id is cut short creates no container', async () => {
      const err = await send('CreateContainer', Buffer.concat([lenField(3, spec), cutShort(1, 'cut')]));
      assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err!.details, /^the CreateContainer request is not a valid protobuf message: field 1 \(container_id: string\) of agent\.v1\.CreateContainerRequest at offset \d+: length 100 runs past the end of the enclosing message \(3 bytes left\)$/);
      // No container "cut": it is unknown, and the id is free.
      await assert.rejects(client.v1('ListProcesses', { container_id: 'cut', format: 'json' }), { code: grpc.status.NOT_FOUND });
      await assert.rejects(client.v1('StartContainer', { container_id: 'cut' }), { code: grpc.status.NOT_FOUND });
      assert.equal(await send('CreateContainer', Buffer.concat([lenField(3, spec), lenField(1, Buffer.from('cut'))])), null);
      await client.v1('RemoveContainer', { container_id: 'cut' });
    });

    it('a CopyFile whose path is cut short creates no file in the shared dir', async () => {
      const before = fs.readdirSync(agent.sharedDir).sort();
      const err = await send('CopyFile', Buffer.concat([varintField(2, 2), lenField(8, Buffer.from('hi')), cutShort(1, 'cut.txt')]));
      assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err!.details, /CopyFile request is not a valid protobuf message: field 1 \(path: string\) of agent\.v1\.CopyFileRequest .*length 100 runs past/);
      assert.deepEqual(fs.readdirSync(agent.sharedDir).sort(), before, 'nothing was created');
      assert.equal(fs.existsSync(path.join(agent.sharedDir, 'cut.txt')), false);
      // The same request, well-formed, does write the file.
      assert.equal(await send('CopyFile', Buffer.concat([varintField(2, 2), lenField(8, Buffer.from('hi')), lenField(1, Buffer.from('cut.txt'))])), null);
      assert.equal(fs.readFileSync(path.join(agent.sharedDir, 'cut.txt'), 'utf8'), 'hi');
      fs.rmSync(path.join(agent.sharedDir, 'cut.txt'));
    });

    it('a wrong wire type, invalid UTF-8 and a malformed nested message are refused; an unknown field is not', async () => {
      const wrongWire = await send('CreateContainer', Buffer.concat([varintField(1, 5)]));
      assert.equal(wrongWire?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(wrongWire!.details, /field 1 \(container_id: string\).*wire type 0 \(varint\) where the schema says wire type 2/);
      const utf8 = await send('CreateContainer', Buffer.concat([lenField(3, spec), lenField(1, Buffer.from([0x63, 0xc3, 0x28]))]));
      assert.match(utf8?.details ?? '', /container_id: string.*is not valid UTF-8/);
      const nested = await send('CreateContainer', Buffer.concat([lenField(1, Buffer.from('n')), lenField(4, Buffer.from([0x1a, 0x05, 0x61]))]));
      assert.match(nested?.details ?? '', /field 3 \(source: string\) of agent\.v1\.Storage \(in agent\.v1\.CreateContainerRequest\.storages\).*length 5 runs past/);
      // A field from a newer client (number 99) is skipped; the request is then refused or served on its merits.
      const future = await send('CreateContainer', Buffer.concat([lenField(1, Buffer.from('fut')), lenField(3, spec), varintField(99, 1)]));
      assert.equal(future, null);
      await client.v1('RemoveContainer', { container_id: 'fut' });
    });

    it('grpc.health.v1 Check is decoded strictly too (a cut-short service name used to read as "" and answer SERVING)', async () => {
      const err = await rawCall('/grpc.health.v1.Health/Check', Buffer.from([0x0a, 0x64]));
      assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err!.details, /grpc\.health\.v1\.HealthCheckRequest/);
      assert.equal(await rawCall('/grpc.health.v1.Health/Check', Buffer.alloc(0)), null);
    });

    it('refusals are logged and counted like any failed call', async () => {
      const text = (await client.v1('GetMetrics', {})).metrics;
      assert.match(text, /agent_rpc_calls_total\{version="v1",method="CreateContainer",code="INVALID_ARGUMENT"\} \d+/);
      assert.match(text, /method="CopyFile",code="INVALID_ARGUMENT"/);
      assert.ok(agent.logs().some((l) => l.msg === 'failed' && l.rpc === 'CopyFile' && /not a valid protobuf message/.test(String(l.error))));
      await stillServes();
    });
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

// Invalid input is echoed as a short excerpt: a status message travels in a
// header, and clients cap headers (grpc C-core: 8 KiB), so an echo of a 64 KiB
// id used to reach the client as RESOURCE_EXHAUSTED. Its own agent, with the
// default message size limit, so a 1 MiB path fits in a request.
describe('capped echoes', () => {
  let agent: TestAgent;
  let client: AgentClient;
  before(async () => {
    agent = await startAgent();
    client = await agent.connect();
  });
  after(async () => {
    client?.close();
    await agent?.stop();
  });

  // Every call with a deadline: an agent that echoed megabytes could stall the channel.
  const v1: AgentClient['v1'] = (method, request) => client.v1(method, request, { deadlineSeconds: 20 });
  const short = (err: grpc.ServiceError) => {
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${grpc.status[err.code]}: ${err.details.slice(0, 200)}`);
    assert.ok(Buffer.byteLength(err.details) < 1024, `${Buffer.byteLength(err.details)} bytes of status message`);
    return true;
  };
  /** A call that must work on the same channel afterwards. */
  const nextCallWorks = async () => {
    const res = await v1('GetGuestDetails', { mem_block_size: false, mem_hotplug_probe: false });
    assert.ok(res.agent_details);
  };

  it('a 64 KiB container id is INVALID_ARGUMENT with a short message, and the channel keeps working', async () => {
    const id = 'x'.repeat(64 * 1024);
    for (const rpc of ['StartContainer', 'RemoveContainer', 'StatsContainer'] as const) {
      await assert.rejects(v1(rpc, { container_id: id }), (err: grpc.ServiceError) => {
        short(err);
        assert.match(err.details, /^container id "x{64}"\.\.\. \(65536 characters\) is invalid/);
        return true;
      });
      await nextCallWorks();
    }
    await assert.rejects(v1('CreateContainer', { container_id: id, oci_spec_json: '{}' }), short);
    await nextCallWorks();
  });

  it('a 1 MiB CopyFile path is INVALID_ARGUMENT with a short message, and the channel keeps working', async () => {
    const p = 'p'.repeat(1024 * 1024);
    await assert.rejects(v1('CopyFile', { path: p, file_size: 1, offset: 0, data: Buffer.from('x') }), (err: grpc.ServiceError) => {
      short(err);
      assert.match(err.details, /^CopyFile path "p{64}"\.\.\. \(1048576 characters\) is too long: 1048576 bytes, at most 4095$/);
      return true;
    });
    await nextCallWorks();
    // Long, but within PATH_MAX, with a name over NAME_MAX; and a symlink target of 64 KiB.
    await assert.rejects(v1('CopyFile', { path: `d/${'n'.repeat(3000)}`, file_size: 1, offset: 0, data: Buffer.from('x') }), short);
    await assert.rejects(
      v1('CopyFile', { path: 'link', file_mode: 0o120777, file_size: 65536, offset: 0, data: Buffer.from(`/${'t'.repeat(65535)}`) }),
      (err: grpc.ServiceError) => short(err) && /-> "\/t{63}"\.\.\. \(65536 characters\) points outside/.test(err.details),
    );
    assert.deepEqual(fs.readdirSync(agent.sharedDir), ['busybox'], 'nothing was created');
    await nextCallWorks();
  });

  it('other echoed fields are cut too: exec ids, storages, interface names, NUL and control characters', async () => {
    const big = 'y'.repeat(100 * 1024);
    await assert.rejects(v1('WaitProcess', { container_id: 'c', exec_id: big }), (err: grpc.ServiceError) => {
      // Either id may be looked at first; whatever is said is short.
      assert.ok(Buffer.byteLength(err.details) < 1024);
      return true;
    });
    const spec = JSON.stringify(containerSpec({ rootPath: 'busybox', args: ['true'] }));
    for (const storage of [{ driver: big }, { driver: 'local', source: big, mount_point: 'm' }, { driver: 'tmpfs', source: 'tmpfs', mount_point: big }]) {
      await assert.rejects(v1('CreateContainer', { container_id: 'st', oci_spec_json: spec, storages: [storage] }), short);
    }
    await assert.rejects(v1('ListProcesses', { container_id: 'no\nsuch\0id\x1b[2J' }), (err: grpc.ServiceError) => {
      short(err);
      assert.match(err.details, /^container id "no\\nsuch\\u0000id\\u001b\[2J" is invalid/);
      return true;
    });
    await nextCallWorks();
    assert.ok(agent.alive());
  });
});
