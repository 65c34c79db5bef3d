import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AgentError } from '../errors';
import { NO_POLICY, parsePolicy, PolicyError, type Policy } from './policy';
import { checkCopyFile, checkExec, checkHostNamespace, checkPrivileged, checkRpc, checkStorage } from './rules';

const REPO = path.resolve(__dirname, '..', '..', '..');
const policy = (o: unknown): Policy => parsePolicy(Buffer.from(JSON.stringify(o)), 'test.json');

const deniedBy = (rule: RegExp) => (err: unknown) => {
  assert.ok(err instanceof AgentError, String(err));
  assert.equal(err.kind, 'permission-denied');
  assert.match(err.message, rule);
  return true;
};

describe('policy file', () => {
  it('reads every section, with a digest of the bytes', () => {
    const text = JSON.stringify({
      format: 1,
      description: 'test',
      rpcs: { default: 'allow', rules: [{ protocols: ['v1'], methods: ['SetGuestDateTime'], action: 'deny', why: 'the clock is the image\'s' }] },
      copy_file: { paths: ['/run/shared/etc'] },
      storages: { drivers: ['9p'], mount_points: ['/run/shared'] },
      exec: { allowed: true, commands: ['/bin/sh'] },
      containers: { host_namespaces: ['network'], privileged: false },
    });
    const p = parsePolicy(Buffer.from(text), 'x.json');
    assert.equal(p.loaded, true);
    assert.match(p.digest, /^sha256:[0-9a-f]{64}$/);
    assert.notEqual(parsePolicy(Buffer.from(`${text} `), 'x.json').digest, p.digest, 'the digest is of the bytes');
    assert.deepEqual(p.containers, { hostNamespaces: ['network'], privileged: false });
    assert.deepEqual(p.storageDrivers, ['9p']);
  });

  it('an empty policy allows every RPC but shares no namespace and allows nothing privileged', () => {
    const p = policy({ format: 1 });
    assert.doesNotThrow(() => checkRpc(p, 'v1', 'CopyFile'));
    assert.deepEqual(p.containers, { hostNamespaces: [], privileged: false });
  });

  it('refuses unknown keys, wrong types, a bad format and "mount" as a host namespace, naming the key', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ format: 2 }, /"format" must be 1/],
      [{ format: 1, rpc: {} }, /top level has unknown key "rpc"/],
      [{ format: 1, rpcs: { rules: [{ protocols: ['v1'], methods: ['X'], action: 'maybe' }] } }, /rpcs\.rules\[0\]\.action must be one of allow, deny/],
      [{ format: 1, rpcs: { rules: [{ protocols: ['1'], methods: ['X'], action: 'deny' }] } }, /rpcs\.rules\[0\]\.protocols\[0\]/],
      [{ format: 1, containers: { host_namespaces: ['mount'] } }, /may not name "mount"/],
      [{ format: 1, containers: { host_namespaces: ['pid', 'net'] } }, /"net" is not one of/],
      [{ format: 1, containers: { privileged: 'yes' } }, /containers\.privileged must be true or false/],
      [{ format: 1, copy_file: { paths: ['relative'] } }, /copy_file\.paths\[0\]/],
    ];
    for (const [o, re] of cases) assert.throws(() => policy(o), (e: unknown) => e instanceof PolicyError && re.test((e as Error).message), re.source);
    assert.throws(() => parsePolicy(Buffer.from('{'), 'bad.json'), /bad\.json is not valid JSON/);
  });

  it('the image\'s policies parse: the default and the allow-all one for debugging', () => {
    const file = path.join(REPO, 'rootfs', 'policy', 'default.json');
    const p = parsePolicy(fs.readFileSync(file), file);
    assert.ok(p.containers.hostNamespaces.includes('network'), 'containers share the VM\'s network, as in Kata');
    assert.ok(!p.containers.hostNamespaces.includes('pid'));
    assert.equal(p.containers.privileged, false);
    const all = path.join(REPO, 'rootfs', 'policy', 'allow-all.json');
    assert.equal(parsePolicy(fs.readFileSync(all), all).containers.privileged, true);
  });
});

