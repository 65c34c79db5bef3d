// The in-place upgrade inside a guest (QEMU, the agent as PID 1), both ways:
// the guest boots today's image; PID 1 is first replaced by the newest
// archived release that has the mechanism (its archived bundle and addons
// made into a guest executable, build/sea.mjs --release), then by today's
// build again, each binary in the 9p shared directory. Through both: a
// container printing a counter keeps its pid, the counter read on by offset
// has no gap and no repeat, an exec that ended during a swap keeps its
// status, Discovery names each upgrade, and the kernel does not panic. The
// virtio-serial channel carries one session at a time: the client
// reconnects after each exec; from today's image to today's it connects at
// once (the port is handed over open: docs/upgrade.md). Then faulty binaries:
// refused at pre-flight, or rolled back. Booted with the image's allow-all
// policy. Run with npm run test:guest.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { GUEST_DIR, SHARE_TAG, startVm, type Vm } from '../../build/vm';
import { AgentCallError, AgentClient } from '../../src/client/client';
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

/** The sha256 of a file in the shared directory. */
const sha256Of = (name: string) => crypto.createHash('sha256').update(fs.readFileSync(path.join(shared, name))).digest('hex');

/**
 * A client of the image whose upgrade id is `upgradeId`. With `atOnce`, every
 * connection attempt must succeed: the new image takes the serial port over
 * open, so a host that connects during the exec is served once it runs (an
 * attempt that lands on the old image before it drains sees the old id and
 * tries again). Otherwise (a release before 0.5.0 on either side, which
 * neither hands the port over nor keeps what a host sends meanwhile) the
 * host waits for the new image's announce on the console first.
 */
