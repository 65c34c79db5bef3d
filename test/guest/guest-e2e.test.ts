// The agent as PID 1 in a QEMU guest (TCG here), reached over the
// virtio-serial channel: a whole container lifecycle with real cgroups,
// storage over 9p, the guest network, orphans, bad input, vsock inside the
// guest, and a clean power-off at DestroySandbox.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SHARE_TAG, startVm, type Vm } from '../../build/vm';
import { AgentClient } from '../../src/client/client';
import { makeToolsRootfs } from '../helpers/guest-rootfs';
import { makeBusyboxRootfs } from '../helpers/rootfs';
import { containerSpec } from '../helpers/spec';
import { readToEnd } from '../helpers/stdio';

const SHARED_IN_GUEST = '/run/kata-containers/shared/containers';
const proc = (args: string[], extra: Record<string, unknown> = {}) => JSON.stringify({ args, ...extra });

/** A spec for the guest: real cgroups under /agent, and a cgroup namespace. */
function guestSpec(id: string, args: string[], extra: { terminal?: boolean; pidNamespace?: boolean; root?: string } = {}) {
  const spec = containerSpec({ rootPath: extra.root ?? 'busybox', args, terminal: extra.terminal });
  const linux = spec.linux as { namespaces: Array<{ type: string }>; [k: string]: unknown };
  // Without a pid namespace the container shares the guest's pids and, here, its hostname too.
  if (extra.pidNamespace === false) {
    linux.namespaces = linux.namespaces.filter((n) => n.type !== 'pid' && n.type !== 'uts');
    delete spec.hostname;
  }
  linux.namespaces.push({ type: 'cgroup' });
  linux.cgroupsPath = `/agent/${id}`;
  linux.resources = { memory: { limit: 256 * 1024 * 1024 }, pids: { limit: 200 } };
  return JSON.stringify(spec);
}

