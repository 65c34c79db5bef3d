// The trust boundary with real crun: container specs a hostile runtime could
// send, through the bundled agent. Each is refused with the right status and
// nothing is done — no file read or written outside the allowed roots, no
// container left, the agent's own mounts unchanged and the agent still able
// to run containers. Unit tests of each check: src/agent/oci/spec.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { AgentClient } from '../../src/client/client';
import { startAgent, type TestAgent } from '../helpers/agent-process';
import { containerSpec } from '../helpers/spec';
import { readToEnd } from '../helpers/stdio';

const proc = (args: string[], extra: Record<string, unknown> = {}) => JSON.stringify({ args, ...extra });

type Spec = ReturnType<typeof containerSpec> & { linux: { namespaces: Array<{ type: string; path?: string }> } & Record<string, unknown>; mounts: unknown[] };
const spec = (args: string[] = ['sleep', '1000']) => containerSpec({ rootPath: 'busybox', args }) as Spec;

const code = (c: grpc.status, re?: RegExp) => (err: grpc.ServiceError) => {
  assert.equal(err.code, c, `${grpc.status[err.code]}: ${err.details}`);
  if (re) assert.match(err.details, re);
  return true;
};

describe('container specs from a hostile runtime', () => {
  let agent: TestAgent;
  let client: AgentClient;
  let outside: string;
  let agentMounts: string;
  const agentPid = () => agent.child.pid!;
  const mountinfo = () => fs.readFileSync(`/proc/${agentPid()}/mountinfo`, 'utf8');

  before(async () => {
    agent = await startAgent();
    client = await agent.connect();
    // A directory outside every root the agent allows, with a secret in it.
    outside = fs.mkdtempSync(path.join(os.tmpdir(), 'outside-roots-'));
    fs.writeFileSync(path.join(outside, 'secret'), 'not for containers\n');
    for (const d of ['l', 'u', 'w']) fs.mkdirSync(path.join(outside, d));
    fs.writeFileSync(path.join(outside, 'l', 'secret'), 'lower secret\n');
    agentMounts = mountinfo();
  });
  after(async () => {
    client?.close();
    await agent?.stop();
    fs.rmSync(outside, { recursive: true, force: true });
  });

  const createRefused = async (id: string, s: unknown, c: grpc.status, re: RegExp) => {
    await assert.rejects(client.v1('CreateContainer', { container_id: id, oci_spec_json: JSON.stringify(s) }), code(c, re));
    // Nothing was created: the id is free.
    await assert.rejects(client.v1('StartContainer', { container_id: id }), code(grpc.status.NOT_FOUND));
  };

  it('an overlay mount whose layers lie outside the shared dir is refused', async () => {
    const s = spec(['cat', '/x/secret']);
    s.mounts.push({ destination: '/x', type: 'overlay', source: 'overlay', options: [`lowerdir=${outside}/l,upperdir=${outside}/u,workdir=${outside}/w`] });
    await createRefused('overlay', s, grpc.status.INVALID_ARGUMENT, /mounts\[\d+\]\.options lowerdir .*is outside the allowed root/);
    assert.deepEqual(fs.readdirSync(path.join(outside, 'u')), [], 'nothing written into the upper layer');
  });

  it('spec hooks are refused at every stage, and none runs', async () => {
    for (const stage of ['createRuntime', 'prestart', 'poststart', 'poststop', 'createContainer', 'startContainer']) {
      const marker = path.join(outside, `hook-${stage}`);
      const s = { ...spec(), hooks: { [stage]: [{ path: '/bin/sh', args: ['sh', '-c', `id > ${marker}`] }] } };
      await createRefused(`hook-${stage.toLowerCase()}`, s, grpc.status.INVALID_ARGUMENT, /hooks \(.*\) are refused/);
      assert.equal(fs.existsSync(marker), false, `${stage} hook ran`);
    }
  });

  it("namespace paths naming the agent's own namespaces are refused, and the agent's mounts stay as they were", async () => {
    for (const [type, file] of [['pid', 'pid'], ['network', 'net'], ['ipc', 'ipc'], ['uts', 'uts'], ['mount', 'mnt']]) {
      const s = spec();
      s.linux.namespaces = [...s.linux.namespaces.filter((n) => n.type !== type), { type: type!, path: `/proc/${agentPid()}/ns/${file}` }];
      await createRefused(`ns-${type}`, s, grpc.status.INVALID_ARGUMENT, /is not a container of this sandbox/);
    }
    const none = spec();
    none.linux.namespaces = none.linux.namespaces.filter((n) => n.type !== 'mount');
    await createRefused('no-mount-ns', none, grpc.status.INVALID_ARGUMENT, /no mount namespace/);
    assert.equal(mountinfo(), agentMounts, "the agent's mount table is unchanged");
  });

  it("a container may join a sibling's namespaces, but not the agent's through a sibling that shares them", async () => {
    await client.v1('CreateContainer', { container_id: 'first', oci_spec_json: JSON.stringify(spec()) });
    await client.v1('StartContainer', { container_id: 'first' });
    const [firstPid] = JSON.parse((await client.v1('ListProcesses', { container_id: 'first', format: 'json' })).process_list.toString()) as number[];
    const joiner = spec(['sh', '-c', 'echo $$; sleep 1000']);
    joiner.linux.namespaces = [...joiner.linux.namespaces.filter((n) => n.type !== 'pid'), { type: 'pid', path: `/proc/${firstPid}/ns/pid` }];
    await client.v1('CreateContainer', { container_id: 'joiner', oci_spec_json: JSON.stringify(joiner) });
    await client.v1('StartContainer', { container_id: 'joiner' });
    // In the sibling's pid namespace the joiner's shell is not pid 1 (the sibling's init is).
    await client.v1('ExecProcess', { container_id: 'first', exec_id: 'ps', oci_process_json: proc(['sh', '-c', 'ls -d /proc/[0-9]* | wc -l']) });
    assert.ok(Number((await readToEnd(client, 'first', 'ps')).trim()) >= 2, "the sibling sees the joiner's processes");
    // The sibling shares the guest's network namespace (no network entry): joining that one is joining the agent's.
    const viaSibling = spec();
    viaSibling.linux.namespaces = [...viaSibling.linux.namespaces.filter((n) => n.type !== 'network')];
    await client.v1('CreateContainer', { container_id: 'hostnet', oci_spec_json: JSON.stringify(viaSibling) });
    await client.v1('StartContainer', { container_id: 'hostnet' });
    const [hostnetPid] = JSON.parse((await client.v1('ListProcesses', { container_id: 'hostnet', format: 'json' })).process_list.toString()) as number[];
    const sneaky = spec();
    sneaky.linux.namespaces = [...sneaky.linux.namespaces.filter((n) => n.type !== 'network'), { type: 'network', path: `/proc/${hostnetPid}/ns/net` }];
    await createRefused('sneaky', sneaky, grpc.status.INVALID_ARGUMENT, /is the agent's own network namespace/);
    for (const id of ['joiner', 'first', 'hostnet']) await client.v1('RemoveContainer', { container_id: id });
  });

  it('file systems that reach devices or the host are refused in specs', async () => {
    for (const [type, source] of [['ext4', '/dev/vda'], ['9p', 'kataShared'], ['debugfs', 'debugfs'], ['binfmt_misc', 'binfmt_misc']]) {
      const s = spec();
      s.mounts.push({ destination: '/m', type, source });
      await createRefused(`fs-${type.replace('_', '-')}`, s, grpc.status.INVALID_ARGUMENT, /is not allowed in a container spec/);
    }
  });

  it('after all that, the agent still runs containers', async () => {
    await client.v1('CreateContainer', { container_id: 'after', oci_spec_json: JSON.stringify(spec(['echo', 'still fine'])) });
    await client.v1('StartContainer', { container_id: 'after' });
    assert.equal(await readToEnd(client, 'after', ''), 'still fine\n');
    await client.v1('RemoveContainer', { container_id: 'after' });
    assert.ok(agent.alive());
    assert.equal(mountinfo(), agentMounts);
  });
});

describe('the policy on container features', () => {
  let agent: TestAgent;
  let client: AgentClient;
  let dir: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'policy-spec-'));
    const file = path.join(dir, 'policy.json');
    fs.writeFileSync(file, JSON.stringify({
      format: 1,
      exec: { allowed: true, commands: ['echo'] },
      storages: { drivers: ['local'] },
      containers: { host_namespaces: ['network', 'cgroup'], privileged: false },
    }));
    agent = await startAgent({ args: ['--policy', file] });
    client = await agent.connect();
  });
  after(async () => {
    client?.close();
    await agent?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('denies what it does not allow with PERMISSION_DENIED naming the rule, and runs the rest', async () => {
    const hostPid = spec();
    hostPid.linux.namespaces = hostPid.linux.namespaces.filter((n) => n.type !== 'pid');
    await assert.rejects(client.v1('CreateContainer', { container_id: 'p1', oci_spec_json: JSON.stringify(hostPid) }),
      code(grpc.status.PERMISSION_DENIED, /sharing the guest's pid namespace .*rule containers\.host_namespaces/));
    const admin = spec();
    (admin.process as Record<string, unknown>).capabilities = { bounding: ['CAP_SYS_ADMIN'], effective: ['CAP_SYS_ADMIN'], permitted: ['CAP_SYS_ADMIN'] };
    await assert.rejects(client.v1('CreateContainer', { container_id: 'p2', oci_spec_json: JSON.stringify(admin) }),
      code(grpc.status.PERMISSION_DENIED, /capability CAP_SYS_ADMIN .*rule containers\.privileged/));
    await assert.rejects(client.v1('CreateContainer', {
      container_id: 'p3', oci_spec_json: JSON.stringify(spec()),
      storages: [{ driver: 'tmpfs', source: 'tmpfs', fstype: 'tmpfs', options: [], mount_point: `${agent.sharedDir}/p3-tmp` }],
    }), code(grpc.status.PERMISSION_DENIED, /the "tmpfs" storage driver .*rule storages\.drivers/));

    await client.v1('CreateContainer', { container_id: 'ok', oci_spec_json: JSON.stringify(spec()) });
    await client.v1('StartContainer', { container_id: 'ok' });
    await assert.rejects(client.v1('ExecProcess', { container_id: 'ok', exec_id: 'sh', oci_process_json: proc(['sh', '-c', 'id']) }),
      code(grpc.status.PERMISSION_DENIED, /exec of "sh" in container ok .*rule exec\.commands/));
    await client.v1('ExecProcess', { container_id: 'ok', exec_id: 'echo', oci_process_json: proc(['echo', 'allowed']) });
    assert.equal(await readToEnd(client, 'ok', 'echo'), 'allowed\n');
    await client.v1('RemoveContainer', { container_id: 'ok' });
  });
});
