// Tests of the agent_native addon. Anything that changes process-wide or
// machine-wide state (subreaper, reaping orphans, mount, hostname) runs in a
// child node process, inside fresh mount+UTS namespaces where needed, so the
// test runner and the machine are left untouched. reboot and finit_module are
// never called (finitModuleAsync only with a file that does not open). Run: node --import tsx --test src/native/native.test.ts
// (needs `node build/native/build.mjs` first).

import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { buildSync } from 'esbuild';
import { constants, native, type NativeError } from './native';

const REPO = path.resolve(__dirname, '..', '..');
const NATIVE_TS = path.join(__dirname, 'native.ts');
const ADDON = path.join(REPO, 'build', 'native', 'agent_native.node');

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-native-test-'));
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/**
 * Runs `code` (CommonJS, `native` and `constants` in scope, loaded from
 * `nativeTs`) in a child `node --import tsx`, optionally under a prefix
 * command such as unshare. Returns the JSON the child prints last.
 */
function runChild(
  code: string,
  opts: { prefix?: string[]; env?: NodeJS.ProcessEnv; nativeTs?: string } = {},
): unknown {
  const script =
    `const { native, constants } = require(${JSON.stringify(opts.nativeTs ?? NATIVE_TS)});\n` +
    `(async () => {\n${code}\n})().then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e); process.exit(1); });`;
  const argv = [...(opts.prefix ?? []), process.execPath, '--import', 'tsx', '-e', script];
  const spawnOpts: SpawnSyncOptions = {
    cwd: REPO, // --import tsx resolves from here
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, ...opts.env },
  };
  const r = spawnSync(argv[0]!, argv.slice(1), spawnOpts);
  assert.equal(r.status, 0, `child failed (${r.signal ?? r.status}):\n${r.stderr}${r.stdout}`);
  const lines = String(r.stdout).trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
}

function assertNativeError(err: unknown, code: string, syscall: string, args: string): true {
  const e = err as NativeError;
  assert.ok(e instanceof Error, `not an Error: ${String(err)}`);
  assert.equal(e.code, code);
  assert.equal(e.syscall, syscall);
  assert.equal(e.errno, os.constants.errno[code as keyof typeof os.constants.errno]);
  assert.match(e.message, new RegExp(`^${syscall} ${args.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: \\S`));
  return true;
}

test('getpid and getppid match process', () => {
  assert.equal(native.getpid(), process.pid);
  assert.equal(native.getppid(), process.ppid);
});

test('constants come from the system headers', () => {
  assert.equal(constants.MS_RDONLY, 1);
  assert.equal(constants.MS_BIND, 4096);
  assert.equal(constants.MNT_DETACH, 2);
  assert.equal(constants.RB_POWER_OFF, 0x4321fedc);
  assert.equal(constants.RB_HALT_SYSTEM, 0xcdef0123);
  assert.equal(native.constants, constants);
  assert.equal(Object.keys(constants).length, 18);
  for (const [name, value] of Object.entries(constants)) {
    assert.ok(Number.isInteger(value) && value > 0, `${name} = ${value}`);
  }
});

test('setChildSubreaper sets it in a child process only', () => {
  const runnerBefore = native.isChildSubreaper();
  const r = runChild(`
    const before = native.isChildSubreaper();
    native.setChildSubreaper();
    return { before, after: native.isChildSubreaper() };`);
  assert.deepEqual(r, { before: false, after: true });
  assert.equal(native.isChildSubreaper(), runnerBefore);
});