async function clientOf(upgradeId: string, what: string, o: { atOnce: boolean; announces?: number }): Promise<AgentClient> {
  if (!o.atOnce) {
    for (const deadline = Date.now() + 120_000; (fs.readFileSync(vm.consoleLog, 'utf8').match(/"tookOverFrom"/g) ?? []).length < o.announces!;) {
      assert.ok(Date.now() < deadline, `${what}: the new image never announced`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  for (const deadline = Date.now() + 120_000; ;) {
    assert.ok(Date.now() < deadline, `${what}: the new image never answered`);
    const next = o.atOnce
      ? await AgentClient.connect(vm.agentAddr, { connectTimeout: 90, protocols: ['v2'] })
      : await AgentClient.connect(vm.agentAddr, { connectTimeout: 10, protocols: ['v2'] }).catch(() => null);
    if (next?.agent.image?.upgrade_id === upgradeId) return next;
    next?.close();
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** UpgradeAgent to `name` in the shared directory; a client of the image it started. */
async function upgradeTo(client: AgentClient, name: string, requestId: string, o: { atOnce: boolean; announces?: number }): Promise<AgentClient> {
  const plan = await client.v2('UpgradeAgent', { binary_path: name, sha256: sha256Of(name), request_id: requestId }, { deadlineSeconds: 300 });
  client.close();
  return clientOf(plan.upgrade_id, name, o);
}

it(`PID 1 replaced by release ${OLD}, then by today's build, then by today's build again: containers keep running, output goes on without a gap, statuses kept; between today's images a host connecting during the exec is served`, { timeout: 900_000 }, async () => {
  let client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60, protocols: ['v2'] });
  await client.createSandbox({ hostname: 'upgrade', storages: [{ driver: '9p', source: SHARE_TAG, fstype: '9p', mountPoint: SHARED_IN_GUEST }] });
  await client.createContainer({ containerId: 'ctr', ociSpec: containerSpec({ rootPath: 'busybox', args: COUNTER }) });
  await client.startContainer({ containerId: 'ctr' });
  const initPid = (await client.getContainer('ctr')).init!.pid;
  let text = await readCounter(client, 0, 20);
  let offset = Buffer.byteLength(text);
  let next = counts(text, 0);

  let n = 0;
  // Releases from 0.5.0 on hand the serial port over open and take it so: a host may connect during those execs.
  const oldTakesThePort = OLD.localeCompare('0.5.0', undefined, { numeric: true }) >= 0;
  const steps = [
    { name: 'agent-old', version: OLD, atOnce: oldTakesThePort },
    { name: 'agent-new', version: null, atOnce: oldTakesThePort },
    { name: 'agent-new', version: null, atOnce: true },
  ];
  for (const { name, version, atOnce } of steps) {
    n++;
    await client.exec({ containerId: 'ctr', execId: `short-${n}`, process: proc(['sh', '-c', 'sleep 3; exit 5']) });
    client = await upgradeTo(client, name, `guest-up-${n}`, { atOnce, announces: n });
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

it('faulty binaries in the guest: a wrong sha256, one that cannot read the state and one that exits at start are refused at pre-flight; one never healthy after the takeover is rolled back; the container runs on, no panic', { timeout: 600_000 }, async () => {
  let client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60, protocols: ['v2'] });
  await client.createContainer({ containerId: 'steady', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '100000'] }) });
  await client.startContainer({ containerId: 'steady' });
  const pid = (await client.getContainer('steady')).init!.pid;
  const before = client.agent.image!;
  // Real executables (shell scripts run by the guest's busybox sh), each broken one way.
  const scripts: Record<string, string> = {
    'no-state.sh': `if [ "$1" = --check-state ]; then echo '{"ok":false,"error":"this build cannot read state format 1"}'; exit 1; fi; exit 0`,
    'exits-at-start.sh': `if [ "$1" = --check-state ]; then echo '{"ok":true,"version":"9.9.9","writes_format":1,"self_test":true}'; exit 0; fi; exit 3`,
    // Today's agent with the named fake fault (upgrade/commit.ts): nothing real makes a fresh image unhealthy on purpose.
    'unhealthy.sh': `AGENT_FAKE_FAULT=unhealthy-after-takeover exec ${SHARED_IN_GUEST}/agent-new "$@"`,
  };
  for (const [name, body] of Object.entries(scripts)) {
    fs.writeFileSync(path.join(shared, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  }
  const refused = async (binary_path: string, sha256: string, why: RegExp) =>
    assert.rejects(client.v2('UpgradeAgent', { binary_path, sha256, request_id: `fault-${binary_path}-${sha256.slice(0, 4)}` }, { deadlineSeconds: 300 }),
      (e: unknown) => e instanceof AgentCallError && e.codeName === 'FAILED_PRECONDITION' && why.test(e.message), binary_path);
  await refused('agent-new', 'f'.repeat(64), /has sha256 [0-9a-f]{64}, not the f{64} asked for/);
  await refused('no-state.sh', sha256Of('no-state.sh'), /state check .* cannot read state format 1/);
  await refused('exits-at-start.sh', sha256Of('exits-at-start.sh'), /start-up self-test .* failed/);
  assert.equal((await client.getContainer('steady')).init!.pid, pid);
  client.close();
  client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60, protocols: ['v2'] });
  assert.equal(client.agent.image!.started_at_unix_ms, before.started_at_unix_ms, 'no exec happened');

  const plan = await client.v2('UpgradeAgent', { binary_path: 'unhealthy.sh', sha256: sha256Of('unhealthy.sh'), request_id: 'fault-unhealthy' }, { deadlineSeconds: 300 });
  client.close();
  // The rolled-back image counts a failed upgrade and no upgrade id; the port was handed over both ways.
  let back: AgentClient | null = null;
  for (const deadline = Date.now() + 240_000; ;) {
    assert.ok(Date.now() < deadline, 'no rollback seen');
    back = await AgentClient.connect(vm.agentAddr, { connectTimeout: 90, protocols: ['v2'] });
    if (back.agent.image!.failed_upgrades === before.failed_upgrades + 1) break;
    back.close();
    await new Promise((r) => setTimeout(r, 500));
  }
  assert.equal(back.agent.image!.upgrades, before.upgrades, 'the rolled-back image counts no more upgrades');
  assert.equal(back.agent.image!.upgrade_id, '');
  assert.notEqual(back.agent.image!.upgrade_id, plan.upgrade_id);
  assert.equal((await back.getContainer('steady')).init!.pid, pid);
  await back.removeContainer({ containerId: 'steady' });
  back.close();
  const consoleText = fs.readFileSync(vm.consoleLog, 'utf8');
  assert.ok(consoleText.includes('rolling back to the previous agent image'), 'the rollback is on the console');
  assert.ok(!consoleText.includes('Kernel panic'), 'no kernel panic');
});
