// Validation of storage requests (no mounts here: see manager.test.ts) and
// the virtio-blk source lookup and device checks on fake sysfs, /dev and /proc trees.
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentError } from '../errors';
import { constants } from '../../native/native';
import { blockDeviceForStorage, blockNameForPci, blockStoragesAllowed, devNo, diskFamily, parseBlockSource, parseMountinfo, resolveBlockDevice } from './block';
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

describe('virtio-blk: which devices may be mounted (fake sysfs, /dev and /proc)', () => {
  // Numbers from the local/experimental range (240), so no real device of the machine is named.
  const root = path.join(tmp, 'devices');
  const sys = path.join(root, 'sys');
  const dev = path.join(root, 'dev');
  const proc = path.join(root, 'proc');
  const lookup = { sysRoot: sys, devRoot: dev, procRoot: proc, timeoutMs: 0 };
  const DISKS: Record<string, [string, string[]]> = {
    vda: ['240:0', ['vda1:240:1', 'vda2:240:2']],
    vdb: ['240:16', ['vdb1:240:17', 'vdb2:240:18']],
    vdc: ['240:32', []],
    vdg: ['240:96', []],
    vdh: ['240:112', []],
  };
  let canMknod = true;
  const mknod = (name: string, type: 'b' | 'c', numbers: string) => {
    const r = spawnSync('mknod', [path.join(dev, name), type, ...numbers.split(':')]);
    if (r.status !== 0) canMknod = false;
  };
  fs.mkdirSync(path.join(sys, 'dev', 'block'), { recursive: true });
  fs.mkdirSync(dev, { recursive: true });
  for (const [disk, [numbers, parts]] of Object.entries(DISKS)) {
    const dir = path.join(sys, 'devices', 'pci0000:00', `virtio-${disk}`, 'block', disk);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'dev'), `${numbers}\n`);
    fs.symlinkSync(dir, path.join(sys, 'dev', 'block', numbers));
    mknod(disk, 'b', numbers);
    for (const p of parts) {
      const [name, ...n] = p.split(':');
      const partDir = path.join(dir, name!);
      fs.mkdirSync(partDir);
      fs.writeFileSync(path.join(partDir, 'dev'), `${n.join(':')}\n`);
      fs.writeFileSync(path.join(partDir, 'partition'), `${name!.slice(-1)}\n`);
      fs.symlinkSync(partDir, path.join(sys, 'dev', 'block', n.join(':')));
      mknod(name!, 'b', n.join(':'));
    }
  }
  // Another name for the root partition; a node with the root's number but no sysfs entry; a character device.
  fs.symlinkSync(path.join(dev, 'vda1'), path.join(dev, 'vde'));
  mknod('vdf', 'b', '240:1');
  mknod('vdz', 'c', '1:3');

  /** The agent's mountinfo: the root on vda1 (a partition), virtual file systems, and `extra` lines. */
  const line = (id: number, numbers: string, point: string, fstype: string, source: string) =>
    `${id} 1 ${numbers} / ${point} rw,relatime shared:${id} - ${fstype} ${source} rw`;
  const setMounts = (extra: string[] = []) => {
    fs.mkdirSync(path.join(proc, 'self', 'ns'), { recursive: true });
    fs.writeFileSync(path.join(proc, 'self', 'mountinfo'), [
      line(20, '0:21', '/proc', 'proc', 'proc'),
      line(21, '0:6', '/dev', 'devtmpfs', 'devtmpfs'),
      line(22, '240:1', '/', 'ext4', '/dev/vda1'),
      line(23, '0:30', '/run/kata-containers/shared/containers', '9p', 'kataShared'),
      ...extra,
    ].join('\n') + '\n');
  };
  /** A process in another mount namespace (a container) seeing `lines`; `sameNs`: in the agent's own. */
  const processSees = (pid: number, lines: string[], sameNs = false) => {
    fs.mkdirSync(path.join(proc, String(pid), 'ns'), { recursive: true });
    fs.rmSync(path.join(proc, String(pid), 'ns', 'mnt'), { force: true });
    fs.symlinkSync(sameNs ? 'mnt:[4026531840]' : `mnt:[${4026532000 + pid}]`, path.join(proc, String(pid), 'ns', 'mnt'));
    fs.writeFileSync(path.join(proc, String(pid), 'mountinfo'), lines.join('\n') + '\n');
  };
  fs.mkdirSync(path.join(proc, 'self', 'ns'), { recursive: true });
  fs.symlinkSync('mnt:[4026531840]', path.join(proc, 'self', 'ns', 'mnt'));
  setMounts();
  processSees(77, [line(300, '240:32', '/data', 'ext4', '/dev/vdc')]);
  // Same namespace as the agent: its view is the agent's own, and is not read again.
  processSees(78, [line(301, '240:112', '/elsewhere', 'ext4', '/dev/vdh')], true);

  const none = new Set<string>();
  const check = (source: string, own: ReadonlySet<string> = none) => blockDeviceForStorage(parseBlockSource(source), lookup, own);
  const refused = (re: RegExp) => (e: unknown) => {
    assert.ok(e instanceof AgentError, String(e));
    assert.equal(e.kind, 'failed-precondition', e.message);
    assert.match(e.message, re);
    return true;
  };
  const ATTACHED = /; only disks attached for the sandbox may be mounted$/;

  it('device numbers, mountinfo and disk families', async () => {
    assert.equal(devNo(BigInt((254 << 8) | 16)), '254:16');
    // Large minors and majors use the high bits (new_encode_dev).
    assert.equal(devNo((0x123n << 8n) | 0x45n | (0x678n << 20n) | (0x9n << 32n + 12n)), `${0x9123}:${0x67845}`);
    assert.deepEqual(parseMountinfo('36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n'), [
      { dev: '98:0', mountPoint: '/mnt two', fstype: 'ext3', source: '/dev/root' },
    ]);
    const family = await diskFamily('240:17', sys);
    assert.deepEqual([family.device, family.disk, [...family.names.values()].sort()], ['240:17', '240:16', ['vdb', 'vdb1', 'vdb2']]);
    assert.deepEqual((await diskFamily('240:99', sys)).names.size, 0, 'no sysfs entry: the device alone');
  });

  it('only the guest init, or a test with a device tree of its own, mounts block storages', async () => {
    assert.equal(blockStoragesAllowed({}), false, 'this test process is no guest init');
    assert.equal(blockStoragesAllowed({ devRoot: '/dev' }), false);
    assert.equal(blockStoragesAllowed({ devRoot: '/dev/./' }), false);
    assert.equal(blockStoragesAllowed({ devRoot: dev }), true);
    await assert.rejects(
      blockDeviceForStorage(parseBlockSource('/dev/vdq'), { timeoutMs: 5000 }, none),
      refused(/^virtio-blk storage \/dev\/vdq refused: the agent is not the guest's init, and outside the VM no disk of this machine may be mounted/),
    );
    await assert.rejects(
      blockDeviceForStorage(parseBlockSource('0000:00:1f.7'), { devRoot: '/dev' }, none),
      refused(/^virtio-blk storage PCI device 0000:00:1f.7 refused: the agent is not the guest's init/),
    );
  });

  it('on this machine, its own root disk is named as such (and refused)', async (t) => {
    const real = realRootDisk();
    if (!real) return t.skip('the root file system here is not on a /dev/vdX disk');
    await assert.rejects(blockDeviceForStorage(parseBlockSource(real.node), {}, none), refused(new RegExp(`^${real.node} \\(${real.numbers}\\) is the device of the agent's root file system${ATTACHED.source}`)));
    if (real.pci) {
      await assert.rejects(blockDeviceForStorage(parseBlockSource(real.pci), {}, none), refused(/is the device of the agent's root file system/));
    }
  });

  it('an attached disk and its partitions mount', async (t) => {
    if (!canMknod) return t.skip('mknod is not permitted here');
    setMounts();
    assert.equal(await check('/dev/vdb'), path.join(dev, 'vdb'));
    assert.equal(await check('/dev/vdb2'), path.join(dev, 'vdb2'));
  });

  it("refuses the agent's root device, its disk, a sibling partition and other names for it", async (t) => {
    if (!canMknod) return t.skip('mknod is not permitted here');
    setMounts();
    await assert.rejects(check('/dev/vda1'), refused(new RegExp(`^${dev}/vda1 \\(240:1\\) is the device of the agent's root file system${ATTACHED.source}`)));
    await assert.rejects(check('/dev/vda'), refused(/vda \(240:0\) is the disk of its partition vda1, the device of the agent's root file system; only disks/));
    await assert.rejects(check('/dev/vda2'), refused(/vda2 \(240:2\) shares the disk vda with vda1, the device of the agent's root file system/));
    await assert.rejects(check('/dev/vde'), refused(/vde \(240:1\) is the device of the agent's root file system/), 'a symlink to it');
    await assert.rejects(check('/dev/vdf'), refused(/vdf \(240:1\) is the device of the agent's root file system/), 'a node of the same number');
    // And a partition whose whole disk is the root.
    setMounts();
    fs.writeFileSync(path.join(proc, 'self', 'mountinfo'), line(22, '240:16', '/', 'ext4', '/dev/vdb') + '\n');
    await assert.rejects(check('/dev/vdb1'), refused(/vdb1 \(240:17\) is a partition of vdb, the disk of the agent's root file system/));
  });

  it('refuses a device some other mount of the agent stands on, by st_dev or by its source', async (t) => {
    if (!canMknod) return t.skip('mknod is not permitted here');
    setMounts([line(40, '240:112', '/srv', 'ext4', '/dev/vdh'), line(41, '0:55', '/var', 'btrfs', '/dev/vdg')]);
    await assert.rejects(check('/dev/vdh'), refused(/vdh \(240:112\) is the device of \/srv \(ext4 from \/dev\/vdh\), which the agent's storage manager did not mount; only disks/));
    await assert.rejects(check('/dev/vdg'), refused(/vdg \(240:96\) is the device of \/var \(btrfs from \/dev\/vdg\)/));
  });

  it('refuses a device mounted in another mount namespace', async (t) => {
    if (!canMknod) return t.skip('mknod is not permitted here');
    setMounts();
    await assert.rejects(check('/dev/vdc'), refused(/vdc \(240:32\) is the device of \/data in the mount namespace of process 77; a disk in use elsewhere is not mounted again$/));
  });

  it("the storage manager's own mounts: the same device or a sibling partition again, but never a disk with its partition", async (t) => {
    if (!canMknod) return t.skip('mknod is not permitted here');
    const mp = '/run/kata-containers/shared/containers/disk';
    setMounts([line(50, '240:17', mp, 'ext4', '/dev/vdb1')]);
    // A container sees the partition through a bind of the storage.
    processSees(79, [line(302, '240:17', '/vol', 'ext4', '/dev/vdb1')]);
    await assert.rejects(check('/dev/vdb1'), refused(/is the device of \/run\/kata-containers\/shared\/containers\/disk \(ext4 from \/dev\/vdb1\), which the agent's storage manager did not mount/));
    const own = new Set([mp]);
    assert.equal(await check('/dev/vdb1', own), path.join(dev, 'vdb1'));
    assert.equal(await check('/dev/vdb2', own), path.join(dev, 'vdb2'));
    await assert.rejects(check('/dev/vdb', own), refused(/vdb \(240:16\) is the disk of its partition vdb1, the device of .*\/disk, a storage the agent mounted; a disk and its partition are never mounted together/));
    fs.rmSync(path.join(proc, '79'), { recursive: true });
  });

  it('on a fake tree, a node naming a real mounted disk of this machine is still refused', async (t) => {
    const real = realRootDisk();
    if (!real || !canMknod) return t.skip('needs mknod and a block-device root file system');
    setMounts();
    mknod('vdr', 'b', real.numbers);
    await assert.rejects(check('/dev/vdr'), refused(new RegExp(`vdr \\(${real.numbers}\\) is the device of the agent's root file system`)));
  });

  it('refuses what is not a block device', async (t) => {
    if (!canMknod) return t.skip('mknod is not permitted here');
    await assert.rejects(check('/dev/vdz'), refused(/vdz \(for \/dev\/vdz\) exists but is not a block device/));
  });
});

/** This machine's root file system's device, when it is a whole /dev/vdX disk or partition: its node, number and PCI address. */
function realRootDisk(): { node: string; numbers: string; pci: string | null } | null {
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
