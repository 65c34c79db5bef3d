// StorageManager: reference counting and undo with a recording stand-in for
// mount(2), in this process; then real mounts (tmpfs, bind, overlay, local)
// in a child node process inside a private mount namespace
// (unshare -m --propagation private), so nothing is ever mounted in the
// machine's own mount namespace.
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentError } from '../errors';
import { silentLogger } from '../log';
import { ownsNamespace } from '../machine';
import { constants, type NativeError } from '../../native/native';
import { StorageManager, type Mounter } from './manager';
import type { StorageSpec } from './plan';
import { isKind } from '../errors.testing';

const REPO = path.resolve(__dirname, '..', '..', '..');
const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'storage-manager-')));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Records calls; `mounted` is what a kernel would have mounted. */
class FakeMounter implements Mounter {
  calls: string[] = [];
  mounted = new Set<string>();
  failMount: (target: string, fstype: string) => string | null = () => null;
  failUmount: (target: string, flags: number) => string | null = () => null;
  allowed = true;
  ensureAllowed(action: string): void {
    if (!this.allowed) throw new AgentError('failed-precondition', `${action} refused`);
  }
  mount(source: string, target: string, fstype: string, flags: number, data: string): void {
    this.calls.push(`mount ${source} ${path.basename(target)} ${fstype} ${flags} ${data}`.trimEnd());
    const code = this.failMount(target, fstype);
    if (code) throw Object.assign(new Error(`mount ${target}: ${code}`), { code, errno: 1, syscall: 'mount' }) as NativeError;
    this.mounted.add(target);
  }
  umount(target: string, flags: number): void {
    this.calls.push(`umount ${path.basename(target)} ${flags}`);
    const code = this.failUmount(target, flags);
    if (code) throw Object.assign(new Error(`umount2 ${target}: ${code}`), { code, errno: 1, syscall: 'umount2' }) as NativeError;
    if (!this.mounted.delete(target)) throw Object.assign(new Error('not mounted'), { code: 'EINVAL', errno: 22, syscall: 'umount2' });
  }
}

let n = 0;
function setup() {
  const dir = path.join(tmp, `t${n++}`);
  const shared = path.join(dir, 'shared');
  const state = path.join(dir, 'state');
  fs.mkdirSync(path.join(shared, 'data'), { recursive: true });
  fs.mkdirSync(state, { recursive: true });
  const mounter = new FakeMounter();
  const manager = new StorageManager({ sharedDir: shared, stateDir: state, log: silentLogger, mounter });
  return { shared, state, mounter, manager };
}

const tmpfs = (mountPoint: string, options: string[] = []): StorageSpec => ({
  driver: 'tmpfs', driverOptions: [], source: '', fstype: '', options, mountPoint,
});
const bind = (source: string, mountPoint: string, options: string[] = []): StorageSpec => ({
  driver: 'bind', driverOptions: [], source, fstype: '', options, mountPoint,
});

