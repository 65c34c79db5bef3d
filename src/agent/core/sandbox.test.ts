// The core's Sandbox with a fake runtime (fake-runtime.testing.ts) whose
// container processes are real short-lived children, waited for by the real
// Reaper; and once with the real OciRuntime driving a fake runtime script
// that hangs. Nothing here mounts or changes the machine (no storages, no
// hostname). Run: node --import tsx --test src/agent/core/sandbox.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AgentError } from '../errors';
import { silentLogger } from '../log';
import { OciRuntime } from '../oci/runtime';
import type { ContainerDeps } from './container';
import { MAX_DNS_LINES } from './dns';
import { FakeRuntime } from './fake-runtime.testing';
import { Sandbox, type SandboxRequest } from './sandbox';
import { testReaper } from '../process/reaper.testing';
import { isKind } from '../errors.testing';

const { reaper, tmp } = testReaper('sandbox-test');

let seq = 0;
function setup() {
  const dir = path.join(tmp, `s${++seq}`);
  const stateDir = path.join(dir, 'state');
  const sharedDir = path.join(dir, 'shared');
  fs.mkdirSync(path.join(sharedDir, 'rootfs'), { recursive: true });
  const runtime = new FakeRuntime(reaper);
  const deps: ContainerDeps = { runtime, reaper, log: silentLogger, outputBufferBytes: 64 * 1024 };
  const sandbox = new Sandbox({ stateDir, sharedDir }, deps, silentLogger);
  return { sandbox, runtime, deps, stateDir, sharedDir };
}

const request = (more: Partial<SandboxRequest> = {}): SandboxRequest => ({
  sandboxId: 'sb', hostname: '', dns: [], kernelModules: [], storages: [], ...more,
});

function specJson(sharedDir: string, more: Record<string, unknown> = {}): Record<string, unknown> {
  return ({
    ociVersion: '1.0.2',
    process: { args: ['sleep', '30'], cwd: '/' },
    root: { path: path.join(sharedDir, 'rootfs') },
    linux: { namespaces: [{ type: 'mount' }, { type: 'pid' }, { type: 'ipc' }, { type: 'uts' }] },
    ...more,
  });
}

type Mount = { destination: string; source?: string; type?: string; options?: string[] };
const mountsOf = (runtime: FakeRuntime, id: string) => (runtime.specs.get(id)!.mounts ?? []) as Mount[];

describe('Sandbox containers (fake runtime, real processes)', () => {
  it('creates, lists, starts and removes a container; an unknown one is not found', async () => {
    const { sandbox, runtime, sharedDir } = setup();
    const c = await sandbox.createContainer('c1', 'c1', specJson(sharedDir));
    assert.deepEqual(sandbox.list().map((x) => x.id), ['c1']);
    await c.start();
    await sandbox.removeContainer('c1', 5);
    assert.deepEqual(sandbox.list(), []);
    assert.deepEqual(runtime.calls.map((x) => x.method), ['create', 'start', 'delete']);
    await assert.rejects(sandbox.removeContainer('c1', 5), isKind('not-found', /container c1 not found/));
  });

  it('removeContainer keeps the kind of a typed failure and wraps only untyped ones', async () => {
    const { sandbox, runtime, sharedDir } = setup();
    await sandbox.createContainer('c1', 'c1', specJson(sharedDir));
    runtime.onCall = (call) => {
      if (call.method === 'delete') throw new AgentError('unavailable', 'runtime busy');
    };
    await assert.rejects(sandbox.removeContainer('c1', 5), isKind('unavailable', /removing container c1 failed: runtime busy/));
    assert.deepEqual(sandbox.list().map((x) => x.id), ['c1'], 'still listed: the removal can be retried');

    runtime.onCall = (call) => {
      if (call.method === 'delete') throw new Error('EIO: something broke');
    };
    await assert.rejects(sandbox.removeContainer('c1', 5), isKind('failed-precondition', /removing container c1 failed: EIO: something broke/));

    // A runtime that no longer knows the container: nothing is left to delete, the removal succeeds.
    runtime.onCall = (call) => {
      if (call.method === 'delete') throw new AgentError('not-found', 'crun delete c1: container does not exist');
    };
    await sandbox.removeContainer('c1', 5);
    assert.deepEqual(sandbox.list(), []);
    await assert.rejects(sandbox.removeContainer('c1', 5), isKind('not-found', /container c1 not found/));
  });

  it('a failing create leaves nothing reserved: the same id can be created next', async () => {
    const { sandbox, runtime, stateDir, sharedDir } = setup();
    runtime.onCall = (call) => {
      if (call.method === 'create') throw new AgentError('failed-precondition', 'fake create failed');
    };
    await assert.rejects(sandbox.createContainer('c1', 'c1', specJson(sharedDir)), isKind('failed-precondition', /fake create failed/));
    assert.deepEqual(sandbox.list(), []);
    assert.equal(fs.existsSync(path.join(stateDir, 'containers', 'c1')), false, 'bundle removed');
    runtime.onCall = () => {};
    await sandbox.createContainer('c1', 'c1', specJson(sharedDir));
    assert.deepEqual(sandbox.list().map((x) => x.id), ['c1']);
    await sandbox.removeContainer('c1', 5);
  });

  it('a create whose runtime hangs fails at the deadline, and the id is free again', { timeout: 10_000 }, async () => {
    const { sandbox, deps, stateDir, sharedDir } = setup();
    const hang = path.join(stateDir, '..', 'hanging-runtime');
    fs.writeFileSync(hang, '#!/bin/sh\nexec sleep 1000\n', { mode: 0o755 });
    const fake = deps.runtime;
    deps.runtime = new OciRuntime({ binary: hang, globalArgs: [], root: path.join(stateDir, 'runtime'), timeoutMs: 300 }, reaper, silentLogger);
    await assert.rejects(sandbox.createContainer('c1', 'c1', specJson(sharedDir)), isKind('failed-precondition', /did not finish within 300 ms/));
    assert.deepEqual(sandbox.list(), []);
    deps.runtime = fake;
    await sandbox.createContainer('c1', 'c1', specJson(sharedDir));
    await sandbox.removeContainer('c1', 5);
  });
});

