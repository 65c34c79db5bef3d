// Block storages in the QEMU guest: a storage naming the guest's own root
// disk (/dev/vda, the read-only root image) is refused, by its node and by
// its PCI address, and mounts nothing; a disk attached for the sandbox
// (/dev/vdb) still mounts. The agent's mount table is read as
// /proc/1/mountinfo from a container that shares the guest's pid namespace.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SHARE_TAG, startVm, type Vm } from '../../build/vm';
import { AgentClient } from '../../src/client/client';
import type { Storage } from '../../src/generated/agent/v1/Storage';
import { makeBusyboxRootfs } from '../helpers/rootfs';
import { containerSpec } from '../helpers/spec';
import { readToEnd } from '../helpers/stdio';

const SHARED_IN_GUEST = '/run/kata-containers/shared/containers';
const SHARE: Storage = { driver: '9p', source: SHARE_TAG, fstype: '9p', options: [], mount_point: SHARED_IN_GUEST };
const ROOT_REFUSED = /^\/dev\/vda \(\d+:0\) is the device of the agent's root file system; only disks attached for the sandbox may be mounted$/;

const blk = (source: string, dir: string): Storage => ({
  driver: 'virtio-blk', source, fstype: 'ext4', options: ['ro'], driver_options: [], mount_point: `${SHARED_IN_GUEST}/${dir}`,
});

/** A guest spec with real cgroups; `guestPids`: in the guest's pid namespace (so /proc/1 is the agent), with sysfs. */
function guestSpec(id: string, args: string[], opts: { guestPids?: boolean; volume?: string } = {}) {
  const spec = containerSpec({ rootPath: 'busybox', args });
  const linux = spec.linux as { namespaces: Array<{ type: string }>; [k: string]: unknown };
  if (opts.guestPids) {
    linux.namespaces = linux.namespaces.filter((n) => n.type !== 'pid');
    (spec.mounts as object[]).push({ destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] });
  }
  if (opts.volume) (spec.mounts as object[]).push({ destination: '/data', type: 'bind', source: opts.volume, options: ['rbind', 'ro'] });
  linux.namespaces.push({ type: 'cgroup' });
  linux.cgroupsPath = `/agent/${id}`;
  return JSON.stringify(spec);
}

