// The in-place upgrade inside a guest (QEMU, the agent as PID 1), both ways:
// the guest boots today's image; PID 1 is first replaced by the newest
// archived release that has the mechanism (its archived bundle and addons
// made into a guest executable, build/sea.mjs --release), then by today's
// build again, each binary in the 9p shared directory. Through both: a
// container printing a counter keeps its pid, the counter read on by offset
// has no gap and no repeat, an exec that ended during a swap keeps its
// status, Discovery names each upgrade, and the kernel does not panic. The
// virtio-serial channel carries one session at a time: the client
// reconnects after each exec (once the new image announced: docs/upgrade.md).
// Booted with the image's allow-all policy. Run with npm run test:guest.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { GUEST_DIR, SHARE_TAG, startVm, type Vm } from '../../build/vm';
import { AgentClient } from '../../src/client/client';
import { REPO } from '../helpers/agent-process';
import { makeBusyboxRootfs } from '../helpers/rootfs';
import { containerSpec } from '../helpers/spec';

const SHARED_IN_GUEST = '/run/kata-containers/shared/containers';
const RELEASES = path.join(REPO, 'test/fixtures/releases');
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });
const COUNTER = ['sh', '-c', 'i=0; while :; do echo $i; i=$((i+1)); sleep 0.02; done'];
/** The newest archived release with the upgrade mechanism (a state sample). */
const OLD = fs.readdirSync(RELEASES).filter((v) => fs.existsSync(path.join(RELEASES, v, 'state', 'state.json')))
  .sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).at(-1)!;

let vm: Vm;
let shared: string;
before(async () => {
  shared = fs.mkdtempSync(path.join(os.tmpdir(), 'guest-upgrade-'));
  makeBusyboxRootfs(path.join(shared, 'busybox'));
  fs.copyFileSync(path.join(GUEST_DIR, 'agent'), path.join(shared, 'agent-new'));
  fs.chmodSync(path.join(shared, 'agent-new'), 0o755);
  execFileSync(process.execPath, [path.join(REPO, 'build/sea.mjs'), '--release', path.join(RELEASES, OLD), '--out', path.join(shared, 'agent-old')], { stdio: 'ignore' });
  vm = await startVm({ sharedDir: shared, kernelArgs: ['agent.policy=/etc/agent/policy-allow-all.json', ...(process.env.GUEST_DEBUG ? ['agent.log=debug'] : [])] });
  await vm.waitForConsole(/"msg":"announce"/, 120_000);
});
after(async () => {
  if (vm) {
    if (process.env.KEEP_CONSOLE) fs.copyFileSync(vm.consoleLog, process.env.KEEP_CONSOLE);
    await vm.stop();
  }
  if (shared) fs.rmSync(shared, { recursive: true, force: true });
});

function counts(text: string, from: number): number {
  const lines = text.split('\n').filter((l) => l !== '');
  lines.forEach((l, i) => assert.equal(Number(l), from + i, `counter line ${i} after the upgrade`));
  return from + lines.length;
}

/** Reads the counter from `offset` until `lines` more lines; returns the text up to the last whole line. */
async function readCounter(client: AgentClient, offset: number, lines: number): Promise<string> {
  let text = '';
  for await (const c of client.readOutput({ containerId: 'ctr', offset })) {
    text += c.data.toString();
    if (text.split('\n').length > lines) break;
  }
  return text.slice(0, text.lastIndexOf('\n') + 1);
}

/** UpgradeAgent to `name` in the shared directory; a client of the image it started (after its announce). */
async function upgradeTo(client: AgentClient, name: string, requestId: string, announces: number): Promise<AgentClient> {
  const sha256 = crypto.createHash('sha256').update(fs.readFileSync(path.join(shared, name))).digest('hex');
  const plan = await client.v2('UpgradeAgent', { binary_path: name, sha256, request_id: requestId }, { deadlineSeconds: 300 });
  client.close();
  for (const deadline = Date.now() + 120_000; (fs.readFileSync(vm.consoleLog, 'utf8').match(/"tookOverFrom"/g) ?? []).length < announces;) {
    assert.ok(Date.now() < deadline, `${name}: the new image never announced`);
    await new Promise((r) => setTimeout(r, 250));
  }
  for (const deadline = Date.now() + 120_000; ;) {
    assert.ok(Date.now() < deadline, `${name}: the new image never answered`);
    const next = await AgentClient.connect(vm.agentAddr, { connectTimeout: 10, protocols: ['v2'] }).catch(() => null);
    if (next?.agent.image?.upgrade_id === plan.upgrade_id) return next;
    next?.close();
    await new Promise((r) => setTimeout(r, 500));
  }
}

it(`PID 1 replaced by release ${OLD}, then by today's build: containers keep running, output goes on without a gap, statuses kept`, { timeout: 900_000 }, async () => {
  let client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60, protocols: ['v2'] });
  await client.createSandbox({ hostname: 'upgrade', storages: [{ driver: '9p', source: SHARE_TAG, fstype: '9p', mountPoint: SHARED_IN_GUEST }] });
  await client.createContainer({ containerId: 'ctr', ociSpec: containerSpec({ rootPath: 'busybox', args: COUNTER }) });
  await client.startContainer({ containerId: 'ctr' });
  const initPid = (await client.getContainer('ctr')).init!.pid;
  let text = await readCounter(client, 0, 20);
  let offset = Buffer.byteLength(text);
  let next = counts(text, 0);

  let n = 0;
  for (const [name, version] of [['agent-old', OLD], ['agent-new', null]] as const) {
    n++;
    await client.exec({ containerId: 'ctr', execId: `short-${n}`, process: proc(['sh', '-c', 'sleep 3; exit 5']) });
    client = await upgradeTo(client, name, `guest-up-${n}`, n);
    if (version) assert.equal(client.agent.agent_version, version);
    assert.equal(client.agent.image!.upgrades, n);
    const c = await client.getContainer('ctr');
    assert.equal(c.state, 'running');
    assert.equal(c.init!.pid, initPid, `the same container process after ${name}`);
    assert.equal((await client.wait({ containerId: 'ctr', execId: `short-${n}` })).code, 5);
    text = await readCounter(client, offset, 30);
    next = counts(text, next);
    offset += Buffer.byteLength(text);
  }
  await client.removeContainer({ containerId: 'ctr' });
  client.close();
  const consoleText = fs.readFileSync(vm.consoleLog, 'utf8');
  assert.ok(!consoleText.includes('Kernel panic'), 'no kernel panic');
});
