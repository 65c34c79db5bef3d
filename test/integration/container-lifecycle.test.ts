// A whole container lifecycle through the bundled agent, real crun and a
// busybox root file system, driven by the real client over a unix socket.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { AgentClient } from '../../src/client/client';
import { startAgent, type TestAgent } from '../helpers/agent-process';
import { containerSpec } from '../helpers/spec';
import { readToEnd, readUntil } from '../helpers/stdio';

const proc = (args: string[], extra: Record<string, unknown> = {}) => JSON.stringify({ args, ...extra });

describe('container lifecycle', () => {
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

  it('negotiates the highest version both serve (v2); the v1 calls below work on the same connection', () => {
    assert.equal(client.protocol, 'v2');
    assert.deepEqual(client.agent.protocol_versions, ['v1', 'v2']);
  });

  it('creates a sandbox with a hostname in its own UTS namespace', async () => {
    await client.v1('CreateSandbox', { hostname: 'sandbox-one', sandbox_id: 'sb1', dns: ['nameserver 10.0.2.3'] });
    await assert.rejects(client.v1('CreateSandbox', {}), { code: grpc.status.ALREADY_EXISTS });
  });

  it('runs init with stdin, stdout and an exit status', async () => {
    const spec = containerSpec({ rootPath: 'busybox', args: ['sh', '-c', 'echo ready; read line; echo got:$line; exit 4'] });
    await client.v1('CreateContainer', { container_id: 'c1', exec_id: 'c1', oci_spec_json: JSON.stringify(spec) });
    await client.v1('StartContainer', { container_id: 'c1' });
    assert.match(await readUntil(client, 'c1', '', /ready/), /ready/);
    const { len } = await client.v1('WriteStdin', { container_id: 'c1', exec_id: '', data: Buffer.from('ping\n') });
    assert.equal(len, 5);
    assert.equal(await readToEnd(client, 'c1', ''), 'got:ping\n');
    assert.equal((await client.v1('WaitProcess', { container_id: 'c1', exec_id: '' })).status, 4);
    // The init's status stays collectable until the container is removed.
    assert.equal((await client.v1('WaitProcess', { container_id: 'c1', exec_id: 'c1' })).status, 4);
    await client.v1('RemoveContainer', { container_id: 'c1' });
    await assert.rejects(client.v1('WaitProcess', { container_id: 'c1', exec_id: '' }), { code: grpc.status.NOT_FOUND });
  });

  describe('in a running container', () => {
    before(async () => {
      const spec = containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] });
      await client.v1('CreateContainer', { container_id: 'box', exec_id: 'box', oci_spec_json: JSON.stringify(spec) });
      await client.v1('StartContainer', { container_id: 'box' });
    });

    it('execs with pipes: stdout, stderr and exit code apart', async () => {
      await client.v1('ExecProcess', {
        container_id: 'box', exec_id: 'p1', oci_process_json: proc(['sh', '-c', 'echo out; echo err >&2; exit 3']),
      });
      assert.equal(await readToEnd(client, 'box', 'p1'), 'out\n');
      assert.equal(await readToEnd(client, 'box', 'p1', 'ReadStderr'), 'err\n');
      assert.equal((await client.v1('WaitProcess', { container_id: 'box', exec_id: 'p1' })).status, 3);
      // Collected and drained: the exec is gone.
      await assert.rejects(client.v1('WaitProcess', { container_id: 'box', exec_id: 'p1' }), { code: grpc.status.NOT_FOUND });
    });

    it('keeps output until it is read, even after the exit status was collected', async () => {
      await client.v1('ExecProcess', { container_id: 'box', exec_id: 'late', oci_process_json: proc(['echo', 'still here']) });
      assert.equal((await client.v1('WaitProcess', { container_id: 'box', exec_id: 'late' })).status, 0);
      assert.equal(await readToEnd(client, 'box', 'late'), 'still here\n');
    });

    it('execs with a TTY, and TtyWinResize reaches stty inside', async () => {
      await client.v1('ExecProcess', {
        container_id: 'box', exec_id: 't1', oci_process_json: proc(['sh'], { terminal: true }),
      });
      await client.v1('TtyWinResize', { container_id: 'box', exec_id: 't1', row: 37, column: 123 });
      await client.v1('WriteStdin', { container_id: 'box', exec_id: 't1', data: Buffer.from('stty size; exit 6\n') });
      const out = await readToEnd(client, 'box', 't1');
      assert.match(out, /37 123/);
      assert.equal((await client.v1('WaitProcess', { container_id: 'box', exec_id: 't1' })).status, 6);
      // A terminal has one stream: stderr ends at once.
      await assert.rejects(client.v1('TtyWinResize', { container_id: 'box', exec_id: 'nope', row: 1, column: 1 }), {
        code: grpc.status.NOT_FOUND,
      });
    });

    it('refuses to resize a process without a terminal', async () => {
      await client.v1('ExecProcess', { container_id: 'box', exec_id: 'np', oci_process_json: proc(['sleep', '1']) });
      await assert.rejects(client.v1('TtyWinResize', { container_id: 'box', exec_id: 'np', row: 10, column: 10 }), {
        code: grpc.status.FAILED_PRECONDITION,
      });
      await client.v1('WaitProcess', { container_id: 'box', exec_id: 'np' });
    });

    it('signals a process and reports 128 + signal', async () => {
      await client.v1('ExecProcess', { container_id: 'box', exec_id: 's1', oci_process_json: proc(['sleep', '100']) });
      await client.v1('SignalProcess', { container_id: 'box', exec_id: 's1', signal: 9 });
      assert.equal((await client.v1('WaitProcess', { container_id: 'box', exec_id: 's1' })).status, 137);
    });

    it('closes stdin so a reader sees end of input', async () => {
      await client.v1('ExecProcess', { container_id: 'box', exec_id: 'cat', oci_process_json: proc(['cat']) });
      await client.v1('WriteStdin', { container_id: 'box', exec_id: 'cat', data: Buffer.from('round trip') });
      await client.v1('CloseStdin', { container_id: 'box', exec_id: 'cat' });
      assert.equal(await readToEnd(client, 'box', 'cat'), 'round trip');
      assert.equal((await client.v1('WaitProcess', { container_id: 'box', exec_id: 'cat' })).status, 0);
    });

    it('back-pressures a process whose output nobody reads, and loses no byte', async () => {
      // 3 MiB, three times the agent's per-stream buffer.
      await client.v1('ExecProcess', {
        container_id: 'box', exec_id: 'big', oci_process_json: proc(['sh', '-c', 'head -c 3145728 /dev/zero | tr "\\0" x']),
      });
      await new Promise((r) => setTimeout(r, 1500));
      const text = await readToEnd(client, 'box', 'big');
      assert.equal(text.length, 3145728);
      assert.match(text, /^x+$/);
      assert.equal((await client.v1('WaitProcess', { container_id: 'box', exec_id: 'big' })).status, 0);
    });

    it('runs 50 execs at once', async () => {
      const ids = Array.from({ length: 50 }, (_, i) => `many-${i}`);
      const results = await Promise.all(ids.map(async (id, i) => {
        await client.v1('ExecProcess', { container_id: 'box', exec_id: id, oci_process_json: proc(['sh', '-c', `echo n${i}; exit ${i % 7}`]) });
        const out = await readToEnd(client, 'box', id);
        const { status } = await client.v1('WaitProcess', { container_id: 'box', exec_id: id });
        return { out, status };
      }));
      results.forEach((r, i) => {
        assert.equal(r.out, `n${i}\n`);
        assert.equal(r.status, i % 7);
      });
    });

    it('lists the container processes', async () => {
      const table = (await client.v1('ListProcesses', { container_id: 'box', format: 'table' })).process_list.toString();
      assert.match(table, /PID CMD/);
      assert.match(table, /sleep 1000/);
      const pids = JSON.parse((await client.v1('ListProcesses', { container_id: 'box', format: 'json' })).process_list.toString());
      assert.ok(Array.isArray(pids) && pids.length >= 1);
    });

    it('refuses pause without cgroups with a clear FAILED_PRECONDITION', async () => {
      await assert.rejects(client.v1('PauseContainer', { container_id: 'box' }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
        assert.match(err.details, /crun pause box/);
        return true;
      });
    });

    it('refuses a duplicate exec id and a second create of the same id', async () => {
      await client.v1('ExecProcess', { container_id: 'box', exec_id: 'dup', oci_process_json: proc(['sleep', '2']) });
      await assert.rejects(client.v1('ExecProcess', { container_id: 'box', exec_id: 'dup', oci_process_json: proc(['true']) }), {
        code: grpc.status.ALREADY_EXISTS,
      });
      const spec = containerSpec({ rootPath: 'busybox', args: ['true'] });
      await assert.rejects(client.v1('CreateContainer', { container_id: 'box', oci_spec_json: JSON.stringify(spec) }), {
        code: grpc.status.ALREADY_EXISTS,
      });
    });

    it('removes a running container and everything in it', async () => {
      await client.v1('RemoveContainer', { container_id: 'box' });
      await assert.rejects(client.v1('StartContainer', { container_id: 'box' }), { code: grpc.status.NOT_FOUND });
    });
  });

  it('undoes a create that fails half-way', async () => {
    const spec = containerSpec({ rootPath: 'busybox', args: ['true'] });
    // The agent's checks pass it; crun refuses it while creating the container.
    (spec.process as Record<string, unknown>).rlimits = [{ type: 'RLIMIT_BOGUS', hard: 1, soft: 1 }];
    await assert.rejects(client.v1('CreateContainer', { container_id: 'broken', oci_spec_json: JSON.stringify(spec) }), {
      code: grpc.status.FAILED_PRECONDITION,
    });
    // Nothing is left: the same id can be created properly.
    const good = containerSpec({ rootPath: 'busybox', args: ['true'] });
    await client.v1('CreateContainer', { container_id: 'broken', oci_spec_json: JSON.stringify(good) });
    await client.v1('RemoveContainer', { container_id: 'broken' });
  });

  it('logged an announce line and every call', () => {
    const logs = agent.logs();
    assert.ok(logs.some((l) => l.msg === 'announce' && Array.isArray(l.protocols)));
    assert.ok(logs.some((l) => l.rpc === 'CreateContainer' && l.version === 'v1'));
  });
});
