// The container spec checks (spec.ts and the spec-*.ts modules), on specs as
// a hostile runtime could send them. Through the bundled agent and real crun:
// test/integration/spec-checks.test.ts.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentError } from '../errors';
import { parsePolicy, type Policy } from '../policy/policy';
import { checkExecProcess, prepareSpec, type SpecContext } from './spec';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spec-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const shared = path.join(tmp, 'shared');
const outside = path.join(tmp, 'outside');
for (const d of [path.join(shared, 'rootfs'), path.join(shared, 'l'), path.join(shared, 'u'), path.join(shared, 'w'), outside]) fs.mkdirSync(d, { recursive: true });
fs.symlinkSync(outside, path.join(shared, 'link-out'));
const real = (p: string) => fs.realpathSync(p);
const nsOf = (pid: number | 'self') => fs.statSync(`/proc/${pid}/ns/ipc`).ino;

const strict: Policy = parsePolicy(Buffer.from(JSON.stringify({ format: 1, containers: { host_namespaces: ['network', 'cgroup'] } })), 'strict.json');
const OWN_NAMESPACES = [{ type: 'mount' }, { type: 'pid' }, { type: 'ipc' }, { type: 'uts' }];

function spec(more: Record<string, unknown> = {}, linux: Record<string, unknown> = {}): Record<string, unknown> {
  return ({
    ociVersion: '1.0.2',
    process: { args: ['sh'], cwd: '/' },
    root: { path: 'rootfs' },
    ...more,
    linux: { namespaces: OWN_NAMESPACES, ...linux },
  });
}

const ctx = (more: Partial<SpecContext> = {}): SpecContext => ({ containerId: 'c1', sharedDir: shared, policy: strict, ...more });
const prepare = (raw: unknown, more: Partial<SpecContext> = {}) => prepareSpec(raw, ctx(more)).spec;

const refused = (kind: string, re: RegExp) => (err: unknown) => {
  assert.ok(err instanceof AgentError, String(err));
  assert.equal(err.kind, kind, err.message);
  assert.match(err.message, re);
  return true;
};
const invalid = (re: RegExp) => refused('invalid-argument', re);
const denied = (re: RegExp) => refused('permission-denied', re);

describe('spec mounts', () => {
  it('overlay layers must stay inside the shared dir; inside, they are resolved', () => {
    const escape = { type: 'overlay', source: 'overlay', destination: '/x', options: [`lowerdir=${outside}:${shared}/l,upperdir=${shared}/u,workdir=${shared}/w`] };
    assert.throws(() => prepare(spec({ mounts: [escape] })), invalid(/mounts\[0\]\.options lowerdir\[0\].*outside the allowed root/));
    for (const opt of [`upperdir=${outside}`, `workdir=${shared}/link-out`, `lowerdir=${shared}/../outside`, 'lowerdir+=/etc', 'datadir+=/']) {
      assert.throws(() => prepare(spec({ mounts: [{ ...escape, options: [`lowerdir=${shared}/l`, opt] }] })), invalid(/outside|"\.\."|symlink/), opt);
    }
    const ok = prepare(spec({ mounts: [{ ...escape, options: [`lowerdir=l:${shared}/l,upperdir=u,workdir=w`, 'index=off'] }] }));
    assert.deepEqual(ok.mounts![0]!.options, [`lowerdir=${real(shared)}/l:${real(shared)}/l`, `upperdir=${real(shared)}/u`, `workdir=${real(shared)}/w`, 'index=off']);
  });

  it('bind sources stay inside, shared propagation is refused, unknown options and file systems too', () => {
    const bind = (source: string, options = ['rbind']) => spec({ mounts: [{ destination: '/d', type: 'bind', source, options }] });
    assert.throws(() => prepare(bind(outside)), invalid(/outside the allowed root/));
    assert.throws(() => prepare(bind(`${shared}/link-out`)), invalid(/symlink/));
    assert.throws(() => prepare(bind(`${shared}/l`, ['rbind', 'rshared'])), invalid(/"rshared" propagation/));
    assert.equal(prepare(bind(`${shared}/l`, ['rbind', 'rslave', 'ro'])).mounts![0]!.source, `${real(shared)}/l`);
    // A bind hidden in another type's options is still a bind.
    assert.throws(() => prepare(spec({ mounts: [{ destination: '/d', type: 'none', source: outside, options: ['bind'] }] })), invalid(/outside/));
    for (const type of ['ext4', '9p', 'virtiofs', 'debugfs', 'securityfs', 'bpf', 'binfmt_misc', 'nfs', '']) {
      assert.throws(() => prepare(spec({ mounts: [{ destination: '/d', type, source: '/dev/vda' }] })), invalid(/is not allowed in a container spec/), type);
    }
    assert.throws(() => prepare(spec({ mounts: [{ destination: '/t', type: 'tmpfs', source: 'tmpfs', options: ['lowerdir=/etc'] }] })), invalid(/not an option a tmpfs mount may take/));
    assert.throws(() => prepare(spec({ mounts: [{ destination: '/../etc', type: 'tmpfs', source: 'tmpfs' }] })), invalid(/without "\.\."/));
  });

  it('sysfs and cgroup file systems are made read-only unless the policy allows privileged containers', () => {
    const mounts = [{ destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'rw'] }, { destination: '/sys/fs/cgroup', type: 'cgroup2', source: 'cgroup' }];
    const out = prepare(spec({ mounts }));
    assert.deepEqual(out.mounts!.map((m) => m.options), [['nosuid', 'rw', 'ro'], ['ro']]);
    const privileged = parsePolicy(Buffer.from('{"format":1,"containers":{"privileged":true,"host_namespaces":["network","cgroup"]}}'), 'p.json');
    assert.deepEqual(prepare(spec({ mounts }), { policy: privileged }).mounts!.map((m) => m.options), [['nosuid', 'rw'], undefined]);
  });
});

