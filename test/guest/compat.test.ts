// Both protocol versions against one guest (QEMU, the agent as PID 1), over
// the VM's channel: a v1 lifecycle by a client speaking v1, a v2 lifecycle by
// a client speaking v2, and each managing the other's containers. The
// virtio-serial port takes one host connection at a time and a client holds
// one channel, so the v1 and the v2 client connect one after the other; on
// the v2 client's connection raw v1 calls share the channel with v2 calls
// (one long-lived connection carrying both versions).
// Booted with the image's allow-all policy (the default policy is tested in
// foreign-boot.test.ts). Run with npm run test:guest.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SHARE_TAG, startVm, type Vm } from '../../build/vm';
import { AgentClient, ProtocolVersionError, type AgentEvent, type OutputChunk, type ProtocolVersion } from '../../src/client/client';
import { makeBusyboxRootfs } from '../helpers/rootfs';
import { containerSpec } from '../helpers/spec';

const SHARED_IN_GUEST = '/run/kata-containers/shared/containers';
const spec = (args: string[]) => containerSpec({ rootPath: 'busybox', args });
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });

async function text(gen: AsyncGenerator<OutputChunk>): Promise<{ text: string; chunks: OutputChunk[] }> {
  const chunks: OutputChunk[] = [];
  for await (const c of gen) chunks.push(c);
  return { text: Buffer.concat(chunks.map((c) => c.data)).toString(), chunks };
}