describe('block storages in the guest: the root disk is refused, an attached disk mounts', () => {
  let vm: Vm;
  let client: AgentClient;
  let shared: string;
  let disk: string;

  before(async () => {
    shared = fs.mkdtempSync(path.join(os.tmpdir(), 'guest-blk-'));
    makeBusyboxRootfs(path.join(shared, 'busybox'));
    const data = path.join(shared, '..', `${path.basename(shared)}-data`);
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'greeting.txt'), 'from the attached disk\n');
    disk = `${data}.img`;
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'root_owner=0:0', '-d', data, disk, '8M']);
    fs.rmSync(data, { recursive: true });
    // The allow-all policy: one container here looks at the agent's mounts from the guest's pid namespace.
    vm = await startVm({ sharedDir: shared, disks: [disk], kernelArgs: ['agent.log_level=debug', 'agent.policy=/etc/agent/policy-allow-all.json'] });
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

  /** Runs `args` in the inspecting container and returns its output; fails on a non-zero exit. */
  let execs = 0;
  const inspect = async (args: string[]): Promise<string> => {
    const exec_id = `look-${execs++}`;
    await client.v1('ExecProcess', { container_id: 'look', exec_id, oci_process_json: JSON.stringify({ args, cwd: '/', env: ['PATH=/bin'] }) });
    const out = await readToEnd(client, 'look', exec_id);
    const err = await readToEnd(client, 'look', exec_id, 'ReadStderr');
    assert.equal((await client.v1('WaitProcess', { container_id: 'look', exec_id })).status, 0, `${args.join(' ')}: ${err}`);
    return out;
  };
  /** The agent's mounts (device, root, mount point, type, source), without mount ids. */
  const agentMounts = async () =>
    (await inspect(['cat', '/proc/1/mountinfo'])).split('\n').filter(Boolean)
      .map((l) => { const f = l.split(' '); return `${f[2]} ${f[3]} ${f[4]} ${l.split(' - ')[1]}`; }).sort();
  const storageLogs = () => vm.console().split('\n').filter((l) => l.includes('"msg":"storage mounted"'));

  it('a sandbox whose storages name the root disk is refused, and the share mounted before it is undone', async () => {
    await assert.rejects(
      client.v1('CreateSandbox', { sandbox_id: 'sb', storages: [SHARE, blk('/dev/vda', 'root-again')] }),
      { code: grpc.status.FAILED_PRECONDITION, details: ROOT_REFUSED },
    );
    assert.ok(!storageLogs().some((l) => l.includes('root-again')), 'the root disk was never mounted');
    await client.v1('CreateSandbox', { sandbox_id: 'sb', storages: [SHARE] });
  });

  it('a container storage naming the root disk, by node or by PCI address, is refused and mounts nothing', async () => {
    await client.v1('CreateContainer', { container_id: 'look', exec_id: 'look', oci_spec_json: guestSpec('look', ['sleep', '1000'], { guestPids: true }) });
    await client.v1('StartContainer', { container_id: 'look' });
    const before = await agentMounts();
    const rootNumbers = before.find((m) => m.split(' ')[2] === '/')!.split(' ')[0]!;
    assert.match(rootNumbers, /^\d+:0$/, `the agent's root is a whole disk: ${rootNumbers}`);
    const sysPath = (await inspect(['readlink', '-f', `/sys/dev/block/${rootNumbers}`])).trim();
    assert.match(sysPath, /\/block\/vda$/);
    const pci = /\/([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\/virtio[0-9]+\/block\/vda$/.exec(sysPath)?.[1];
    assert.ok(pci, `no PCI address in ${sysPath}`);

    const spec = guestSpec('rootdisk', ['cat', '/data/etc/passwd'], { volume: `${SHARED_IN_GUEST}/root-again` });
    for (const source of ['/dev/vda', pci]) {
      await assert.rejects(
        client.v1('CreateContainer', { container_id: 'rootdisk', oci_spec_json: spec, storages: [blk(source, 'root-again')] }),
        { code: grpc.status.FAILED_PRECONDITION, details: ROOT_REFUSED },
      );
    }
    await assert.rejects(client.v1('StartContainer', { container_id: 'rootdisk' }), { code: grpc.status.NOT_FOUND });
    assert.deepEqual(await agentMounts(), before, 'the agent mounted nothing');
    assert.ok(!storageLogs().some((l) => l.includes('root-again')));
  });

  it('the disk attached for the sandbox (/dev/vdb) still mounts, and a container reads it', async () => {
    await client.v1('CreateContainer', {
      container_id: 'data', oci_spec_json: guestSpec('data', ['cat', '/data/greeting.txt'], { volume: `${SHARED_IN_GUEST}/data-disk` }),
      storages: [blk('/dev/vdb', 'data-disk')],
    });
    assert.ok((await agentMounts()).some((m) => / \/run\/kata-containers\/shared\/containers\/data-disk ext4 \/dev\/vdb /.test(`${m} `)));
    await client.v1('StartContainer', { container_id: 'data' });
    assert.equal(await readToEnd(client, 'data', ''), 'from the attached disk\n');
    assert.equal((await client.v1('WaitProcess', { container_id: 'data', exec_id: '' })).status, 0);
    await client.v1('RemoveContainer', { container_id: 'data' });
    assert.ok(!(await agentMounts()).some((m) => m.includes('data-disk')), 'unmounted on removal');
  });

  it('powers off at DestroySandbox', async () => {
    await client.v1('RemoveContainer', { container_id: 'look' });
    await client.v1('DestroySandbox', {});
    const code = await Promise.race([vm.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 30_000))]);
    assert.equal(code, 0);
    assert.doesNotMatch(vm.console(), /Kernel panic/);
  });
});