test('waitpid reaps orphans reparented to a subreaper', () => {
  const r = runChild(`
    const { execFileSync } = require('node:child_process');
    native.setChildSubreaper();
    // sh exits at once; its background job is orphaned and reparented to us.
    const orphan = (script) => Number(execFileSync('sh', ['-c', script + ' >/dev/null 2>&1 & echo $!'], { encoding: 'utf8' }));
    const reap = async (pid) => {
      for (const deadline = Date.now() + 10000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
        const st = native.waitpid(pid);
        if (st) return st;
      }
      throw new Error('timed out waiting for ' + pid);
    };
    const exited = orphan('(sleep 0.3; exit 7)');
    const exitStatus = await reap(exited);
    let again;
    try { native.waitpid(exited); } catch (e) { again = { code: e.code, syscall: e.syscall, message: e.message }; }
    const sleeper = orphan('sleep 30');
    const running = native.waitpid(sleeper);
    process.kill(sleeper, 'SIGTERM');
    const killedStatus = await reap(sleeper);
    return { exited, exitStatus, again, sleeper, running, killedStatus };`) as Record<string, unknown>;

  assert.deepEqual(r['exitStatus'], { pid: r['exited'], exitCode: 7, signal: null, coreDumped: false });
  // Once reaped, the pid is no longer our child.
  assert.deepEqual(r['again'], {
    code: 'ECHILD',
    syscall: 'waitpid',
    message: `waitpid ${r['exited']}: No child processes`,
  });
  assert.equal(r['running'], null);
  assert.deepEqual(r['killedStatus'], { pid: r['sleeper'], exitCode: null, signal: 15, coreDumped: false });
});

test('firstExited names an exited child without reaping it; 0 when none has exited', () => {
  const r = runChild(`
    const { execFileSync } = require('node:child_process');
    native.setChildSubreaper();
    const none = native.firstExited();
    // It outlives sh, or sh would reap it itself.
    const orphan = Number(execFileSync('sh', ['-c', '(sleep 0.3; exit 4) >/dev/null 2>&1 & echo $!'], { encoding: 'utf8' }));
    let seen = 0;
    for (const deadline = Date.now() + 10000; seen === 0 && Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) seen = native.firstExited();
    const again = native.firstExited(); // still there: not reaped
    const status = native.waitpid(orphan);
    return { none, orphan, seen, again, status, after: native.firstExited() };`) as Record<string, unknown>;
  assert.equal(r['none'], 0);
  assert.equal(r['seen'], r['orphan']);
  assert.equal(r['again'], r['orphan']);
  assert.deepEqual(r['status'], { pid: r['orphan'], exitCode: 4, signal: null, coreDumped: false });
  assert.equal(r['after'], 0);
});

test('raiseFdLimit raises the open-file limit as far as allowed, and never lowers it', () => {
  const r = runChild(`
    const read = () => require('node:fs').readFileSync('/proc/self/limits', 'latin1').match(/^Max open files\\s+(\\S+)\\s+(\\S+)/m).slice(1).map(Number);
    const before = read();
    const low = native.raiseFdLimit(1);
    const raised = native.raiseFdLimit(before[1] + 1000);
    return { before, low, raised, after: read() };`) as { before: number[]; low: number[]; raised: number[]; after: number[] };
  assert.deepEqual(r.low, r.before, 'asking for less changes nothing');
  assert.deepEqual(r.raised, r.after);
  // Root may raise the hard limit (up to fs.nr_open); others get their soft limit up to the hard one.
  assert.ok(r.after[0]! >= Math.min(r.before[1]! + 1000, r.after[1]!) && r.after[1]! >= r.before[1]!);
});

test('waitpid refuses pids that would reap arbitrary children', () => {
  for (const pid of [0, -1, -process.pid, 1.5, Number.NaN, '1', undefined]) {
    assert.throws(() => native.waitpid(pid as number), TypeError, `waitpid(${String(pid)})`);
  }
});

test('waitpid of a process that is not our child throws ECHILD', () => {
  assert.throws(() => native.waitpid(process.ppid), (e) => assertNativeError(e, 'ECHILD', 'waitpid', `${process.ppid}`));
});

test('clearCloexec clears FD_CLOEXEC set by Node', (t) => {
  const fd = fs.openSync(path.join(tmpRoot, 'cloexec'), 'w');
  t.after(() => fs.closeSync(fd));
  assert.equal(native.getCloexec(fd), true);
  native.clearCloexec(fd);
  assert.equal(native.getCloexec(fd), false);
  native.clearCloexec(fd); // idempotent
  assert.equal(native.getCloexec(fd), false);
});

test('fcntl on a bad fd throws EBADF', () => {
  assert.throws(() => native.getCloexec(999_999), (e) => assertNativeError(e, 'EBADF', 'fcntl', '999999 F_GETFD'));
  assert.throws(() => native.clearCloexec(999_999), (e) => assertNativeError(e, 'EBADF', 'fcntl', '999999 F_GETFD'));
  assert.throws(() => native.getCloexec(-1), TypeError);
});