describe('spec hooks', () => {
  it('are refused, whatever the stage; empty ones are fine', () => {
    for (const stage of ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop']) {
      assert.throws(() => prepare(spec({ hooks: { [stage]: [{ path: '/bin/sh', args: ['sh', '-c', 'id > /tmp/x'] }] } })), invalid(/hooks \(.*\) are refused/), stage);
    }
    assert.equal(prepare(spec({ hooks: { prestart: [] } })).hooks, undefined);
  });

  it('the image\'s guest hooks are added from the hooks directory, executables only, in name order', () => {
    const dir = path.join(tmp, 'hooks');
    fs.mkdirSync(path.join(dir, 'poststart'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'createRuntime'), { recursive: true });
    for (const [file, mode] of [['poststart/20-b', 0o755], ['poststart/10-a', 0o755], ['poststart/readme', 0o644], ['createRuntime/x', 0o700]] as const) {
      fs.writeFileSync(path.join(dir, file), '#!/bin/sh\n', { mode });
    }
    const out = prepare(spec(), { guestHooksDir: dir });
    assert.deepEqual(out.hooks?.poststart?.map((h) => path.basename(h.path)), ['10-a', '20-b']);
    assert.deepEqual(out.hooks?.createRuntime?.[0]?.args, [path.join(dir, 'createRuntime', 'x'), 'createRuntime']);
    assert.equal(prepare(spec(), { guestHooksDir: path.join(tmp, 'no-hooks') }).hooks, undefined);
  });
});

