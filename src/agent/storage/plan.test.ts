// Validation of storage requests (no mounts here: see manager.test.ts) and
// the virtio-blk source lookup on a fake sysfs tree.
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentError } from '../errors';
import { constants } from '../../native/native';
import { blockNameForPci, parseBlockSource, resolveBlockDevice } from './block';
import { STORAGE_DRIVER_NAMES } from './drivers';
import { planStorage, planStorages, storageRoots, type StorageSpec } from './plan';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'storage-plan-')));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const shared = path.join(tmp, 'shared');
const state = path.join(tmp, 'state');
const roots = storageRoots(shared, state);
fs.mkdirSync(path.join(shared, 'data', 'sub'), { recursive: true });
fs.mkdirSync(path.join(shared, 'layers', 'l1'), { recursive: true });
fs.mkdirSync(path.join(shared, 'layers', 'l2'), { recursive: true });
fs.mkdirSync(roots.storageDir, { recursive: true });
fs.mkdirSync(path.join(state, 'containers'), { recursive: true });
fs.symlinkSync('/etc', path.join(shared, 'escape'));

const spec = (s: Partial<StorageSpec>): StorageSpec => ({
  driver: 'tmpfs', driverOptions: [], source: '', fstype: '', options: [], mountPoint: path.join(shared, 'mnt'), ...s,
});
const plan = (s: Partial<StorageSpec>) => planStorage(spec(s), roots, 'storages[0]');
const invalid = (fn: () => unknown, message?: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof AgentError, String(e));
    assert.equal(e.kind, 'invalid-argument', e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
const c = constants;

describe('storage validation: drivers and mount points', () => {
  it('an unknown driver names the known ones', () => {
    invalid(() => plan({ driver: 'nfs' }), new RegExp(`driver "nfs" is unknown; this agent knows ${STORAGE_DRIVER_NAMES.join(', ')}`));
    invalid(() => plan({ driver: '' }), /driver "" is unknown/);
    assert.deepEqual([...STORAGE_DRIVER_NAMES].sort(), ['9p', 'bind', 'local', 'overlay', 'tmpfs', 'virtio-blk', 'virtio-fs']);
  });

  it('driver_options are refused rather than ignored', () => {
    invalid(() => plan({ driverOptions: ['fsgid=5'] }), /driver_options .* not supported/);
  });

  it('mount points: inside the shared dir or <state>/storage, relative to the shared dir', () => {
    // The host share goes on the shared dir itself (Kata's kataShared).
    assert.equal(plan({ driver: '9p', source: 'kataShared', mountPoint: shared }).mountPoint, shared);
    assert.equal(plan({ mountPoint: `${shared}/` }).mountPoint, shared);
    assert.equal(plan({ mountPoint: roots.storageDir }).mountPoint, roots.storageDir);
    assert.equal(plan({ mountPoint: path.join(shared, 'a', 'b') }).mountPoint, path.join(shared, 'a', 'b'));
    assert.equal(plan({ mountPoint: 'rel/x' }).mountPoint, path.join(shared, 'rel', 'x'));
    assert.equal(plan({ mountPoint: path.join(roots.storageDir, 'upper') }).mountPoint, path.join(roots.storageDir, 'upper'));
  });

  it('refuses "..", paths outside the roots (the rest of the state dir too), symlinks out and NUL', () => {
    invalid(() => plan({ mountPoint: `${shared}/../x` }), /contains "\.\."/);
    invalid(() => plan({ mountPoint: '../x' }), /contains "\.\."/);
    invalid(() => plan({ mountPoint: '/etc/x' }), /outside the storage roots/);
    invalid(() => plan({ mountPoint: path.join(state, 'containers', 'c1') }), /outside the storage roots/);
    invalid(() => plan({ mountPoint: path.join(state, 'local', 'x') }), /outside the storage roots/);
    invalid(() => plan({ mountPoint: state }), /outside the storage roots/);
    invalid(() => plan({ mountPoint: tmp }), /outside the storage roots/);
    invalid(() => plan({ mountPoint: path.join(shared, 'escape', 'x') }), /through a symlink/);
    invalid(() => plan({ mountPoint: '' }), /empty/);
    invalid(() => plan({ mountPoint: `${shared}/a\0` }), /NUL/);
  });

  it('a request may not name one mount point twice', () => {
    const s = spec({});
    invalid(() => planStorages([s, { ...s, mountPoint: 'mnt' }], roots), /storages\[1\].mount_point .* is also storages\[0\]/);
  });

  it('the request fstype must match the driver, or be empty', () => {
    assert.equal(plan({ fstype: 'tmpfs' }).fstype, 'tmpfs');
    invalid(() => plan({ fstype: 'ext4' }), /does not match driver tmpfs/);
    assert.equal(plan({ driver: 'bind', source: 'data', fstype: 'bind' }).fstype, '');
  });
});

describe('storage validation: each driver', () => {
  it('9p: the source is a mount tag; default options, which a request may override', () => {
    const p = plan({ driver: '9p', source: 'kataShared', options: ['msize=8192', 'cache=mmap', 'nodev'] });
    assert.equal(p.source, 'kataShared');
    assert.equal(p.fstype, '9p');
    assert.equal(p.data, 'trans=virtio,version=9p2000.L,msize=8192,cache=mmap');
    assert.equal(p.flags, c.MS_NODEV);
    assert.equal(plan({ driver: '9p', source: 't' }).data, 'trans=virtio,version=9p2000.L,msize=262144');
    for (const source of ['', '/dev/x', '../t', 'a b', 'x'.repeat(37), '-t']) invalid(() => plan({ driver: '9p', source }), /mount tag/);
    invalid(() => plan({ driver: '9p', source: 't', options: ['lowerdir=/x'] }), /not an option of driver 9p/);
    invalid(() => plan({ driver: '9p', source: 't', fstype: 'virtiofs' }), /does not match/);
  });

  it('virtio-fs: the source is a tag, fstype virtiofs', () => {
    const p = plan({ driver: 'virtio-fs', source: 'kataShared', options: ['dax'] });
    assert.deepEqual([p.source, p.fstype, p.data], ['kataShared', 'virtiofs', 'dax']);
  });

  it('virtio-blk: a /dev/vdX node or a PCI address; the fstype is required', () => {
    assert.deepEqual(plan({ driver: 'virtio-blk', source: '/dev/vdb', fstype: 'ext4' }).device, { kind: 'node', name: 'vdb' });
    assert.deepEqual(plan({ driver: 'virtio-blk', source: '/dev/vdaa12', fstype: 'xfs' }).device, { kind: 'node', name: 'vdaa12' });
    const p = plan({ driver: 'virtio-blk', source: '0000:00:0A.0', fstype: 'ext4', options: ['ro', 'errors=remount-ro', 'discard'] });
    assert.deepEqual(p.device, { kind: 'pci', address: '0000:00:0a.0' });
    assert.deepEqual([p.fstype, p.flags, p.data], ['ext4', c.MS_RDONLY, 'errors=remount-ro,discard']);
    invalid(() => plan({ driver: 'virtio-blk', source: '/dev/vdb' }), /needs the file system type/);
    invalid(() => plan({ driver: 'virtio-blk', source: '/dev/vdb', fstype: 'Ext4;' }), /needs the file system type/);
    invalid(() => plan({ driver: 'virtio-blk', source: '/dev/vdb', fstype: 'ext4', options: ['journal_path=/dev/vdc'] }), /no path-valued options/);
  });

  it('virtio-blk: bad device names and PCI addresses are refused', () => {
    for (const source of [
      '', '/dev/sda', '/dev/vda/../sda', '/dev/../dev/vda', 'vda', '/dev/vd', '/dev/vdA',
      '0000:00:20.0', '0000:00:05.8', '00:05.0', '0000:0:05.0', '0000:00:05', '0000:00:05.0/../x', 'zzzz:00:05.0', '0000:00:05.0 ',
    ]) {
      invalid(() => plan({ driver: 'virtio-blk', source, fstype: 'ext4' }), /neither a virtio block device node .* nor a PCI address/);
    }
  });

  it('tmpfs: nosuid,nodev by default, tmpfs options only, a label as source', () => {
    const p = plan({ options: ['size=1m', 'mode=1777', 'noexec'] });
    assert.deepEqual([p.source, p.fstype, p.flags, p.data], ['tmpfs', 'tmpfs', c.MS_NOSUID | c.MS_NODEV | c.MS_NOEXEC, 'size=1m,mode=1777']);
    assert.equal(plan({ source: 'ephemeral' }).source, 'ephemeral');
    assert.equal(plan({ options: ['dev', 'suid'] }).flags, 0);
    invalid(() => plan({ source: '/etc' }), /not a label/);
    invalid(() => plan({ options: ['lowerdir=/'] }), /not an option of driver tmpfs; it takes size/);
    invalid(() => plan({ options: ['bind'] }), /bind\/rbind is only for the bind and local drivers/);
  });

  it('bind: the source inside the shared dir; flags need a remount', () => {
    const p = plan({ driver: 'bind', source: 'data', options: ['ro', 'nosuid'] });
    assert.equal(p.source, path.join(shared, 'data'));
    assert.equal(p.flags, c.MS_BIND | c.MS_REC);
    assert.equal(p.remountFlags, c.MS_REMOUNT | c.MS_BIND | c.MS_RDONLY | c.MS_NOSUID);
    assert.equal(plan({ driver: 'bind', source: path.join(shared, 'data', 'sub') }).remountFlags, 0);
    assert.equal(plan({ driver: 'bind', source: shared, options: ['rprivate'] }).propagation, c.MS_PRIVATE | c.MS_REC);
    invalid(() => plan({ driver: 'bind', source: '/etc' }), /outside the storage roots/);
    invalid(() => plan({ driver: 'bind', source: path.join(roots.storageDir, 'x') }), /outside the storage roots/);
    invalid(() => plan({ driver: 'bind', source: 'data/../../x' }), /contains "\.\."/);
    invalid(() => plan({ driver: 'bind', source: 'escape/passwd' }), /through a symlink/);
    invalid(() => plan({ driver: 'bind', source: 'data', options: ['size=1m'] }), /takes mount flags only/);
  });

  it('overlay: each layer inside the roots, resolved; upperdir and workdir together', () => {
    const upper = path.join(roots.storageDir, 'up');
    const p = plan({
      driver: 'overlay',
      options: [`lowerdir=layers/l1:${path.join(shared, 'layers', 'l2')}`, `upperdir=${upper}`, `workdir=${roots.storageDir}/work`, 'index=off'],
    });
    assert.deepEqual([p.source, p.fstype], ['overlay', 'overlay']);
    assert.equal(p.data, `lowerdir=${shared}/layers/l1:${shared}/layers/l2,upperdir=${upper},workdir=${roots.storageDir}/work,index=off`);
    invalid(() => plan({ driver: 'overlay', options: ['upperdir=u', 'workdir=w'] }), /needs lowerdir/);
    invalid(() => plan({ driver: 'overlay', options: ['lowerdir=layers/l1', 'upperdir=u'] }), /both upperdir and workdir/);
    invalid(() => plan({ driver: 'overlay', options: ['lowerdir=layers/l1:/etc'] }), /lowerdir\[1\] "\/etc" is outside the storage roots/);
    invalid(() => plan({ driver: 'overlay', options: ['lowerdir=layers/../..'] }), /contains "\.\."/);
    invalid(() => plan({ driver: 'overlay', options: ['lowerdir=layers/l1', 'upperdir=/tmp/u', 'workdir=w'] }), /upperdir "\/tmp\/u" is outside/);
    invalid(() => plan({ driver: 'overlay', options: ['lowerdir=layers/l1', 'lowerdir+=/etc'] }), /"lowerdir\+=\/etc" is not an option of driver overlay/);
    invalid(() => plan({ driver: 'overlay', options: ['lowerdir'] }), /lowerdir needs a path/);
    invalid(() => plan({ driver: 'overlay', options: ['lowerdir=a\\b'] }), /overlayfs would misread/);
  });

  it('local: a directory under <state>/local with a mode, bind-mounted', () => {
    const p = plan({ driver: 'local', options: ['mode=0750'] });
    assert.equal(p.local?.mode, 0o750);
    assert.equal(path.dirname(p.local!.dir), roots.localDir);
    assert.equal(p.source, p.local!.dir);
    assert.deepEqual([p.fstype, p.flags, p.data], ['', c.MS_BIND, '']);
    assert.equal(plan({ driver: 'local', source: 'local' }).local?.mode, 0o777);
    assert.notEqual(plan({ driver: 'local', mountPoint: 'a' }).local!.dir, plan({ driver: 'local', mountPoint: 'b' }).local!.dir);
    invalid(() => plan({ driver: 'local', source: '/etc' }), /must be empty or "local"/);
    invalid(() => plan({ driver: 'local', options: ['mode=999'] }), /not an octal mode/);
    invalid(() => plan({ driver: 'local', options: ['size=1'] }), /not an option of driver local/);
  });
});

describe('virtio-blk lookup (fake sysfs)', () => {
  const sys = path.join(tmp, 'sys');
  const dev = path.join(tmp, 'dev');
  fs.mkdirSync(dev);
  const plug = (addr: string, virtio: string, name: string) =>
    fs.mkdirSync(path.join(sys, 'bus', 'pci', 'devices', addr, virtio, 'block', name), { recursive: true });

  it('finds the block device under /sys/bus/pci/devices/<addr>/virtio*/block', async () => {
    plug('0000:00:05.0', 'virtio3', 'vdb');
    fs.mkdirSync(path.join(sys, 'bus', 'pci', 'devices', '0000:00:05.0', 'driver'), { recursive: true });
    assert.equal(await blockNameForPci('0000:00:05.0', sys), 'vdb');
    assert.equal(await blockNameForPci('0000:00:06.0', sys), null);
    plug('0000:00:07.0', 'virtio4', 'vdc');
    plug('0000:00:07.0', 'virtio5', 'vdd');
    await assert.rejects(blockNameForPci('0000:00:07.0', sys), /several block devices \(vdc, vdd\)/);
  });

  it('resolves to the /dev node once it is a block device, waiting for a hot-plug', async (t) => {
    const mknod = spawnSync('mknod', [path.join(dev, 'vdb'), 'b', '254', '16']);
    if (mknod.status !== 0) return t.skip(`mknod is not permitted here: ${String(mknod.stderr)}`);
    const lookup = { sysRoot: sys, devRoot: dev, timeoutMs: 2000, pollMs: 10 };
    assert.equal(await resolveBlockDevice(parseBlockSource('0000:00:05.0'), lookup), path.join(dev, 'vdb'));
    assert.equal(await resolveBlockDevice(parseBlockSource('/dev/vdb'), lookup), path.join(dev, 'vdb'));
    // Plugged while we wait.
    setTimeout(() => {
      plug('0000:00:09.0', 'virtio7', 'vde');
      spawnSync('mknod', [path.join(dev, 'vde'), 'b', '254', '64']);
    }, 100);
    assert.equal(await resolveBlockDevice(parseBlockSource('0000:00:09.0'), lookup), path.join(dev, 'vde'));
  });

  it('fails clearly when no device appears, or the node is no block device', async () => {
    const lookup = { sysRoot: sys, devRoot: dev, timeoutMs: 100, pollMs: 10 };
    const kind = (re: RegExp) => (e: unknown) => e instanceof AgentError && e.kind === 'failed-precondition' && re.test(e.message);
    await assert.rejects(resolveBlockDevice(parseBlockSource('0000:00:0b.0'), lookup), kind(/no virtio block device appeared under .*0000:00:0b.0 within 100 ms/));
    await assert.rejects(resolveBlockDevice(parseBlockSource('/dev/vdz'), lookup), kind(/block device .*vdz .* did not appear/));
    fs.writeFileSync(path.join(dev, 'vdy'), '');
    await assert.rejects(resolveBlockDevice(parseBlockSource('/dev/vdy'), lookup), kind(/exists but is not a block device/));
  });
});