test('mount, umount and sethostname in private mount+UTS namespaces', (t) => {
  const prefix = ['unshare', '-m', '-u', '--propagation', 'private'];
  const probe = spawnSync(prefix[0]!, [...prefix.slice(1), 'true'], { encoding: 'utf8' });
  if (probe.status !== 0 && /not permitted|permission denied/i.test(probe.stderr)) {
    t.skip(`unshare is not permitted here: ${probe.stderr.trim()}`);
    return;
  }
  assert.equal(probe.status, 0, `unshare probe failed: ${probe.error?.message ?? probe.stderr}`);

  const dir = fs.realpathSync(fs.mkdtempSync(path.join(tmpRoot, 'mnt-')));
  const hostBefore = os.hostname();
  const r = runChild(
    `
    const fs = require('node:fs'), os = require('node:os'), path = require('node:path');
    const dir = process.env.MNT_DIR, c = constants;
    const err = (f) => { try { f(); } catch (e) { return { type: e.constructor.name, code: e.code, syscall: e.syscall, message: e.message }; } };
    native.mount('tmpfs', dir, 'tmpfs', c.MS_NOSUID | c.MS_NODEV, 'size=1m,mode=0700');
    fs.writeFileSync(path.join(dir, 'f'), 'hello');
    const read = fs.readFileSync(path.join(dir, 'f'), 'utf8');
    const mounted = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n')
      .filter((l) => l.split(' ')[4] === dir).map((l) => l.split(' - ')[1].split(' ')[0]);
    // bind+remount takes no fstype (passed as NULL): make it read-only.
    native.mount('', dir, '', c.MS_REMOUNT | c.MS_BIND | c.MS_RDONLY, '');
    const readOnly = err(() => fs.writeFileSync(path.join(dir, 'g'), 'x'));
    native.umount(dir, c.MNT_DETACH);
    const goneAfterUmount = !fs.existsSync(path.join(dir, 'f'));
    const notMounted = err(() => native.umount(dir, 0));
    const missing = err(() => native.mount('tmpfs', dir + '/missing', 'tmpfs', 0, ''));
    const nul = err(() => native.mount('tmpfs', dir + '\\0x', 'tmpfs', 0, ''));
    native.sethostname('agent-native-test');
    const hostname = os.hostname();
    const badHost = err(() => native.sethostname('x'.repeat(65)));
    return { read, mounted, readOnly, goneAfterUmount, notMounted, missing, nul, hostname, badHost };`,
    { prefix, env: { MNT_DIR: dir } },
  );
  assert.deepEqual(r, {
    read: 'hello',
    mounted: ['tmpfs'],
    readOnly: {
      type: 'Error',
      code: 'EROFS',
      syscall: 'open',
      message: `EROFS: read-only file system, open '${dir}/g'`,
    },
    goneAfterUmount: true,
    notMounted: { type: 'Error', code: 'EINVAL', syscall: 'umount2', message: `umount2 ${dir} flags 0x0: Invalid argument` },
    missing: {
      type: 'Error',
      code: 'ENOENT',
      syscall: 'mount',
      message: `mount tmpfs on ${dir}/missing type tmpfs flags 0x0: No such file or directory`,
    },
    nul: { type: 'TypeError', message: 'target must be a string without NUL characters' }, // no code: JSON drops undefined
    hostname: 'agent-native-test',
    badHost: {
      type: 'Error',
      code: 'EINVAL',
      syscall: 'sethostname',
      message: `sethostname ${'x'.repeat(65)}: Invalid argument`,
    },
  });
  // Nothing leaked out of the namespaces.
  assert.equal(os.hostname(), hostBefore);
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('linkUp brings a link up in a private net namespace; the kernel gives the loopback its addresses', (t) => {
  const prefix = ['unshare', '-n'];
  const probe = spawnSync(prefix[0]!, [...prefix.slice(1), 'true'], { encoding: 'utf8' });
  if (probe.status !== 0 && /not permitted|permission denied/i.test(probe.stderr)) {
    t.skip(`unshare is not permitted here: ${probe.stderr.trim()}`);
    return;
  }
  const r = runChild(
    `
    const { execFileSync } = require('node:child_process');
    const lo = () => JSON.parse(execFileSync('ip', ['-j', 'address', 'show', 'dev', 'lo'], { encoding: 'utf8' }))[0];
    const err = (f) => { try { f(); } catch (e) { return { type: e.constructor.name, code: e.code, syscall: e.syscall, message: e.message }; } };
    const before = lo();
    native.linkUp('lo');
    native.linkUp('lo'); // already up: nothing to do
    const after = lo();
    return {
      upBefore: before.flags.includes('UP'),
      upAfter: after.flags.includes('UP'),
      addresses: after.addr_info.map((a) => a.local + '/' + a.prefixlen).sort(),
      missing: err(() => native.linkUp('nosuchlink0')),
      tooLong: err(() => native.linkUp('x'.repeat(16))),
    };`,
    { prefix },
  );
  assert.deepEqual(r, {
    upBefore: false,
    upAfter: true,
    addresses: ['127.0.0.1/8', '::1/128'],
    missing: { type: 'Error', code: 'ENODEV', syscall: 'SIOCGIFFLAGS', message: 'SIOCGIFFLAGS nosuchlink0: No such device' },
    tooLong: { type: 'TypeError', message: 'name must be 1 to 15 bytes' },
  });
});

test('loading is lazy and names every path tried when the addon is missing', () => {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'lazy-'));
  const copy = path.join(dir, 'native.ts');
  fs.copyFileSync(NATIVE_TS, copy);
  fs.copyFileSync(path.join(path.dirname(NATIVE_TS), 'addon-loader.ts'), path.join(dir, 'addon-loader.ts'));
  const missing = '/nonexistent/agent_native.node';
  const r = runChild(
    `
    let error;
    try { native.getpid(); } catch (e) { error = e.message; }
    let constError;
    try { constants.MS_BIND; } catch (e) { constError = e.message; }
    return { error, constError };`,
    { nativeTs: copy, env: { AGENT_NATIVE_ADDON: missing } },
  ) as { error: string; constError: string };
  assert.match(r.error, /not found/);
  assert.equal(r.constError, r.error);
  const tried = r.error.slice(r.error.indexOf('tried: ') + 'tried: '.length).split(', ');
  assert.equal(tried[0], missing);
  // Beside the module (the bundle), then the source tree up to the root.
  assert.ok(tried.includes(path.join(dir, 'agent_native.node')));
  assert.ok(tried.indexOf(path.join(dir, 'agent_native.node')) < tried.indexOf(path.join(dir, 'build', 'native', 'agent_native.node')));
  assert.ok(tried.includes('/build/native/agent_native.node'));

  // The env variable is honoured first.
  const ok = runChild(`return native.getpid() === process.pid;`, {
    nativeTs: copy,
    env: { AGENT_NATIVE_ADDON: ADDON },
  });
  assert.equal(ok, true);
});