describe('policy rules', () => {
  const p = policy({
    format: 1,
    rpcs: {
      default: 'allow',
      rules: [
        { protocols: ['v1'], methods: ['SetGuestDateTime', 'OnlineCPUMem'], action: 'deny', why: 'fixed by the image' },
        { protocols: ['*'], methods: ['ReseedRandomDev'], action: 'deny' },
      ],
    },
    copy_file: { paths: ['/shared/etc'] },
    storages: { drivers: ['9p', 'local'], mount_points: ['/shared'] },
    exec: { allowed: true, commands: ['/bin/sh', 'ls'] },
    containers: { host_namespaces: ['network'], privileged: false },
  });

  it('RPC rules: first match wins, per protocol version; the error names the rule and why', () => {
    assert.throws(() => checkRpc(p, 'v1', 'SetGuestDateTime'), deniedBy(/v1 SetGuestDateTime is denied by the agent policy \(test\.json, rule rpcs\.rules\[0\]: fixed by the image\)/));
    assert.doesNotThrow(() => checkRpc(p, 'v2', 'SetGuestDateTime'), 'the rule names v1 only');
    assert.throws(() => checkRpc(p, 'v2', 'ReseedRandomDev'), deniedBy(/rules\[1\]/));
    assert.doesNotThrow(() => checkRpc(p, 'v1', 'CreateContainer'));
    const closed = policy({ format: 1, rpcs: { default: 'deny', rules: [{ protocols: ['v1'], methods: ['ListInterfaces'], action: 'allow' }] } });
    assert.throws(() => checkRpc(closed, 'v1', 'CreateContainer'), deniedBy(/rule rpcs\.default/));
    assert.doesNotThrow(() => checkRpc(closed, 'v1', 'ListInterfaces'));
    assert.doesNotThrow(() => checkRpc(closed, 'stable', 'Negotiate'), 'discovery is always allowed');
  });

  it('argument rules: CopyFile paths, storages, exec, host namespaces, privileged features', () => {
    assert.doesNotThrow(() => checkCopyFile(p, '/shared/etc/hosts'));
    assert.throws(() => checkCopyFile(p, '/shared/etcetera/x'), deniedBy(/copy_file\.paths/));
    assert.throws(() => checkCopyFile(p, '/shared/secret'), deniedBy(/copy_file\.paths/));
    assert.doesNotThrow(() => checkStorage(p, '9p', '/shared/pod'));
    assert.throws(() => checkStorage(p, 'virtio-blk', '/shared/pod'), deniedBy(/storages\.drivers/));
    assert.throws(() => checkStorage(p, '9p', '/elsewhere'), deniedBy(/storages\.mount_points/));
    assert.doesNotThrow(() => checkExec(p, '/bin/sh', 'c1'));
    assert.throws(() => checkExec(p, '/bin/bash', 'c1'), deniedBy(/exec\.commands/));
    assert.throws(() => checkExec(policy({ format: 1, exec: { allowed: false } }), 'ls', 'c1'), deniedBy(/exec in container c1 .*exec\.allowed/));
    assert.doesNotThrow(() => checkHostNamespace(p, 'network', 'c1'));
    assert.throws(() => checkHostNamespace(p, 'pid', 'c1'), deniedBy(/sharing the guest's pid namespace.*containers\.host_namespaces/));
    assert.throws(() => checkPrivileged(p, 'capability CAP_SYS_ADMIN', 'c1'), deniedBy(/CAP_SYS_ADMIN in container c1.*containers\.privileged/));
  });

  it('without a policy file nothing is denied by the policy', () => {
    assert.doesNotThrow(() => {
      checkRpc(NO_POLICY, 'v1', 'SetGuestDateTime');
      checkCopyFile(NO_POLICY, '/anything');
      checkStorage(NO_POLICY, 'virtio-blk', '/x');
      checkExec(NO_POLICY, 'x', 'c');
      checkHostNamespace(NO_POLICY, 'pid', 'c');
      checkPrivileged(NO_POLICY, 'x', 'c');
    });
  });
});