describe('Sandbox hostname', () => {
  it('refuses a hostname sethostname(2) would refuse, or a resolver could not use, before doing anything', async () => {
    const { sandbox } = setup();
    for (const hostname of ['x'.repeat(65), 'a\u0000b', '-lead', 'trail-', 'sp ace', 'a/b']) {
      await assert.rejects(sandbox.create(request({ hostname })), isKind('invalid-argument', /hostname .* is invalid/), JSON.stringify(hostname));
    }
  });
});

describe('Sandbox DNS', () => {
  it('writes the checked lines as the sandbox resolv.conf', async () => {
    const { sandbox } = setup();
    await sandbox.create(request({ dns: ['nameserver 10.0.0.2', 'nameserver  fe80::1%eth0', 'search example.com svc.cluster.local.', 'options ndots:5 rotate'] }));
    assert.equal(
      fs.readFileSync(sandbox.resolvConfPath, 'utf8'),
      'nameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch example.com svc.cluster.local.\noptions ndots:5 rotate\n',
    );
  });

  const bad: Array<[string, string[], RegExp]> = [
    ['a nameserver that is no address', ['nameserver example.com'], /not an IPv4 or IPv6 address/],
    ['a nameserver with two addresses', ['nameserver 1.1.1.1 8.8.8.8'], /exactly one address/],
    ['an unknown directive', ['domain example.com'], /not a supported resolv.conf line/],
    ['a newline smuggling a directive', ['nameserver 1.1.1.1\nsearch evil.example'], /printable ASCII/],
    ['a control character', ['search a\u0007b'], /printable ASCII/],
    ['a search without domains', ['search'], /names no domain/],
    ['a malformed domain', ['search exa mple..com'], /not a domain name/],
    ['a malformed option', ['options ndots=5'], /not a resolver option/],
    ['an empty line', [''], /not a supported/],
    ['a line too long', [`search ${'a.'.repeat(300)}com`], /longer than/],
    ['too many lines', Array.from({ length: MAX_DNS_LINES + 1 }, () => 'nameserver 10.0.0.1'), /at most/],
  ];
  for (const [what, dns, message] of bad) {
    it(`refuses ${what} with INVALID_ARGUMENT, and creates nothing`, async () => {
      const { sandbox } = setup();
      await assert.rejects(sandbox.create(request({ dns })), isKind('invalid-argument', message));
      assert.equal(sandbox.id, null);
      assert.equal(fs.existsSync(sandbox.resolvConfPath), false);
    });
  }

  it('a container gets the sandbox resolv.conf read-only at /etc/resolv.conf when dns was given', async () => {
    const { sandbox, runtime, sharedDir } = setup();
    await sandbox.create(request({ dns: ['nameserver 10.0.0.2'] }));
    await sandbox.createContainer('c1', 'c1', specJson(sharedDir));
    const mount = mountsOf(runtime, 'c1').find((m) => m.destination === '/etc/resolv.conf');
    assert.ok(mount, 'a mount at /etc/resolv.conf');
    assert.equal(mount.source, sandbox.resolvConfPath);
    assert.equal(mount.type, 'bind');
    assert.ok(mount.options?.includes('ro'), 'read-only');
    await sandbox.removeContainer('c1', 5);
  });

  it('without dns no resolv.conf mount is added', async () => {
    const { sandbox, runtime, sharedDir } = setup();
    await sandbox.create(request());
    await sandbox.createContainer('c1', 'c1', specJson(sharedDir));
    assert.deepEqual(mountsOf(runtime, 'c1'), []);
    await sandbox.removeContainer('c1', 5);
  });

  it('a spec may bind the sandbox resolv.conf itself, only to /etc/resolv.conf', async () => {
    const { sandbox, runtime, sharedDir } = setup();
    await sandbox.create(request({ dns: ['nameserver 10.0.0.2'] }));
    const own = { destination: '/etc/resolv.conf', type: 'bind', source: sandbox.resolvConfPath, options: ['rbind', 'ro'] };
    await sandbox.createContainer('c1', 'c1', specJson(sharedDir, { mounts: [own] }));
    assert.deepEqual(mountsOf(runtime, 'c1'), [own], 'kept as given, nothing added');
    const elsewhere = { ...own, destination: '/etc/hosts' };
    await assert.rejects(
      sandbox.createContainer('c2', 'c2', specJson(sharedDir, { mounts: [elsewhere] })),
      isKind('invalid-argument', /outside the allowed root/),
    );
    await sandbox.removeContainer('c1', 5);
  });

  it('a spec with its own /etc/resolv.conf mount keeps it', async () => {
    const { sandbox, runtime, sharedDir } = setup();
    await sandbox.create(request({ dns: ['nameserver 10.0.0.2'] }));
    fs.writeFileSync(path.join(sharedDir, 'my-resolv.conf'), 'nameserver 9.9.9.9\n');
    const own = { destination: '/etc/resolv.conf', type: 'bind', source: path.join(sharedDir, 'my-resolv.conf'), options: ['bind'] };
    await sandbox.createContainer('c1', 'c1', specJson(sharedDir, { mounts: [own] }));
    assert.deepEqual(mountsOf(runtime, 'c1'), [{ ...own, source: fs.realpathSync(own.source) }]);
    await sandbox.removeContainer('c1', 5);
  });
});