describe('StorageManager (recorded mounts)', () => {
  const c = constants;

  it('mounts in order, creates the mount points, and unmounts newest first', async () => {
    const { shared, mounter, manager } = setup();
    const got = await manager.acquire('sandbox', [tmpfs('a/b/c', ['size=1m']), bind('data', 'd', ['ro'])]);
    assert.deepEqual(got.map((g) => [g.driver, g.mountPoint, g.owners]), [
      ['tmpfs', path.join(shared, 'a/b/c'), ['sandbox']],
      ['bind', path.join(shared, 'd'), ['sandbox']],
    ]);
    assert.deepEqual(mounter.calls, [
      `mount tmpfs c tmpfs ${c.MS_NOSUID | c.MS_NODEV} size=1m`,
      `mount ${path.join(shared, 'data')} d  ${c.MS_BIND | c.MS_REC}`,
      `mount  d  ${c.MS_REMOUNT | c.MS_BIND | c.MS_RDONLY}`,
    ]);
    assert.ok(fs.statSync(path.join(shared, 'a/b/c')).isDirectory());
    mounter.calls = [];
    await manager.release('sandbox');
    assert.deepEqual(mounter.calls, ['umount d 0', 'umount c 0']);
    // The directories the agent made are gone again; the shared dir's own content stays.
    assert.deepEqual(fs.readdirSync(shared), ['data']);
    assert.deepEqual(manager.list(), []);
  });

  it('two containers sharing a mount point: mounted once, unmounted with its last user', async () => {
    const { mounter, manager } = setup();
    await manager.acquire('container:c1', [bind('data', 'vol')]);
    await manager.acquire('container:c2', [bind('data', 'vol'), tmpfs('own')]);
    assert.equal(mounter.calls.filter((x) => x.startsWith('mount')).length, 2);
    assert.deepEqual(manager.list().map((m) => m.owners), [['container:c1', 'container:c2'], ['container:c2']]);
    await manager.release('container:c1');
    assert.equal(mounter.mounted.size, 2, 'c2 still uses vol');
    await manager.release('container:c2');
    assert.equal(mounter.mounted.size, 0);
    await manager.release('container:c2'); // nothing left: a no-op
  });

  it('concurrent acquires of one mount point mount it once', async () => {
    const { mounter, manager } = setup();
    await Promise.all([1, 2, 3].map((i) => manager.acquire(`container:c${i}`, [tmpfs('shared-tmp')])));
    assert.equal(mounter.calls.length, 1);
    assert.deepEqual(manager.list()[0]!.owners.sort(), ['container:c1', 'container:c2', 'container:c3']);
  });

  it('a different storage at a used mount point is ALREADY_EXISTS and changes nothing', async () => {
    const { mounter, manager } = setup();
    await manager.acquire('container:c1', [tmpfs('vol', ['size=1m'])]);
    await assert.rejects(manager.acquire('container:c2', [tmpfs('other'), tmpfs('vol', ['size=2m'])]), isKind('already-exists', /already holds a different storage/));
    assert.deepEqual([...mounter.mounted].map((m) => path.basename(m)), ['vol']);
    assert.deepEqual(manager.list().map((m) => m.owners), [['container:c1']]);
  });

  it('a failure half-way unmounts what the request mounted, keeps what others share, removes what it made', async () => {
    const { shared, mounter, manager } = setup();
    await manager.acquire('container:c1', [bind('data', 'common')]);
    mounter.failMount = (target) => (target.endsWith('third') ? 'ENODEV' : null);
    mounter.calls = [];
    await assert.rejects(
      manager.acquire('container:c2', [tmpfs('first/deep'), bind('data', 'common'), tmpfs('third')]),
      isKind('failed-precondition', /mounting tmpfs storage tmpfs on .*third \(tmpfs nosuid|mounting tmpfs storage tmpfs on .*third .*failed: .*ENODEV/),
    );
    assert.deepEqual(mounter.calls, [
      `mount tmpfs deep tmpfs ${c.MS_NOSUID | c.MS_NODEV}`,
      `mount tmpfs third tmpfs ${c.MS_NOSUID | c.MS_NODEV}`,
      'umount deep 0',
    ]);
    assert.deepEqual([...mounter.mounted].map((m) => path.basename(m)), ['common']);
    assert.deepEqual(manager.list().map((m) => m.owners), [['container:c1']]);
    assert.deepEqual(fs.readdirSync(shared).sort(), ['common', 'data']);
    // A failed second request of an owner leaves what the owner held before.
    await assert.rejects(manager.acquire('container:c1', [bind('data', 'common'), tmpfs('third')]), isKind('failed-precondition'));
    assert.deepEqual(manager.list().map((m) => m.owners), [['container:c1']]);
  });

  it('a failing remount (the second call of a read-only bind) detaches the half-made mount', async () => {
    const { shared, mounter, manager } = setup();
    mounter.failMount = (_t, fstype) => (fstype === '' && mounter.mounted.size > 0 ? 'EPERM' : null);
    await assert.rejects(manager.acquire('sandbox', [bind('data', 'ro-vol', ['ro'])]), isKind('failed-precondition', /EPERM/));
    assert.equal(mounter.calls.at(-1), `umount ro-vol ${c.MNT_DETACH}`);
    assert.deepEqual(fs.readdirSync(shared), ['data']);
  });

  it('a busy storage is detached (MNT_DETACH); a failed unmount stays owned for a retry', async () => {
    const { mounter, manager } = setup();
    await manager.acquire('sandbox', [tmpfs('busy'), tmpfs('stuck')]);
    mounter.failUmount = (target, flags) => (target.endsWith('busy') && flags === 0 ? 'EBUSY' : target.endsWith('stuck') ? 'EIO' : null);
    await assert.rejects(manager.release('sandbox'), isKind('failed-precondition', /could not be unmounted: .*stuck: umount2 .*EIO/));
    assert.ok(mounter.calls.includes(`umount busy ${c.MNT_DETACH}`));
    assert.deepEqual(manager.list().map((m) => [path.basename(m.mountPoint), m.owners]), [['stuck', ['sandbox']]]);
    mounter.failUmount = () => null;
    await manager.release('sandbox');
    assert.deepEqual(manager.list(), []);
  });

  it('releaseAll unmounts everything, whoever owns it', async () => {
    const { mounter, manager } = setup();
    await manager.acquire('sandbox', [tmpfs('s')]);
    await manager.acquire('container:x', [tmpfs('x')]);
    await manager.releaseAll();
    assert.deepEqual(mounter.calls.slice(-2), ['umount x 0', 'umount s 0']);
    assert.equal(mounter.mounted.size, 0);
  });

  it('a bind of a file mounts on a file the agent creates and removes', async () => {
    const { shared, mounter, manager } = setup();
    fs.writeFileSync(path.join(shared, 'data', 'hosts'), '127.0.0.1 x\n');
    await manager.acquire('sandbox', [bind('data/hosts', 'etc/hosts')]);
    assert.ok(fs.statSync(path.join(shared, 'etc', 'hosts')).isFile());
    assert.equal(mounter.mounted.size, 1);
    await manager.release('sandbox');
    assert.ok(!fs.existsSync(path.join(shared, 'etc')));
    await assert.rejects(manager.acquire('sandbox', [bind('data/missing', 'm')]), isKind('failed-precondition', /source .*missing cannot be used/));
  });

  it('invalid requests and a refused namespace change nothing', async () => {
    const { shared, mounter, manager } = setup();
    await assert.rejects(manager.acquire('sandbox', [tmpfs('ok'), tmpfs('/etc/x')]), isKind('invalid-argument', /storages\[1\].mount_point/));
    mounter.allowed = false;
    await assert.rejects(manager.acquire('sandbox', [tmpfs('ok')]), isKind('failed-precondition', /refused/));
    assert.deepEqual(mounter.calls, []);
    assert.deepEqual(fs.readdirSync(shared), ['data']);
  });

  it('the native mounter refuses outside a mount namespace of the agent\'s own', async (t) => {
    if (ownsNamespace('mnt')) return t.skip('this test process owns its mount namespace');
    const dir = path.join(tmp, 'native-refused');
    const manager = new StorageManager({ sharedDir: path.join(dir, 'shared'), stateDir: path.join(dir, 'state'), log: silentLogger });
    fs.mkdirSync(manager.roots.sharedDir, { recursive: true });
    await assert.rejects(manager.acquire('sandbox', [tmpfs('x')]), isKind('failed-precondition', /mounting storages refused: .*mnt namespace/));
    assert.deepEqual(fs.readdirSync(manager.roots.sharedDir), []);
  });
});

describe('StorageManager: virtio-blk storages (recorded mounts, fake device tree)', () => {
  const blk = (source: string, mountPoint: string): StorageSpec => ({
    driver: 'virtio-blk', driverOptions: [], source, fstype: 'ext4', options: ['ro'], mountPoint,
  });

  it('outside the guest, without a device tree of its own, a block storage is refused before anything is mounted', async () => {
    const { shared, mounter, manager } = setup();
    // This machine's own disk name, whatever it is: /dev/vda here.
    for (const source of ['/dev/vda', '/dev/vdb', '0000:00:02.0']) {
      await assert.rejects(
        manager.acquire('sandbox', [tmpfs('first'), blk(source, 'disk')]),
        isKind('failed-precondition', /is the device of the agent's root file system|refused: the agent is not the guest's init/),
      );
    }
    assert.deepEqual(mounter.calls, [], 'not even the tmpfs before it');
    assert.deepEqual(fs.readdirSync(shared), ['data']);
    const explicit = new StorageManager({ sharedDir: shared, stateDir: path.join(shared, '..', 'state'), log: silentLogger, mounter, blockLookup: { devRoot: '/dev/' } });
    await assert.rejects(explicit.acquire('sandbox', [blk('/dev/vdb', 'disk')]), isKind('failed-precondition', /not the guest's init/));
    assert.deepEqual(mounter.calls, []);
  });

  it('on a fake tree: an attached disk mounts; the root disk is refused and what the request mounted is undone', async (t) => {
    const dir = path.join(tmp, `blk${n++}`);
    const dev = path.join(dir, 'dev');
    const proc = path.join(dir, 'proc');
    fs.mkdirSync(dev, { recursive: true });
    fs.mkdirSync(path.join(proc, 'self'), { recursive: true });
    for (const [name, minor] of [['vda', 0], ['vdb', 16]] as const) {
      const r = spawnSync('mknod', [path.join(dev, name), 'b', '240', String(minor)], { encoding: 'utf8' });
      if (r.status !== 0) return t.skip(`mknod is not permitted here: ${r.stderr}`);
    }
    fs.writeFileSync(path.join(proc, 'self', 'mountinfo'), '22 1 240:0 / / ro,relatime - ext4 /dev/vda ro\n');
    const shared = path.join(dir, 'shared');
    fs.mkdirSync(shared, { recursive: true });
    const mounter = new FakeMounter();
    const blockLookup = { devRoot: dev, sysRoot: path.join(dir, 'sys'), procRoot: proc, timeoutMs: 0 };
    const manager = new StorageManager({ sharedDir: shared, stateDir: path.join(dir, 'state'), log: silentLogger, mounter, blockLookup });

    const got = await manager.acquire('container:c1', [blk('/dev/vdb', 'disk')]);
    assert.deepEqual(got.map((g) => g.source), [path.join(dev, 'vdb')]);
    assert.deepEqual(mounter.calls, [`mount ${path.join(dev, 'vdb')} disk ext4 ${constants.MS_RDONLY}`]);
    mounter.calls = [];
    await assert.rejects(
      manager.acquire('container:c2', [tmpfs('scratch'), blk('/dev/vda', 'root-again')]),
      isKind('failed-precondition', new RegExp(`^${dev}/vda \\(240:0\\) is the device of the agent's root file system; only disks attached for the sandbox may be mounted$`)),
    );
    assert.deepEqual(mounter.calls, [`mount tmpfs scratch tmpfs ${constants.MS_NOSUID | constants.MS_NODEV}`, 'umount scratch 0']);
    assert.deepEqual(fs.readdirSync(shared), ['disk']);

    // As a kernel would show it: vdb mounted at the storage's mount point. A second storage of it elsewhere is
    // the manager's own disk again; once released, that same mount is someone else's and refused.
    fs.appendFileSync(path.join(proc, 'self', 'mountinfo'), `40 22 240:16 / ${path.join(shared, 'disk')} ro - ext4 /dev/vdb ro\n`);
    await manager.acquire('container:c3', [blk('/dev/vdb', 'disk-too')]);
    await manager.release('container:c1');
    await assert.rejects(manager.acquire('container:c4', [blk('/dev/vdb', 'disk-three')]), isKind('failed-precondition', /vdb \(240:16\) is the device of .*\/disk \(ext4 from \/dev\/vdb\), which the agent's storage manager did not mount/));
  });
});

/**
 * Runs `code` (CommonJS; StorageManager, silentLogger, fs, path, mounts()
 * in scope) in a child node inside a private mount namespace; returns the
 * JSON it prints last.
 */
function inMountNamespace(code: string, env: Record<string, string>): unknown {
  const script = `
    const fs = require('node:fs'), path = require('node:path');
    const { StorageManager } = require(${JSON.stringify(path.join(__dirname, 'manager.ts'))});
    const { silentLogger } = require(${JSON.stringify(path.join(__dirname, '..', 'log.ts'))});
    const mounts = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').filter(Boolean)
      .map((l) => ({ point: l.split(' ')[4], type: l.split(' - ')[1].split(' ')[0], opts: l.split(' ')[5] }));
    const under = (dir) => mounts().filter((m) => m.point.startsWith(dir + '/')).map((m) => m.point.slice(dir.length + 1) + ':' + m.type);
    const err = async (p) => { try { await p; return null; } catch (e) { return e.kind + ': ' + e.message; } };
    (async () => {\n${code}\n})().then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e); process.exit(1); });`;
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', process.execPath, '--import', 'tsx', '-e', script], {
    cwd: REPO,
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, ...env },
  });
  assert.equal(r.status, 0, `child failed (${r.signal ?? r.status}):\n${r.stderr}${r.stdout}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
}

describe('StorageManager (real mounts in a private mount namespace)', () => {
  const probe = spawnSync('unshare', ['-m', '--propagation', 'private', 'true'], { encoding: 'utf8' });
  const skip = probe.status !== 0 ? `unshare -m is not permitted here: ${probe.stderr.trim()}` : false;

  const dirs = () => {
    const dir = path.join(tmp, `real${n++}`);
    fs.mkdirSync(path.join(dir, 'shared', 'data'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'state'), { recursive: true });
    return { DIR: dir, SHARED: path.join(dir, 'shared'), STATE: path.join(dir, 'state') };
  };
  const header = `
    const { SHARED, STATE } = process.env;
    const manager = new StorageManager({ sharedDir: SHARED, stateDir: STATE, log: silentLogger });
    const st = (driver, source, mountPoint, options = [], fstype = '') => ({ driver, driverOptions: [], source, fstype, options, mountPoint });`;

  it('tmpfs, a read-only bind and a local storage: mounted, usable, unmounted and cleaned up', { skip }, () => {
    const env = dirs();
    fs.writeFileSync(path.join(env.SHARED, 'data', 'hello.txt'), 'hello from the host\n');
    const r = inMountNamespace(`${header}
      await manager.acquire('sandbox', [st('tmpfs', '', 'scratch', ['size=1m', 'mode=0700'])]);
      await manager.acquire('container:c1', [st('bind', 'data', 'c1/vol', ['ro']), st('local', '', 'c1/local', ['mode=0750'])]);
      fs.writeFileSync(path.join(SHARED, 'scratch', 'f'), 'x');
      fs.writeFileSync(path.join(SHARED, 'c1/local', 'kept-in-the-guest'), 'y');
      const localDir = fs.readdirSync(path.join(STATE, 'local'));
      const seen = {
        mounted: under(SHARED),
        scratchOpts: mounts().find((m) => m.point === path.join(SHARED, 'scratch')).opts,
        read: fs.readFileSync(path.join(SHARED, 'c1/vol/hello.txt'), 'utf8'),
        readOnly: await err(fs.promises.writeFile(path.join(SHARED, 'c1/vol/new'), 'x')).then((e) => e ?? 'writable'),
        localMode: (fs.statSync(path.join(SHARED, 'c1/local')).mode & 0o7777).toString(8),
        localFiles: fs.readdirSync(path.join(STATE, 'local', localDir[0])),
        hostDataUntouched: fs.readdirSync(path.join(SHARED, 'data')),
      };
      await manager.release('container:c1');
      seen.afterContainer = under(SHARED);
      seen.localGone = fs.readdirSync(path.join(STATE, 'local'));
      await manager.releaseAll();
      seen.afterAll = under(SHARED);
      seen.left = fs.readdirSync(SHARED);
      return seen;`, env) as Record<string, unknown>;
    assert.deepEqual(r['mounted'], ['scratch:tmpfs', 'c1/vol:ext4', 'c1/local:ext4'].map((m) => m.replace('ext4', bindType(env.DIR))));
    assert.match(r['scratchOpts'] as string, /^rw,nosuid,nodev/);
    assert.equal(r['read'], 'hello from the host\n');
    assert.equal(r['readOnly'], 'undefined: EROFS: read-only file system, open \'' + path.join(env.SHARED, 'c1/vol/new') + '\'');
    assert.equal(r['localMode'], '750');
    assert.deepEqual(r['localFiles'], ['kept-in-the-guest']);
    assert.deepEqual(r['hostDataUntouched'], ['hello.txt']);
    assert.deepEqual(r['afterContainer'], ['scratch:tmpfs']);
    assert.deepEqual(r['localGone'], []);
    assert.deepEqual(r['afterAll'], []);
    assert.deepEqual(r['left'], ['data']);
  });

  it('overlay: writes go to the upper layer on a tmpfs storage, the lower layer stays; unmount cleans up', { skip }, () => {
    const env = dirs();
    fs.mkdirSync(path.join(env.SHARED, 'lower'));
    fs.writeFileSync(path.join(env.SHARED, 'lower', 'base.txt'), 'base\n');
    const r = inMountNamespace(`${header}
      const upperFs = path.join(STATE, 'storage', 'rw');
      await manager.acquire('container:c1', [
        st('tmpfs', '', upperFs, ['size=4m']),
        st('local', '', path.join(STATE, 'storage', 'unused')),
      ]);
      fs.mkdirSync(path.join(upperFs, 'upper')); fs.mkdirSync(path.join(upperFs, 'work'));
      await manager.acquire('container:c1', [st('overlay', '', 'c1/rootfs',
        ['lowerdir=lower', 'upperdir=' + upperFs + '/upper', 'workdir=' + upperFs + '/work'])]);
      const root = path.join(SHARED, 'c1/rootfs');
      fs.writeFileSync(path.join(root, 'new.txt'), 'written through the overlay\\n');
      fs.appendFileSync(path.join(root, 'base.txt'), 'changed\\n');
      const seen = {
        mounted: under(SHARED).concat(under(STATE)),
        merged: fs.readdirSync(root).sort(),
        upper: fs.readdirSync(path.join(upperFs, 'upper')).sort(),
        lower: fs.readdirSync(path.join(SHARED, 'lower')).sort(),
        lowerBase: fs.readFileSync(path.join(SHARED, 'lower', 'base.txt'), 'utf8'),
        mergedBase: fs.readFileSync(path.join(root, 'base.txt'), 'utf8'),
      };
      await manager.release('container:c1');
      seen.after = under(SHARED).concat(under(STATE));
      seen.sharedLeft = fs.readdirSync(SHARED).sort();
      seen.storageLeft = fs.readdirSync(path.join(STATE, 'storage'));
      return seen;`, env) as Record<string, unknown>;
    assert.deepEqual(r['mounted'], ['c1/rootfs:overlay', 'storage/rw:tmpfs', `storage/unused:${bindType(env.DIR)}`]);
    assert.deepEqual(r['merged'], ['base.txt', 'new.txt']);
    assert.deepEqual(r['upper'], ['base.txt', 'new.txt']);
    assert.deepEqual(r['lower'], ['base.txt']);
    assert.equal(r['lowerBase'], 'base\n');
    assert.equal(r['mergedBase'], 'base\nchanged\n');
    assert.deepEqual(r['after'], []);
    assert.deepEqual(r['sharedLeft'], ['data', 'lower']);
    assert.deepEqual(r['storageLeft'], []);
  });

  it('a request that fails half-way unmounts the storages it already mounted', { skip }, () => {
    const env = dirs();
    const r = inMountNamespace(`${header}
      await manager.acquire('sandbox', [st('tmpfs', '', 'kept')]);
      const failed = await err(manager.acquire('container:c1', [
        st('tmpfs', '', 'one'),
        st('bind', 'data', 'two', ['ro']),
        st('local', '', 'three'),
        st('overlay', '', 'four', ['lowerdir=does-not-exist']),
        st('tmpfs', '', 'five'),
      ]));
      return { failed, mounted: under(SHARED), left: fs.readdirSync(SHARED).sort(), local: fs.readdirSync(path.join(STATE, 'local')), list: manager.list().map((m) => m.owners) };`, env) as Record<string, unknown>;
    assert.match(r['failed'] as string, /^failed-precondition: mounting overlay storage overlay on .*\/four \(overlay lowerdir=.*does-not-exist\) failed: mount .*No such file or directory/);
    assert.deepEqual(r['mounted'], ['kept:tmpfs']);
    assert.deepEqual(r['left'], ['data', 'kept']);
    assert.deepEqual(r['local'], []);
    assert.deepEqual(r['list'], [['sandbox']]);
  });
});

/** The file system type a bind mount of a directory under `dir` shows in mountinfo (that of the file system it lives on). */
function bindType(dir: string): string {
  const info = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean);
  let best = { point: '', type: '' };
  for (const l of info) {
    const point = l.split(' ')[4]!;
    if ((dir === point || dir.startsWith(point.endsWith('/') ? point : `${point}/`)) && point.length >= best.point.length) {
      best = { point, type: l.split(' - ')[1]!.split(' ')[0]! };
    }
  }
  return best.type;
}