describe('spec namespaces', () => {
  const withNs = (namespaces: unknown[]) => spec({}, { namespaces });

  it('a mount namespace is required; a missing one is refused whatever the policy', () => {
    assert.throws(() => prepare(withNs([{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }])), invalid(/no mount namespace/));
    assert.throws(() => prepare({ ociVersion: '1', process: { args: ['x'] }, root: { path: 'rootfs' } }), invalid(/no mount namespace/));
  });

  it("the agent's own namespaces may never be joined by path; a sibling container's may", () => {
    const siblings = [process.pid, 4242];
    const join = (type: string, file: string, pid: number) => prepare(withNs([...OWN_NAMESPACES.filter((n) => n.type !== type), { type, path: `/proc/${pid}/ns/${file}` }]), {
      joinablePids: () => siblings,
    });
    // With the real /proc: the test process is "a sibling" that shares the agent's (this process's) namespaces.
    assert.throws(() => join('pid', 'pid', process.pid), invalid(/is the agent's own pid namespace/));
    assert.throws(() => join('mount', 'mnt', process.pid), invalid(/agent's own mount namespace/));
    assert.throws(() => join('pid', 'pid', 1), invalid(/process 1 is not a container of this sandbox/));
    assert.throws(() => join('pid', 'net', 4242), invalid(/must be \/proc\/PID\/ns\/pid/));
    assert.throws(() => join('ipc', 'ipc', 999999), invalid(/not a container of this sandbox/));
    for (const p of ['/proc/self/ns/pid', '/proc/1/ns/../ns/pid', '/run/netns/x']) {
      assert.throws(() => prepare(withNs([...OWN_NAMESPACES.slice(0, 1), { type: 'pid', path: p }, { type: 'ipc' }, { type: 'uts' }])), invalid(/must be \/proc\/PID\/ns\/pid/), p);
    }
    // A sibling in namespaces of its own: a real process in a new IPC namespace.
    const sibling = spawn('unshare', ['--ipc', 'sleep', '30'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && nsOf(sibling.pid!) === nsOf('self'); i++) execFileSync('sleep', ['0.02']);
      const ok = prepareSpec(withNs([...OWN_NAMESPACES.filter((n) => n.type !== 'ipc'), { type: 'ipc', path: `/proc/${sibling.pid}/ns/ipc` }]), ctx({ joinablePids: () => [sibling.pid!] }));
      assert.deepEqual(ok.spec.linux!.namespaces, [{ type: 'mount' }, { type: 'pid' }, { type: 'uts' }, { type: 'ipc', path: `/proc/${sibling.pid}/ns/ipc` }]);
    } finally {
      sibling.kill('SIGKILL');
    }
  });

  it('leaving out pid, ipc or uts shares the guest\'s: the policy decides', () => {
    assert.throws(() => prepare(withNs([{ type: 'mount' }, { type: 'ipc' }, { type: 'uts' }])), denied(/sharing the guest's pid namespace .*containers\.host_namespaces/));
    assert.throws(() => prepare(withNs([{ type: 'mount' }, { type: 'pid' }, { type: 'uts' }])), denied(/ipc namespace/));
    assert.ok(prepare(withNs(OWN_NAMESPACES)), 'network and cgroup may be shared (the default policy: the VM is the pod)');
    assert.throws(() => prepare(withNs([...OWN_NAMESPACES, { type: 'pid' }])), invalid(/listed twice/));
    assert.throws(() => prepare(withNs([...OWN_NAMESPACES, { type: 'bogus' }])), invalid(/is not one of/));
  });
});

describe('spec privileges', () => {
  it('privileged capabilities, in any set, of an init or an exec, need the policy', () => {
    for (const set of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient']) {
      assert.throws(() => prepare(spec({ process: { args: ['sh'], capabilities: { [set]: ['CAP_CHOWN', 'CAP_SYS_ADMIN'] } } })), denied(/capability CAP_SYS_ADMIN in container c1/), set);
    }
    assert.throws(() => checkExecProcess({ args: ['sh'], capabilities: { bounding: ['CAP_SYS_MODULE'] } }, {}, { containerId: 'c1', policy: strict }), denied(/CAP_SYS_MODULE/));
    assert.throws(() => prepare(spec({ process: { args: ['sh'], capabilities: { bounding: ['sys_admin'] } } })), invalid(/is not a capability name/));
    assert.ok(prepare(spec({ process: { args: ['sh'], capabilities: { bounding: ['CAP_CHOWN', 'CAP_NET_BIND_SERVICE', 'CAP_KILL'] } } })));
  });

  it('devices, device cgroup rules and guest-wide sysctls need the policy; namespaced sysctls do not', () => {
    assert.throws(() => prepare(spec({}, { devices: [{ path: '/dev/vda', type: 'b', major: 254, minor: 0 }] })), denied(/device "\/dev\/vda" \(b:254:0\)/));
    assert.ok(prepare(spec({}, { devices: [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }] })));
    assert.throws(() => prepare(spec({}, { resources: { devices: [{ allow: true, access: 'rwm' }] } })), denied(/device cgroup access to a:\*:\*/));
    assert.ok(prepare(spec({}, { resources: { devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }] } })));
    assert.throws(() => prepare(spec({}, { sysctl: { 'kernel.panic': '1' } })), denied(/sysctl "kernel\.panic"/));
    assert.throws(() => prepare(spec({}, { sysctl: { 'net.ipv4.ip_forward': '1' } })), denied(/net\.ipv4/), 'the container shares the guest network here');
    assert.ok(prepare({ ociVersion: '1', process: { args: ['x'] }, root: { path: 'rootfs' }, linux: { namespaces: [...OWN_NAMESPACES, { type: 'network' }], sysctl: { 'net.ipv4.ip_forward': '1', 'kernel.shmmax': '1', 'kernel.hostname': 'x' } } }));
  });

  it('the default masked and read-only paths come back; propagation and cgroup placement stay the container\'s', () => {
    const out = prepare(spec({}, { maskedPaths: [], readonlyPaths: ['/proc/extra'] }));
    assert.ok((out.linux!.maskedPaths as string[]).includes('/proc/kcore'));
    assert.deepEqual((out.linux!.readonlyPaths as string[]).slice(0, 2), ['/proc/extra', '/proc/bus']);
    assert.ok((out.linux!.readonlyPaths as string[]).includes('/proc/sysrq-trigger'));
    assert.throws(() => prepare(spec({}, { rootfsPropagation: 'rshared' })), invalid(/rootfsPropagation "rshared" is refused/));
    assert.throws(() => prepare(spec({}, { cgroupsPath: '/agent/../..' })), invalid(/cgroupsPath .* without "\.\."/));
    assert.throws(() => prepare(spec({}, { cgroupsPath: '/' })), invalid(/agent's own cgroup .* or one above it/));
    assert.ok(prepare(spec({}, { cgroupsPath: '/agent/c1' })));
  });

  it('exec rules of the policy apply to exec\'d processes', () => {
    const p = parsePolicy(Buffer.from('{"format":1,"exec":{"allowed":true,"commands":["ls"]}}'), 'e.json');
    assert.ok(checkExecProcess({ args: ['ls'] }, {}, { containerId: 'c1', policy: p }));
    assert.throws(() => checkExecProcess({ args: ['sh'] }, {}, { containerId: 'c1', policy: p }), denied(/exec of "sh" in container c1/));
  });
});