/** Events after `afterSeq` until `done`; fails after `ms` (TCG is slow). */
async function eventsUntil(client: AgentClient, afterSeq: number, done: (e: AgentEvent) => boolean, ms = 60_000): Promise<AgentEvent[]> {
  const seen: AgentEvent[] = [];
  let timer: NodeJS.Timeout | undefined;
  const read = (async () => {
    for await (const e of client.watchEvents({ afterSeq })) {
      seen.push(e);
      if (done(e)) break;
    }
    return seen;
  })();
  try {
    return await Promise.race([read, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`events: ${JSON.stringify(seen)}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('protocol v1 and v2 against one guest', () => {
  let vm: Vm;
  let shared: string;
  let client: AgentClient | undefined;
  const connect = async (protocol: ProtocolVersion) => {
    client?.close();
    client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60, protocols: [protocol] });
    assert.equal(client.protocol, protocol);
    assert.equal(client.negotiated.fallback, null);
    return client;
  };

  before(async () => {
    shared = fs.mkdtempSync(path.join(os.tmpdir(), 'guest-compat-'));
    makeBusyboxRootfs(path.join(shared, 'busybox'));
    vm = await startVm({ sharedDir: shared, kernelArgs: ['agent.policy=/etc/agent/policy-allow-all.json'] });
    await vm.waitForConsole(/"msg":"announce"/, 120_000);
  });

  after(async () => {
    client?.close();
    if (vm) {
      if (process.env.KEEP_CONSOLE) fs.copyFileSync(vm.consoleLog, process.env.KEEP_CONSOLE);
      await vm.stop();
    }
    if (shared) fs.rmSync(shared, { recursive: true, force: true });
  });

  it('the guest agent serves v1 and v2 and selects v2 for a client offering both', async () => {
    const c = await connect('v2');
    assert.deepEqual(c.agent.protocol_versions, ['v1', 'v2']);
    assert.equal(c.agent.selected_version, 'v2');
    c.close();
    client = undefined;
    const offered = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60 });
    assert.equal(offered.protocol, 'v2');
    offered.close();
  });

  it('v1: the sandbox, a container with stdin/stdout/stderr and its status, an exec, a signal', async () => {
    const c = await connect('v1');
    await c.createSandbox({ hostname: 'compat', storages: [{ driver: '9p', source: SHARE_TAG, fstype: '9p', mountPoint: SHARED_IN_GUEST }] });
    await c.createContainer({ containerId: 'v1-life', ociSpec: spec(['sh', '-c', 'echo hello; read line; echo got:$line; echo oops >&2; exit 3']) });
    await c.startContainer({ containerId: 'v1-life' });
    const out = text(c.readOutput({ containerId: 'v1-life' }));
    const err = text(c.readOutput({ containerId: 'v1-life', stream: 'stderr' }));
    assert.deepEqual(await c.writeInput({ containerId: 'v1-life', data: 'line\n' }), { offset: 5 });
    await c.closeInput({ containerId: 'v1-life' });
    assert.equal((await out).text, 'hello\ngot:line\n');
    assert.equal((await err).text, 'oops\n');
    const s = await c.wait({ containerId: 'v1-life' });
    assert.deepEqual([s.code, s.signal, s.source], [3, null, 'v1']);
    await c.removeContainer({ containerId: 'v1-life' });

    // A container made over v1, left running for v2 to manage.
    await c.createContainer({ containerId: 'v1-box', execId: 'v1-box-init', ociSpec: spec(['sleep', '100000']) });
    await c.startContainer({ containerId: 'v1-box' });
    await c.exec({ containerId: 'v1-box', execId: 'v1-exec', process: proc(['sh', '-c', 'echo from-v1; exit 4']) });
    assert.equal((await c.wait({ containerId: 'v1-box', execId: 'v1-exec' })).code, 4);
    assert.equal((await text(c.readOutput({ containerId: 'v1-box', execId: 'v1-exec' }))).text, 'from-v1\n');
    await c.exec({ containerId: 'v1-box', execId: 'v1-sleeper', process: proc(['sleep', '1000']) });
    await c.signal({ containerId: 'v1-box', execId: 'v1-sleeper', signal: 'SIGTERM' });
    const t = await c.wait({ containerId: 'v1-box', execId: 'v1-sleeper' });
    assert.deepEqual([t.signal, t.shellStatus, t.ambiguous], [15, 143, true]);
    await assert.rejects(c.listContainers(), ProtocolVersionError);
  });

  it('v2: a container read from offsets, events from a cursor, structured statuses, listing', async () => {
    const c = await connect('v2');
    await c.createContainer({ containerId: 'v2-life', ociSpec: spec(['sh', '-c', 'echo hello; read line; echo got:$line; exit 5']) });
    await c.startContainer({ containerId: 'v2-life' });
    await c.writeInput({ containerId: 'v2-life', data: 'line\n' });
    await c.closeInput({ containerId: 'v2-life' });
    const all = await text(c.readOutput({ containerId: 'v2-life' }));
    assert.equal(all.text, 'hello\ngot:line\n');
    assert.deepEqual(all.chunks.at(-1), { offset: 15, data: Buffer.alloc(0), eof: true });
    const from6 = await text(c.readOutput({ containerId: 'v2-life', offset: 6 }));
    assert.equal(from6.text, 'got:line\n');
    assert.equal(from6.chunks[0]!.offset, 6);
    const s = await c.wait({ containerId: 'v2-life' });
    assert.deepEqual([s.code, s.signal, s.coreDumped, s.oomKilled, s.source], [5, null, false, false, 'v2']);
    assert.ok(s.startedAtMs && s.exitedAtMs && s.exitedAtMs >= s.startedAtMs);
    // The same status again (v2 keeps it until released).
    assert.equal((await c.wait({ containerId: 'v2-life' })).code, 5);
    const events = await eventsUntil(c, 0, (e) => e.type === 'process_exited' && e.containerId === 'v2-life');
    const exit = events.at(-1)!;
    assert.ok(exit.type === 'process_exited' && exit.status?.code === 5);
    // v1's processes are on the same bus.
    assert.ok(events.some((e) => e.type === 'process_exited' && e.containerId === 'v1-box' && e.execId === 'v1-exec' && e.status?.code === 4), JSON.stringify(events));
    const again = await eventsUntil(c, exit.seq - 1, () => true);
    assert.deepEqual(again[0], exit);
    await c.releaseProcess({ containerId: 'v2-life' });
    await c.removeContainer({ containerId: 'v2-life' });

    // A container made over v2, left running for v1 to manage.
    await c.createContainer({ containerId: 'v2-box', ociSpec: spec(['sleep', '100000']) });
    await c.startContainer({ containerId: 'v2-box' });
  });

  it('v2 manages the container v1 made: listed with its processes, an exec read by offset, removal', async () => {
    const c = await connect('v2');
    const listed = await c.listContainers();
    const box = listed.find((x) => x.containerId === 'v1-box');
    assert.ok(box, JSON.stringify(listed));
    assert.equal(box.state, 'running');
    assert.equal(box.init?.execId, 'v1-box-init');
    await c.exec({ containerId: 'v1-box', execId: 'v2-exec', process: proc(['sh', '-c', 'echo from-v2; exit 6']) });
    assert.equal((await text(c.readOutput({ containerId: 'v1-box', execId: 'v2-exec' }))).text, 'from-v2\n');
    assert.equal((await c.wait({ containerId: 'v1-box', execId: 'v2-exec' })).code, 6);
    await c.releaseProcess({ containerId: 'v1-box', execId: 'v2-exec' });
    // On this one connection, v1 calls share the channel with v2's: v1 polls the output of a v2 exec.
    await c.exec({ containerId: 'v1-box', execId: 'both', process: proc(['sh', '-c', 'echo on-one-channel']) });
    const polled = await c.v1('ReadStdout', { container_id: 'v1-box', exec_id: 'both', len: 65536 });
    assert.equal(polled.data.toString(), 'on-one-channel\n');
    assert.equal((await c.wait({ containerId: 'v1-box', execId: 'both' })).code, 0);
    await c.signal({ containerId: 'v1-box', signal: 'SIGKILL' });
    const init = await c.wait({ containerId: 'v1-box' });
    assert.deepEqual([init.code, init.signal], [null, 9]);
    await c.removeContainer({ containerId: 'v1-box' });
    assert.ok(!(await c.listContainers()).some((x) => x.containerId === 'v1-box'));
  });

  it('v1 manages the container v2 made: an exec with stdin, its output and status, removal', async () => {
    const c = await connect('v1');
    await c.exec({ containerId: 'v2-box', execId: 'v1-cat', process: proc(['cat']) });
    await c.writeInput({ containerId: 'v2-box', execId: 'v1-cat', data: 'through v1\n' });
    await c.closeInput({ containerId: 'v2-box', execId: 'v1-cat' });
    assert.equal((await text(c.readOutput({ containerId: 'v2-box', execId: 'v1-cat' }))).text, 'through v1\n');
    assert.equal((await c.wait({ containerId: 'v2-box', execId: 'v1-cat' })).code, 0);
    // v1 names the init by the empty exec id, whatever v2 called it.
    await c.signal({ containerId: 'v2-box', signal: 'SIGKILL' });
    assert.equal((await c.wait({ containerId: 'v2-box' })).shellStatus, 137);
    await c.removeContainer({ containerId: 'v2-box' });
  });

  it('powers off at DestroySandbox (over v2)', async () => {
    const c = await connect('v2');
    await c.destroySandbox();
    c.close();
    client = undefined;
    assert.equal(await vm.exited, 0);
    assert.doesNotMatch(vm.console(), /Kernel panic/);
  });
});
