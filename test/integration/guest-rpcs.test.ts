// The guest RPCs end to end: the bundled agent (dist/agent.cjs), driven by
// the real client: GetGuestDetails, CopyFile into the shared directory (and
// refused outside it), SetGuestDateTime and OnlineCPUMem refused on this host,
// GetOOMEvent waiting until its deadline, and GetMetrics reporting the RPC
// counters (the real RpcMetrics, as rendered by the agent) of those calls.
// Nothing here changes the machine. The guest module itself is tested in
// src/agent/guest/guest.test.ts.
// Needs root and `npm run build`.
// Run: node --import tsx --test test/integration/guest-rpcs.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { STORAGE_DRIVER_NAMES } from '../../src/agent/storage/drivers';
import { AGENT_VERSION } from '../../src/agent/version';
import type { AgentClient } from '../../src/client/client';
import { startAgent, type TestAgent } from '../helpers/agent-process';

describe('guest RPCs through the bundled agent', () => {
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

  it('GetGuestDetails answers with the version and the host memory block size', async () => {
    const res = await client.v1('GetGuestDetails', { mem_block_size: true, mem_hotplug_probe: true });
    assert.equal(res.agent_details?.version, AGENT_VERSION);
    assert.equal(res.agent_details?.init_daemon, false);
    assert.deepEqual(res.agent_details?.storage_handlers, [...STORAGE_DRIVER_NAMES].sort());
    let expected = 0;
    try {
      expected = Number.parseInt(fs.readFileSync('/sys/devices/system/memory/block_size_bytes', 'utf8').trim(), 16);
    } catch {
      // No memory hotplug in this kernel: 0.
    }
    assert.equal(res.mem_block_size_bytes, expected);
    assert.equal(res.support_mem_hotplug_probe, fs.existsSync('/sys/devices/system/memory/probe'));
  });

  it('CopyFile writes a file in chunks inside the shared dir and refuses paths outside', async () => {
    const dest = path.join(agent.sharedDir, 'sbx-1', 'etc', 'resolv.conf');
    const body = Buffer.from('nameserver 10.0.0.1\nsearch example.org\n');
    const common = { path: dest, file_size: body.length, file_mode: 0o100600, dir_mode: 0o700, uid: 0, gid: 0 };
    await client.v1('CopyFile', { ...common, offset: 0, data: body.subarray(0, 20) });
    assert.equal(fs.existsSync(dest), false);
    await client.v1('CopyFile', { ...common, offset: 20, data: body.subarray(20) });
    assert.deepEqual(fs.readFileSync(dest), body);
    assert.equal(fs.statSync(dest).mode & 0o7777, 0o600);
    await assert.rejects(client.v1('CopyFile', { ...common, path: path.join(agent.sharedDir, '..', 'x'), offset: 0, data: body }),
      { code: grpc.status.INVALID_ARGUMENT });
    await assert.rejects(client.v1('CopyFile', { ...common, path: '/etc/agent-test-must-not-exist', offset: 0, data: body }),
      { code: grpc.status.INVALID_ARGUMENT, details: /outside the allowed root/ });
    assert.equal(fs.existsSync('/etc/agent-test-must-not-exist'), false);
    await assert.rejects(client.v1('CopyFile', { ...common, file_size: -1, offset: 0, data: Buffer.alloc(0) }),
      { code: grpc.status.INVALID_ARGUMENT, details: /file_size -1/ });
  });

  it('SetGuestDateTime and OnlineCPUMem are FAILED_PRECONDITION here, and the agent keeps serving', async () => {
    // Requests that would change nothing even if the guard were broken (sec -1 is invalid, 0 CPUs and
    // no memory is a no-op): a broken guard fails the test with another code, and the machine stays.
    await assert.rejects(client.v1('SetGuestDateTime', { sec: -1, usec: 0 }),
      { code: grpc.status.FAILED_PRECONDITION, details: /SetGuestDateTime refused/ });
    await assert.rejects(client.v1('OnlineCPUMem', { wait: true, nb_cpus: 0, cpu_only: true }),
      { code: grpc.status.FAILED_PRECONDITION, details: /OnlineCPUMem refused/ });
    await assert.rejects(client.v1('ReseedRandomDev', { data: Buffer.alloc(0) }), { code: grpc.status.INVALID_ARGUMENT });
    assert.ok(agent.alive());
    const res = await client.v1('GetGuestDetails', {});
    assert.equal(res.agent_details?.version, AGENT_VERSION);
  });

  it('GetOOMEvent waits (no container is OOM-killed) until the deadline, and the agent keeps serving', async () => {
    await assert.rejects(client.v1('GetOOMEvent', {}, { deadlineSeconds: 0.5 }), { code: grpc.status.DEADLINE_EXCEEDED });
    assert.ok(agent.alive());
  });

  it('GetMetrics reports the RPC counters of the calls above and the guest figures', async () => {
    const { metrics } = await client.v1('GetMetrics', {});
    assert.match(metrics, /^agent_rpc_calls_total\{version="v1",method="CopyFile",code="OK"\} 2$/m);
    assert.match(metrics, /^agent_rpc_calls_total\{version="v1",method="CopyFile",code="INVALID_ARGUMENT"\} 3$/m);
    assert.match(metrics, /^agent_rpc_calls_total\{version="v1",method="SetGuestDateTime",code="FAILED_PRECONDITION"\} 1$/m);
    assert.match(metrics, /^agent_rpc_calls_total\{version="v1",method="OnlineCPUMem",code="FAILED_PRECONDITION"\} 1$/m);
    assert.match(metrics, /^agent_process_resident_memory_bytes \d+$/m);
    assert.match(metrics, /^agent_process_open_fds \d+$/m);
    assert.match(metrics, /^guest_memory_total_bytes \d+$/m);
    assert.match(metrics, /^guest_memory_available_bytes \d+$/m);
    assert.match(metrics, /^agent_containers\{state="running"\} 0$/m);
  });
});