test('works bundled by esbuild with the addon next to the bundle', () => {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'bundle-'));
  const entry = path.join(dir, 'entry.ts');
  fs.writeFileSync(
    entry,
    `import { native, constants } from ${JSON.stringify(NATIVE_TS)};\n` +
      `console.log(JSON.stringify({ pid: native.getpid() === process.pid, bind: constants.MS_BIND }));\n`,
  );
  const outfile = path.join(dir, 'dist', 'main.js');
  buildSync({ entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', outfile, logLevel: 'error' });
  fs.copyFileSync(ADDON, path.join(dir, 'dist', 'agent_native.node'));
  const r = spawnSync(process.execPath, [outfile], {
    encoding: 'utf8',
    env: { ...process.env, AGENT_NATIVE_ADDON: '' },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { pid: true, bind: 4096 });
});

// clockSettime is never called with a value the kernel would accept in this
// process: the machine's clock must not move. Out-of-range values are refused
// by the addon (TypeError); the kernel would refuse them too (EINVAL), so even
// a broken range check changes nothing, it only fails the test.
test('finitModuleAsync runs on a worker thread and rejects with the errno of what failed, never throwing', async () => {
  const missing = path.join(tmpRoot, 'no-such-module.ko');
  const pending = native.finitModuleAsync(missing, '');
  assert.ok(pending instanceof Promise);
  await assert.rejects(pending, (err) => assertNativeError(err, 'ENOENT', 'open', missing));
  assert.throws(() => native.finitModuleAsync('a\0b', ''), { name: 'TypeError', message: 'path must be a string without NUL characters' });
  assert.throws(() => native.finitModuleAsync(missing, 1 as unknown as string), { name: 'TypeError', message: 'params must be a string without NUL characters' });
});

test('clockSettime refuses out-of-range values before the syscall', () => {
  for (const [sec, nsec] of [[0, 1_000_000_000], [0, -1], [-1, 0]] as const) {
    assert.throws(() => native.clockSettime(sec, nsec), TypeError, `clockSettime(${sec}, ${nsec})`);
  }
});

// The syscall path, where it cannot succeed: a child in a new user namespace
// has no CAP_SYS_TIME in the initial one, so the kernel answers EPERM. The
// child checks it really is in another user namespace before calling, and
// passes the current time, so nothing could move even then.
test('clockSettime reports EPERM without CAP_SYS_TIME (child in a user namespace)', () => {
  const hostUserNs = fs.statSync('/proc/self/ns/user').ino;
  const r = runChild(`
    const fs = require('node:fs');
    if (fs.statSync('/proc/self/ns/user').ino === ${hostUserNs}) throw new Error('not in a new user namespace: refusing to call clock_settime');
    const now = Date.now();
    try {
      native.clockSettime(Math.floor(now / 1000), (now % 1000) * 1e6);
      return { ok: true };
    } catch (e) {
      return { code: e.code, syscall: e.syscall, message: e.message };
    }
  `, { prefix: ['unshare', '-U'] }) as { code?: string; syscall?: string; message?: string; ok?: boolean };
  assert.equal(r.ok, undefined, 'clock_settime succeeded in a user namespace');
  assert.equal(r.code, 'EPERM');
  assert.equal(r.syscall, 'clock_settime');
  assert.match(r.message!, /^clock_settime CLOCK_REALTIME \d+\.\d{9}: /);
});

test('execve keeps the pid, the children and the fds whose FD_CLOEXEC is cleared; a failed exec throws and the process goes on', () => {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'execve-'));
  const out = path.join(dir, 'out');
  const script = `
    const fs = require('node:fs');
    const { spawn } = require('node:child_process');
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    // A failed exec: an error with errno, and this process still runs.
    let failed;
    try { native.execve('/no/such/binary', ['x'], []); } catch (e) { failed = { code: e.code, syscall: e.syscall }; }
    const kept = fs.openSync(${JSON.stringify(out)}, 'w');
    const dropped = fs.openSync('/dev/null', 'r');
    native.clearCloexec(kept);
    fs.writeSync(kept, JSON.stringify({ pid: process.pid, child: child.pid, failed, kept, dropped }) + '\\n');
    // The new image: a shell that writes, through the inherited fd, its pid, whether the fds are open, and its children.
    const to = ' >>/proc/$$/fd/' + kept;
    native.execve('/bin/sh', ['sh', '-c', 'echo "$$ $(ls /proc/$$/fd | tr "\\\\n" " ")"' + to + '; echo "$(cat /proc/$$/task/$$/children)"' + to + '; kill ' + child.pid], ['PATH=/usr/bin:/bin']);
    return 'not reached';`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', `const { native } = require(${JSON.stringify(NATIVE_TS)});\n${script.replace('return \'not reached\';', "console.log('not reached');")}`], { cwd: REPO, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `${r.stderr}${r.stdout}${fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : ''}`);
  assert.ok(!r.stdout.includes('not reached'), 'execve returned');
  const [first, fds, children] = fs.readFileSync(out, 'utf8').trim().split('\n');
  const before = JSON.parse(first!) as { pid: number; child: number; failed: unknown; kept: number; dropped: number };
  assert.deepEqual(before.failed, { code: 'ENOENT', syscall: 'execve' });
  const [pid, ...open] = fds!.trim().split(/\s+/).map(Number);
  assert.equal(pid, before.pid, 'the same pid after the exec');
  assert.ok(open.includes(before.kept), `fd ${before.kept} (FD_CLOEXEC cleared) crossed the exec: ${open}`);
  assert.ok(!open.includes(before.dropped), `fd ${before.dropped} (close-on-exec) was closed: ${open}`);
  assert.ok(children!.split(/\s+/).map(Number).includes(before.child), 'the child is still ours');
  assert.throws(() => native.execve('/bin/true', ['true'], [1 as unknown as string]), /env must be a string/);
  assert.throws(() => native.execve('/bin/true', 'true' as unknown as string[], []), /argv must be an array/);
});