describe('agent as PID 1 in a QEMU guest', () => {
  let vm: Vm;
  let client: AgentClient;
  let shared: string;
  let disk: string;

  before(async () => {
    shared = fs.mkdtempSync(path.join(os.tmpdir(), 'guest-shared-'));
    makeBusyboxRootfs(path.join(shared, 'busybox'));
    makeToolsRootfs(path.join(shared, 'tools'));
    // A data disk: an ext4 image holding one file, for the virtio-blk storage driver.
    const data = path.join(shared, '..', `${path.basename(shared)}-data`);
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'greeting.txt'), 'from a virtio-blk disk\n');
    disk = `${data}.img`;
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', '-d', data, disk, '8M']);
    fs.rmSync(data, { recursive: true });
    // No host listens on the log port here (no vhost-vsock): the agent must say so and carry on.
    // The image's allow-all policy: these tests reach guest-wide behaviour on purpose (an orphan
    // re-parented to PID 1 needs a container in the guest's pid namespace). The default policy is
    // tested in foreign-boot.test.ts.
    vm = await startVm({
      sharedDir: shared, network: true, disks: [disk],
      kernelArgs: ['agent.log_level=debug', 'agent.log_vport=1025', 'agent.policy=/etc/agent/policy-allow-all.json'],
    });
    await vm.waitForConsole(/"msg":"announce"/, 90_000);
    client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60 });
  });

  after(async () => {
    client?.close();
    if (vm) {
      if (process.env.KEEP_CONSOLE) fs.copyFileSync(vm.consoleLog, process.env.KEEP_CONSOLE);
      await vm.stop();
    }
    if (shared) fs.rmSync(shared, { recursive: true, force: true });
    if (disk) fs.rmSync(disk, { force: true });
  });

  it('announced itself on the console as the guest init', () => {
    const announce = vm.console().split('\n').find((l) => l.includes('"msg":"announce"'))!;
    const entry = JSON.parse(announce.slice(announce.indexOf('{')));
    assert.equal(entry.pid, 1);
    assert.equal(entry.guestInit, true);
    // The kernel gives init 1024/4096 open files; PID 1 raised them to track thousands of processes.
    assert.ok(entry.fdLimit[0] >= 131072 && entry.fdLimit[1] >= 131072, `open-file limit ${JSON.stringify(entry.fdLimit)}`);
    assert.match(vm.console(), /logs go to the console only: the host log port is unreachable/);
  });

  it('negotiates over the virtio-serial channel', () => {
    assert.equal(client.protocol, 'v2');
  });

  it('serves many concurrent calls on the channel, and clients that come and go', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, () => client.v1('GetGuestDetails', {})));
    assert.ok(answers.every((a) => a.agent_details!.init_daemon));
    // QEMU's chardev serves one host connection at a time: hand it over, then take it back, ten times.
    client.close();
    for (let i = 0; i < 10; i++) {
      const c = await AgentClient.connect(vm.agentAddr, { connectTimeout: 30 });
      assert.equal(c.protocol, 'v2');
      c.close();
    }
    client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 30 });
  });

  it('creates the sandbox with a hostname and the 9p share', async () => {
    await client.v1('CreateSandbox', {
      hostname: 'guest-one',
      sandbox_id: 'sb',
      dns: ['nameserver 10.0.2.3'],
      storages: [{ driver: '9p', source: SHARE_TAG, fstype: '9p', options: [], mount_point: SHARED_IN_GUEST }],
    });
  });

  describe('a container', () => {
    before(async () => {
      await client.v1('CreateContainer', { container_id: 'web', exec_id: 'web', oci_spec_json: guestSpec('web', ['sleep', '1000']) });
      await client.v1('StartContainer', { container_id: 'web' });
    });

    it('execs with a TTY, and TtyWinResize reaches stty inside', async () => {
      await client.v1('ExecProcess', { container_id: 'web', exec_id: 'tty', oci_process_json: proc(['sh'], { terminal: true }) });
      await client.v1('TtyWinResize', { container_id: 'web', exec_id: 'tty', row: 41, column: 99 });
      await client.v1('WriteStdin', { container_id: 'web', exec_id: 'tty', data: Buffer.from('stty size; hostname; exit 7\n') });
      const out = await readToEnd(client, 'web', 'tty');
      assert.match(out, /41 99/);
      assert.equal((await client.v1('WaitProcess', { container_id: 'web', exec_id: 'tty' })).status, 7);
    });

    it('execs with pipes: stdin, stdout, stderr and the exit code', async () => {
      await client.v1('ExecProcess', { container_id: 'web', exec_id: 'p', oci_process_json: proc(['sh', '-c', 'read x; echo out:$x; echo err >&2; exit 3']) });
      await client.v1('WriteStdin', { container_id: 'web', exec_id: 'p', data: Buffer.from('hi\n') });
      assert.equal(await readToEnd(client, 'web', 'p'), 'out:hi\n');
      assert.equal(await readToEnd(client, 'web', 'p', 'ReadStderr'), 'err\n');
      assert.equal((await client.v1('WaitProcess', { container_id: 'web', exec_id: 'p' })).status, 3);
    });

    it('signals a process', async () => {
      await client.v1('ExecProcess', { container_id: 'web', exec_id: 's', oci_process_json: proc(['sleep', '100']) });
      await client.v1('SignalProcess', { container_id: 'web', exec_id: 's', signal: 15 });
      assert.equal((await client.v1('WaitProcess', { container_id: 'web', exec_id: 's' })).status, 143);
    });

    it('pauses and resumes through the cgroup freezer', async () => {
      await client.v1('PauseContainer', { container_id: 'web' });
      await client.v1('ResumeContainer', { container_id: 'web' });
      await client.v1('ExecProcess', { container_id: 'web', exec_id: 'after', oci_process_json: proc(['true']) });
      assert.equal((await client.v1('WaitProcess', { container_id: 'web', exec_id: 'after' })).status, 0);
    });

    it('reports stats from cgroup v2 and updates resources', async () => {
      const stats = await client.v1('StatsContainer', { container_id: 'web' });
      assert.match(stats.cgroup_path, /agent\/web/);
      assert.ok(Number(stats.memory!.usage_bytes) > 0);
      assert.equal(Number(stats.memory!.limit_bytes), 256 * 1024 * 1024);
      assert.equal(Number(stats.pids!.limit), 200);
      await client.v1('UpdateContainer', { container_id: 'web', resources_json: JSON.stringify({ pids: { limit: 50 } }) });
      assert.equal(Number((await client.v1('StatsContainer', { container_id: 'web' })).pids!.limit), 50);
    });

    it('removes the container', async () => {
      await client.v1('RemoveContainer', { container_id: 'web' });
      await assert.rejects(client.v1('StatsContainer', { container_id: 'web' }), { code: grpc.status.NOT_FOUND });
    });
  });

  it('reaps an orphan re-parented to PID 1: no zombie is left', async () => {
    // No pid namespace: the orphan's nearest reaper is the guest's init, the agent.
    await client.v1('CreateContainer', { container_id: 'host', oci_spec_json: guestSpec('host', ['sleep', '1000'], { pidNamespace: false }) });
    await client.v1('StartContainer', { container_id: 'host' });
    await client.v1('ExecProcess', { container_id: 'host', exec_id: 'o', oci_process_json: proc(['sh', '-c', 'sleep 0.5 & echo $!']) });
    const orphan = Number((await readToEnd(client, 'host', 'o')).trim());
    assert.equal((await client.v1('WaitProcess', { container_id: 'host', exec_id: 'o' })).status, 0);
    await new Promise((r) => setTimeout(r, 2500));
    await client.v1('ExecProcess', {
      container_id: 'host', exec_id: 'check',
      oci_process_json: proc(['sh', '-c', `cat /proc/${orphan}/stat 2>/dev/null || echo gone; grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l`]),
    });
    const [first, zombies] = (await readToEnd(client, 'host', 'check')).trim().split('\n');
    assert.equal(first, 'gone', `orphan ${orphan} still exists: ${first}`);
    assert.equal(zombies, '0');
    // The same container shares the guest's UTS namespace: CreateSandbox set its hostname.
    await client.v1('ExecProcess', { container_id: 'host', exec_id: 'name', oci_process_json: proc(['hostname']) });
    assert.equal((await readToEnd(client, 'host', 'name')).trim(), 'guest-one');
    await client.v1('RemoveContainer', { container_id: 'host' });
  });

  it('reaches its own vsock listener from inside the guest (vsock_loopback)', async () => {
    await client.v1('CreateContainer', { container_id: 'tools', oci_spec_json: guestSpec('tools', ['sleep', '1000'], { root: 'tools' }) });
    await client.v1('StartContainer', { container_id: 'tools' });
    await client.v1('ExecProcess', {
      container_id: 'tools', exec_id: 'ctl',
      oci_process_json: proc(['/usr/bin/agent', 'ctl', '--addr', 'vsock://1:1024', '--json', 'Negotiate'], { env: ['PATH=/bin:/usr/bin', 'HOME=/root'] }),
    });
    const out = await readToEnd(client, 'tools', 'ctl');
    const err = await readToEnd(client, 'tools', 'ctl', 'ReadStderr');
    assert.equal((await client.v1('WaitProcess', { container_id: 'tools', exec_id: 'ctl' })).status, 0, err);
    assert.equal(JSON.parse(out).selected_version, 'v2');
    await client.v1('RemoveContainer', { container_id: 'tools' });
  });

  it('mounts a virtio-blk disk as a container storage and unmounts it on removal', async () => {
    const spec = JSON.parse(guestSpec('disk', ['cat', '/data/greeting.txt']));
    spec.mounts.push({ destination: '/data', type: 'bind', source: `${SHARED_IN_GUEST}/disk-data`, options: ['rbind', 'ro'] });
    await client.v1('CreateContainer', {
      container_id: 'disk', oci_spec_json: JSON.stringify(spec),
      storages: [{ driver: 'virtio-blk', source: '/dev/vdb', fstype: 'ext4', options: ['ro'], mount_point: `${SHARED_IN_GUEST}/disk-data` }],
    });
    await client.v1('StartContainer', { container_id: 'disk' });
    assert.equal(await readToEnd(client, 'disk', ''), 'from a virtio-blk disk\n');
    await client.v1('RemoveContainer', { container_id: 'disk' });
  });

  it('sets the guest clock (only the guest init may)', async () => {
    const sec = Math.floor(Date.UTC(2031, 0, 2, 3, 4, 5) / 1000);
    await client.v1('SetGuestDateTime', { sec, usec: 0 });
    await client.v1('CreateContainer', { container_id: 'clock', oci_spec_json: guestSpec('clock', ['date', '+%s']) });
    await client.v1('StartContainer', { container_id: 'clock' });
    const seen = Number((await readToEnd(client, 'clock', '')).trim());
    assert.ok(seen >= sec && seen < sec + 60, `guest clock reads ${seen}, expected about ${sec}`);
    await client.v1('RemoveContainer', { container_id: 'clock' });
    await client.v1('SetGuestDateTime', { sec: Math.floor(Date.now() / 1000), usec: 0 });
  });

  it('reports a container killed by the OOM killer through GetOOMEvent', async () => {
    const spec = JSON.parse(guestSpec('hog', ['sh', '-c', 'sleep 1; head -c 200m /dev/zero | tail > /dev/null']));
    spec.linux.resources = { memory: { limit: 16 * 1024 * 1024, swap: 16 * 1024 * 1024 } };
    await client.v1('CreateContainer', { container_id: 'hog', oci_spec_json: JSON.stringify(spec) });
    await client.v1('StartContainer', { container_id: 'hog' });
    const event = await client.v1('GetOOMEvent', {}, { deadlineSeconds: 60 });
    assert.equal(event.container_id, 'hog');
    await client.v1('RemoveContainer', { container_id: 'hog' });
  });

  it('answers the other guest operations', async () => {
    // Both vCPUs are online already: nothing to do, and no error.
    await client.v1('OnlineCPUMem', { nb_cpus: 2, cpu_only: true });
    await client.v1('ReseedRandomDev', { data: Buffer.alloc(64, 7) });
    const metrics = (await client.v1('GetMetrics', {})).metrics;
    assert.match(metrics, /agent_process_resident_memory_bytes \d+/);
    assert.match(metrics, /guest_memory_total_bytes \d+/);
    assert.match(metrics, /agent_rpc_calls_total\{version="v1",method="CreateContainer",code="OK"\}/);
  });

  it('configures the virtio-net device', async () => {
    const before = await client.v1('ListInterfaces', {});
    const lo = before.interfaces.find((i) => i.name === 'lo');
    assert.ok(lo?.up, `init brought lo up: ${JSON.stringify(lo)}`);
    assert.deepEqual(lo.ip_addresses.map((a) => a.address).sort(), ['127.0.0.1', '::1'], `the kernel gave lo its addresses: ${JSON.stringify(lo)}`);
    const eth = before.interfaces.find((i) => i.hw_addr === '52:54:00:12:34:56');
    assert.ok(eth, `no virtio-net interface in ${JSON.stringify(before.interfaces.map((i) => i.name))}`);
    const updated = await client.v1('UpdateInterface', {
      interface: { name: eth.name, up: true, mtu: 1400, ip_addresses: [{ family: 'IP_FAMILY_V4', address: '10.0.2.15', mask: '24' }] },
    });
    assert.equal(Number(updated.interface!.mtu), 1400);
    await client.v1('UpdateRoutes', { routes: [{ dest: 'default', gateway: '10.0.2.2', device: eth.name }] });
    const routes = await client.v1('ListRoutes', {});
    assert.ok(routes.routes.some((r) => r.dest === 'default' && r.gateway === '10.0.2.2'));
  });

  it('answers bad input with a status and keeps serving', async () => {
    // QEMU's chardev takes one host connection at a time: hand the channel over, then take it back.
    client.close();
    const raw = new grpc.Client(`unix:${vm.agentAddr.slice('unix://'.length)}`, grpc.credentials.createInsecure());
    const call = (p: string, b: Buffer) =>
      new Promise<grpc.ServiceError | null>((resolve) => raw.makeUnaryRequest(p, (x: Buffer) => x, (x: Buffer) => x, b, (e) => resolve(e)));
    assert.equal((await call('/agent.v1.AgentService/CreateContainer', Buffer.from([0x0e])))?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal((await call('/agent.v1.AgentService/Nope', Buffer.alloc(0)))?.code, grpc.status.UNIMPLEMENTED);
    raw.close();
    client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 30 });
    assert.equal((await client.v1('GetGuestDetails', {})).agent_details!.init_daemon, true);
  });

  it('powers the VM off cleanly at DestroySandbox', async () => {
    await client.v1('DestroySandbox', {});
    const code = await Promise.race([vm.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 30_000))]);
    assert.equal(code, 0);
    assert.doesNotMatch(vm.console(), /Kernel panic/);
    assert.match(vm.console(), /reboot: Power down/);
  });
});
