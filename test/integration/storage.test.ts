// Storages through the bundled agent (in its own mount namespace, see
// helpers/agent-process.ts): a sandbox tmpfs, container bind storages a
// container sees through its OCI spec, sharing between containers, undo on
// failure, and bad requests. What is mounted is read from the agent's own
// /proc/<pid>/mountinfo; the test's mount namespace never sees any of it.
// 9p and virtio-blk need the QEMU guest (test/guest); here a block storage is refused, the machine's
// own root disk by name. virtio-fs needs virtiofsd (untested).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { AgentClient } from '../../src/client/client';
import type { Storage } from '../../src/generated/agent/v1/Storage';
import { startAgent, type TestAgent } from '../helpers/agent-process';
import { containerSpec } from '../helpers/spec';
import { readToEnd } from '../helpers/stdio';

describe('storages', () => {
  let agent: TestAgent;
  let client: AgentClient;

  before(async () => {
    agent = await startAgent();
    client = await agent.connect();
    fs.mkdirSync(path.join(agent.sharedDir, 'host-data'));
    fs.writeFileSync(path.join(agent.sharedDir, 'host-data', 'hello.txt'), 'hello from a storage\n');
  });
  after(async () => {
    client?.close();
    await agent?.stop();
  });

  /** Mounts under the agent's temp dir, as "relative/path:fstype", from a mountinfo file. */
  const mountsIn = (mountinfo: string) =>
    fs.readFileSync(mountinfo, 'utf8').split('\n').filter(Boolean)
      .map((l) => ({ point: l.split(' ')[4]!, type: l.split(' - ')[1]!.split(' ')[0]! }))
      .filter((m) => m.point.startsWith(`${agent.dir}/`))
      .map((m) => `${path.relative(agent.dir, m.point)}:${m.type}`);
  const agentMounts = () => mountsIn(`/proc/${agent.child.pid}/mountinfo`);
  /** Every mount the agent sees (device, root, mount point, type, source), without the ids that a remount would change. */
  const agentMountinfo = () =>
    fs.readFileSync(`/proc/${agent.child.pid}/mountinfo`, 'utf8').split('\n').filter(Boolean)
      .map((l) => { const f = l.split(' '); return `${f[2]} ${f[3]} ${f[4]} ${l.split(' - ')[1]}`; }).sort();
  const shared = (p: string) => path.join(agent.sharedDir, p);
  const storage = (s: Storage): Storage => ({ driver: 'tmpfs', source: '', fstype: '', options: [], driver_options: [], ...s });
  const invalid = (message: RegExp) => ({ code: grpc.status.INVALID_ARGUMENT, details: message });
  /** The mount points the agent logged as `msg` ('storage mounted' / 'storage unmounted'), relative to the shared dir. */
  const logged = (msg: string) =>
    agent.logs().filter((l) => l['msg'] === msg).map((l) => path.relative(agent.sharedDir, String(l['mountPoint'])));
  const specWithVolume = (args: string[], volume: string | null) => {
    const spec = containerSpec({ rootPath: 'busybox', args });
    if (volume) (spec['mounts'] as object[]).push({ destination: '/vol', type: 'bind', source: volume, options: ['rbind', 'ro'] });
    return JSON.stringify(spec);
  };

  it('bad sandbox storages are INVALID_ARGUMENT, and nothing is mounted', async () => {
    const bad: Array<[Storage, RegExp]> = [
      [storage({ driver: 'nfs', mount_point: shared('x') }), /storages\[1\]\.driver "nfs" is unknown; this agent knows 9p, virtio-blk, virtio-fs, tmpfs, bind, overlay, local/],
      [storage({ mount_point: `${agent.sharedDir}/../x` }), /storages\[1\]\.mount_point .* contains "\.\."/],
      [storage({ mount_point: '/etc/agent-test' }), /storages\[1\]\.mount_point "\/etc\/agent-test" is outside the storage roots/],
      [storage({ mount_point: path.join(agent.stateDir, 'containers') }), /outside the storage roots/],
      [storage({ driver: 'virtio-blk', source: '0000:00:32.0', fstype: 'ext4', mount_point: shared('disk') }), /storages\[1\]\.source "0000:00:32.0" is neither a virtio block device node .* nor a PCI address/],
      [storage({ driver: 'bind', source: '/etc', mount_point: shared('etc') }), /storages\[1\]\.source "\/etc" is outside the storage roots/],
      [storage({ driver: '9p', source: '../tag', mount_point: shared('9p') }), /not a 9p mount tag/],
      [storage({ options: ['remount'], mount_point: shared('t') }), /option "remount" is not allowed/],
    ];
    for (const [s, message] of bad) {
      await assert.rejects(client.v1('CreateSandbox', { sandbox_id: 'sb', storages: [storage({ mount_point: shared('fine') }), s] }), invalid(message));
    }
    assert.deepEqual(agentMounts(), []);
    assert.ok(!fs.existsSync(shared('fine')));
  });

  it('a sandbox whose storages fail half-way mounts none of them', async () => {
    await assert.rejects(
      client.v1('CreateSandbox', {
        sandbox_id: 'sb',
        storages: [storage({ mount_point: shared('first') }), storage({ driver: 'overlay', options: ['lowerdir=no-such-layer'], mount_point: shared('second') })],
      }),
      { code: grpc.status.FAILED_PRECONDITION, details: /mounting overlay storage overlay on .*second .*failed: .*No such file or directory/ },
    );
    // The first one was mounted, then undone.
    assert.deepEqual(logged('storage mounted'), ['first']);
    assert.deepEqual(logged('storage unmounted'), ['first']);
    assert.deepEqual(agentMounts(), []);
    assert.ok(!fs.existsSync(shared('first')));
  });

  it("a block storage naming this machine's root disk, or any disk, is refused and nothing is mounted", async () => {
    // The agent is no guest init here: no disk may be mounted. Its own root disk is named as such.
    const before = agentMountinfo();
    const root = hostRootDisk();
    const cases: Array<[string, RegExp]> = [
      ['/dev/vdb', /virtio-blk storage \/dev\/vdb refused: the agent is not the guest's init, and outside the VM no disk of this machine may be mounted/],
      ['0000:00:1f.7', /virtio-blk storage PCI device 0000:00:1f.7 refused: the agent is not the guest's init/],
    ];
    if (root) {
      const rootMessage = new RegExp(`^${root.node} \\(${root.numbers}\\) is the device of the agent's root file system; only disks attached for the sandbox may be mounted$`);
      cases.push([root.node, rootMessage]);
      if (root.pci) cases.push([root.pci, rootMessage]);
    } else {
      cases.push(['/dev/vda', /refused: the agent is not the guest's init/]);
    }
    for (const [source, details] of cases) {
      const disk = storage({ driver: 'virtio-blk', source, fstype: 'ext4', options: ['ro'], mount_point: shared('disk') });
      await assert.rejects(
        client.v1('CreateSandbox', { sandbox_id: 'sb', storages: [storage({ mount_point: shared('before-disk') }), disk] }),
        { code: grpc.status.FAILED_PRECONDITION, details },
      );
      await assert.rejects(
        client.v1('CreateContainer', { container_id: 'disk', exec_id: 'disk', oci_spec_json: specWithVolume(['true'], null), storages: [disk] }),
        { code: grpc.status.FAILED_PRECONDITION, details },
      );
    }
    assert.deepEqual(agentMountinfo(), before, 'the agent mounted nothing');
    assert.ok(!fs.existsSync(shared('disk')) && !fs.existsSync(shared('before-disk')));
    assert.ok(!agent.logs().some((l) => l['msg'] === 'storage mounted' && String(l['mountPoint']).endsWith('disk')));
    await assert.rejects(client.v1('StartContainer', { container_id: 'disk' }), { code: grpc.status.NOT_FOUND });
  });

  it('CreateSandbox mounts its tmpfs storage, in the agent\'s mount namespace only', async () => {
    await client.v1('CreateSandbox', {
      sandbox_id: 'sb',
      hostname: 'storage-test',
      storages: [storage({ source: 'sandbox-tmp', options: ['size=1m', 'mode=0755'], mount_point: shared('sandbox-tmp') })],
    });
    assert.deepEqual(agentMounts(), ['shared/sandbox-tmp:tmpfs']);
    assert.deepEqual(mountsIn('/proc/self/mountinfo'), []);
  });

  it('GetGuestDetails lists the storage drivers', async () => {
    const res = await client.v1('GetGuestDetails', { mem_block_size: false, mem_hotplug_probe: false });
    assert.deepEqual(res.agent_details?.storage_handlers, ['9p', 'bind', 'local', 'overlay', 'tmpfs', 'virtio-blk', 'virtio-fs']);
  });

  it('a container sees a file through its bind storage; RemoveContainer unmounts it', async () => {
    await client.v1('CreateContainer', {
      container_id: 'c1',
      exec_id: 'c1',
      oci_spec_json: specWithVolume(['cat', '/vol/hello.txt'], shared('c1-vol')),
      storages: [storage({ driver: 'bind', source: 'host-data', options: ['ro', 'nosuid'], mount_point: shared('c1-vol') })],
    });
    assert.deepEqual(agentMounts().sort(), ['shared/c1-vol:' + fsTypeOf(agent.sharedDir), 'shared/sandbox-tmp:tmpfs']);
    await client.v1('StartContainer', { container_id: 'c1' });
    assert.equal(await readToEnd(client, 'c1', ''), 'hello from a storage\n');
    assert.equal((await client.v1('WaitProcess', { container_id: 'c1', exec_id: '' })).status, 0);
    await client.v1('RemoveContainer', { container_id: 'c1' });
    assert.deepEqual(agentMounts(), ['shared/sandbox-tmp:tmpfs']);
    assert.ok(!fs.existsSync(shared('c1-vol')), 'the mount point the agent made is removed');
  });

  it('bad container storages are INVALID_ARGUMENT and create no container', async () => {
    const spec = specWithVolume(['true'], null);
    await assert.rejects(
      client.v1('CreateContainer', { container_id: 'bad', exec_id: 'bad', oci_spec_json: spec, storages: [storage({ driver: 'bind', source: 'host-data/../../..', mount_point: shared('v') })] }),
      invalid(/storages\[0\]\.source .* contains "\.\."/),
    );
    await assert.rejects(
      client.v1('CreateContainer', { container_id: 'bad', exec_id: 'bad', oci_spec_json: spec, storages: [storage({ driver: 'overlay', options: ['lowerdir=/usr'], mount_point: shared('v') })] }),
      invalid(/lowerdir "\/usr" is outside the storage roots/),
    );
    await assert.rejects(
      client.v1('CreateContainer', { container_id: 'bad', exec_id: 'bad', oci_spec_json: spec, storages: [storage({ driver: 'virtio-blk', source: '/dev/sda', fstype: 'ext4', mount_point: shared('v') })] }),
      invalid(/"\/dev\/sda" is neither a virtio block device/),
    );
    await assert.rejects(
      client.v1('CreateContainer', { container_id: 'bad', exec_id: 'bad', oci_spec_json: spec, storages: [storage({ mount_point: shared('sandbox-tmp') })] }),
      { code: grpc.status.ALREADY_EXISTS, details: /sandbox-tmp already holds a different storage/ },
    );
    await assert.rejects(client.v1('StartContainer', { container_id: 'bad' }), { code: grpc.status.NOT_FOUND });
    assert.deepEqual(agentMounts(), ['shared/sandbox-tmp:tmpfs']);
  });

  it('a container whose runtime create fails unmounts the storages it mounted', async () => {
    // crun fails: the spec bind-mounts a source that does not exist.
    await assert.rejects(client.v1('CreateContainer', {
      container_id: 'broken',
      exec_id: 'broken',
      oci_spec_json: specWithVolume(['true'], shared('no-such-dir')),
      storages: [storage({ mount_point: shared('broken-tmp') }), storage({ driver: 'local', mount_point: shared('broken-local') })],
    }), (err: grpc.ServiceError) => err.code !== grpc.status.INVALID_ARGUMENT && /no-such-dir/.test(err.details));
    assert.deepEqual(logged('storage mounted').filter((m) => m.startsWith('broken')), ['broken-tmp', 'broken-local']);
    assert.deepEqual(logged('storage unmounted').filter((m) => m.startsWith('broken')), ['broken-local', 'broken-tmp']);
    assert.deepEqual(agentMounts(), ['shared/sandbox-tmp:tmpfs']);
    assert.deepEqual(fs.readdirSync(path.join(agent.stateDir, 'local')), []);
    await assert.rejects(client.v1('StartContainer', { container_id: 'broken' }), { code: grpc.status.NOT_FOUND });
  });

  it('two containers share a storage: it stays mounted until the last one is removed', async () => {
    const vol = storage({ driver: 'bind', source: 'host-data', options: ['ro'], mount_point: shared('pod-vol') });
    for (const id of ['c2', 'c3']) {
      await client.v1('CreateContainer', { container_id: id, exec_id: id, oci_spec_json: specWithVolume(['cat', '/vol/hello.txt'], shared('pod-vol')), storages: [vol] });
    }
    const podVol = `shared/pod-vol:${fsTypeOf(agent.sharedDir)}`;
    assert.deepEqual(agentMounts().filter((m) => m === podVol), [podVol], 'mounted once');
    await client.v1('RemoveContainer', { container_id: 'c2' });
    assert.ok(agentMounts().includes(podVol), 'c3 still uses it');
    await client.v1('StartContainer', { container_id: 'c3' });
    assert.equal(await readToEnd(client, 'c3', ''), 'hello from a storage\n');
    await client.v1('RemoveContainer', { container_id: 'c3' });
    assert.ok(!agentMounts().includes(podVol));
  });

  it('DestroySandbox unmounts the sandbox storages, and the agent keeps serving', async () => {
    await client.v1('CreateContainer', {
      container_id: 'left', exec_id: 'left', oci_spec_json: specWithVolume(['sleep', '1000'], null),
      storages: [storage({ driver: 'local', options: ['mode=0700'], mount_point: shared('left-local') })],
    });
    assert.equal(agentMounts().length, 2);
    await client.v1('DestroySandbox', {});
    assert.deepEqual(agentMounts(), []);
    assert.ok(!fs.existsSync(shared('sandbox-tmp')));
    assert.ok(agent.alive());
    await client.v1('CreateSandbox', { sandbox_id: 'again', storages: [storage({ mount_point: shared('sandbox-tmp') })] });
    assert.deepEqual(agentMounts(), ['shared/sandbox-tmp:tmpfs']);
  });
});

/** The file system type of the mount holding `dir` (what a bind mount of something in it shows). */
function fsTypeOf(dir: string): string {
  let best = { point: '', type: '' };
  for (const l of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)) {
    const point = l.split(' ')[4]!;
    if ((dir === point || dir.startsWith(point === '/' ? '/' : `${point}/`)) && point.length >= best.point.length) {
      best = { point, type: l.split(' - ')[1]!.split(' ')[0]! };
    }
  }
  return best.type;
}

/** This machine's root file system's disk when it is a /dev/vdX node (a VM's): its node, major:minor and PCI address. */
function hostRootDisk(): { node: string; numbers: string; pci: string | null } | null {
  const rootLine = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === '/');
  const numbers = rootLine?.split(' ')[2];
  if (!numbers || numbers.startsWith('0:')) return null;
  let dir: string;
  try {
    dir = fs.realpathSync(`/sys/dev/block/${numbers}`);
  } catch {
    return null;
  }
  const name = path.basename(dir);
  if (!/^vd[a-z]{1,3}[0-9]{0,3}$/.test(name) || !fs.existsSync(`/dev/${name}`)) return null;
  const pci = /\/([0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7])\/virtio[0-9]+\/block\/[^/]+$/.exec(dir)?.[1] ?? null;
  return { node: `/dev/${name}`, numbers, pci };
}
