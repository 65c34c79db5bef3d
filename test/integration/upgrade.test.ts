// An in-place upgrade on the host (src/agent/upgrade/): the bundled agent,
// with a container printing a counter and processes in every state, is told
// to UpgradeAgent to a copy of itself; it drains, hands over and execs in
// place. Afterwards: the same agent pid, the same container processes (pid
// and start time), the counter read on by offset with no gap and no
// repeat (a stream open across the exec too, re-attached by the same client),
// an exec that ended during the swap has its status, an event cursor
// from before the exec resumes without a gap, processes kept are still
// signalled and reaped, and request ids answered before are still answered.
// Needs root, crun, busybox-static, unshare and `npm run build`.
// Run: node --import tsx --test test/integration/upgrade.test.ts
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AgentClient, AgentCallError } from '../../src/client/client';
import { AgentV2Service } from '../../src/protocol';
import { processStartTime } from '../../src/agent/process/reaper';
import { AGENT_BUNDLE, startAgent, type TestAgent } from '../helpers/agent-process';
import { containerSpec } from '../helpers/spec';

const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });
const COUNTER = ['sh', '-c', 'i=0; while [ $i -lt 100000 ]; do echo $i; i=$((i+1)); [ $((i % 50)) -eq 0 ] && sleep 0.01; done; sleep 1000'];

let agent: TestAgent;
before(async () => {
  agent = await startAgent();
});
after(async () => {
  await agent?.stop();
});

/** The counter's lines in `text` must be n, n+1, ... with nothing missing or twice. */
function assertCounts(text: string, from: number): number {
  const lines = text.split('\n').filter((l) => l !== '');
  lines.forEach((l, i) => assert.equal(Number(l), from + i, `line ${i} of the output read after the upgrade`));
  return from + lines.length;
}

const TODAY = path.dirname(AGENT_BUNDLE);
const RELEASES = path.join(TODAY, '..', 'test', 'fixtures', 'releases');

/** Copies a bundle and its addons from `from` into SHARED/name: the UpgradeAgent request naming it. */
function stageBinary(sharedDir: string, name: string, from = TODAY): { binary_path: string; sha256: string } {
  const dir = path.join(sharedDir, name);
  fs.mkdirSync(dir);
  for (const f of ['agent.cjs', 'agent_native.node', 'pty.node']) fs.copyFileSync(path.join(from, f), path.join(dir, f));
  return { binary_path: `${name}/agent.cjs`, sha256: crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, 'agent.cjs'))).digest('hex') };
}

/** UpgradeAgent to `target`, then a client of the image it started, once one answers (30 s at most). */
async function upgradeAndWait(addr: string, target: { binary_path: string; sha256: string }, requestId: string): Promise<AgentClient> {
  const c = await AgentClient.connect(addr, { protocols: ['v2'] });
  const plan = await c.v2('UpgradeAgent', { ...target, request_id: requestId }, { deadlineSeconds: 60 });
  c.close();
  for (const deadline = Date.now() + 30_000; ;) {
    assert.ok(Date.now() < deadline, `upgrade ${requestId}: the new image never answered`);
    const probe = await AgentClient.connect(addr, { protocols: ['v2'], connectTimeout: 2 }).catch(() => null);
    if (probe?.agent.image?.upgrade_id === plan.upgrade_id) return probe;
    probe?.close();
    await new Promise((r) => setTimeout(r, 50));
  }
}

it('replaces itself in place: same pid, containers and processes kept, output read on by offset, statuses and seqs kept', async () => {
  const client = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  await client.createContainer({ containerId: 'up', ociSpec: containerSpec({ rootPath: 'busybox', args: COUNTER }) });
  await client.startContainer({ containerId: 'up' });
  await client.exec({ containerId: 'up', execId: 'sleeper', process: proc(['sleep', '1000']) });
  await client.exec({ containerId: 'up', execId: 'short', process: proc(['sh', '-c', 'sleep 1; exit 7']) });
  // Some of the counter, read and kept: the offset to go on from.
  let text = '';
  for await (const c of client.readOutput({ containerId: 'up' })) {
    text += c.data.toString();
    if (text.length > 20_000) break;
  }
  const cut = text.lastIndexOf('\n') + 1;
  const next = assertCounts(text.slice(0, cut), 0);
  const before = await client.getContainer('up');
  const initPid = before.init!.pid!;
  const initTicks = processStartTime(initPid);
  const sleeperPid = before.execs.find((e) => e.execId === 'sleeper')!.pid!;
  const agentPid = agent.child.pid!;
  // An event cursor from before the exec: the first event seen.
  let cursor = 0;
  for await (const e of client.watchEvents({ afterSeq: 0 })) {
    cursor = e.seq;
    break;
  }

  // The new binary: a copy of today's bundle (and its addons) in the shared directory.
  const { sha256 } = stageBinary(agent.sharedDir, 'upgrade');

  // Refused, nothing changed: a wrong digest, a path outside the shared directory.
  await assert.rejects(client.v2('UpgradeAgent', { binary_path: 'upgrade/agent.cjs', sha256: '0'.repeat(64), request_id: 'u-bad' }),
    (e: unknown) => e instanceof AgentCallError && e.codeName === 'FAILED_PRECONDITION' && /has sha256 .* not the 0+ asked for/.test(e.message));
  await assert.rejects(client.v2('UpgradeAgent', { binary_path: '/etc/passwd', sha256, request_id: 'u-out' }),
    (e: unknown) => e instanceof AgentCallError && e.codeName === 'INVALID_ARGUMENT');

  // A runtime reading the counter through the upgrade on one client: its stream is cut at the exec
  // (UNAVAILABLE) and the client re-attaches to the new image at its offset.
  const runtime = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  const across = (async () => {
    let got = '';
    for await (const c of runtime.readOutput({ containerId: 'up', offset: cut, reader: 'runtime' })) {
      got += c.data.toString();
      if (got.length > 120_000) break;
    }
    return got;
  })();
  const plan = await client.v2('UpgradeAgent', { binary_path: 'upgrade/agent.cjs', sha256, request_id: 'u-1' });
  assert.equal(plan.to_version, client.agent.agent_version);
  assert.equal(plan.state_format, 1);
  client.close();

  // The new image announces, having taken over.
  for (const deadline = Date.now() + 30_000; !agent.logs().some((l) => l.msg === 'announce' && l.tookOverFrom); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > deadline) fs.writeFileSync("/tmp/up.log", agent.lines().join("\n"));
    assert.ok(Date.now() < deadline, "no takeover announce: see /tmp/up.log");
  }
  assert.equal(agent.child.pid, agentPid);
  assert.ok(agent.alive(), 'the agent process lives on');

  const after = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  try {
    const c = await after.getContainer('up');
    assert.equal(c.state, 'running');
    assert.equal(c.init?.pid, initPid, 'the same init process');
    assert.equal(processStartTime(initPid), initTicks);
    assert.equal(c.execs.find((e) => e.execId === 'sleeper')?.pid, sleeperPid);
    // The exec that ended during the swap: its status.
    const short = await after.wait({ containerId: 'up', execId: 'short' });
    assert.equal(short.code, 7);
    // The counter from the offset kept: no gap, no repeat.
    let more = '';
    for await (const chunk of after.readOutput({ containerId: 'up', offset: cut })) {
      more += chunk.data.toString();
      if (more.length > 40_000) break;
    }
    assertCounts(more.slice(0, more.lastIndexOf('\n') + 1), next);
    const through = await across;
    assert.ok(through.length > 120_000, 'the stream read on through the exec');
    assertCounts(through.slice(0, through.lastIndexOf('\n') + 1), next);
    runtime.close();
    // The cursor from before the exec resumes: every event after it, in order, the old image's and the new one's.
    const seqs: number[] = [];
    let sawShortExit = false;
    for await (const e of after.watchEvents({ afterSeq: cursor })) {
      seqs.push(e.seq);
      if (e.type === 'process_exited' && e.execId === 'short') sawShortExit = true;
      if (sawShortExit) break;
    }
    assert.deepEqual(seqs, seqs.map((_, i) => cursor + 1 + i), 'no event missing or repeated across the exec');
    // A request id answered before the upgrade is answered the same after it.
    const again = await after.v2('UpgradeAgent', { binary_path: 'upgrade/agent.cjs', sha256, request_id: 'u-1' });
    assert.equal(again.upgrade_id, plan.upgrade_id, 'the retry of the upgrade call gets the first answer, and upgrades nothing');
    // A process kept across the exec is still the agent's to signal and reap.
    await after.signal({ containerId: 'up', execId: 'sleeper', signal: 'SIGKILL' });
    assert.equal((await after.wait({ containerId: 'up', execId: 'sleeper' })).signal, 9);
    await after.removeContainer({ containerId: 'up' });
  } finally {
    after.close();
  }
});

it('agentctl upgrade waits for the new image and prints the blackout; Discovery counts the upgrades', async () => {
  const before = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  const upgradesBefore = before.agent.image!.upgrades;
  assert.ok(upgradesBefore >= 1, 'the first test upgraded once');
  assert.equal(before.agent.image!.previous_version, before.agent.agent_version);
  await before.createContainer({ containerId: 'ctl', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] }) });
  await before.startContainer({ containerId: 'ctl' });
  const pid = (await before.getContainer('ctl')).init!.pid;
  before.close();
  const local = path.join(agent.sharedDir, 'upgrade', 'agent.cjs');
  const r = spawnSync(process.execPath, [path.join(path.dirname(AGENT_BUNDLE), 'agentctl.cjs'), '--addr', agent.addr, '--json', 'upgrade', '--binary', 'upgrade/agent.cjs', '--local', local],
    { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  assert.equal(result.upgrades, upgradesBefore + 1);
  assert.ok(Number.isInteger(result.blackout_ms) && result.blackout_ms >= 0);
  assert.match(r.stderr, /checked and pre-flighted in \d+ ms/);
  const after = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  try {
    assert.equal(after.agent.image!.upgrade_id, result.upgrade_id);
    assert.equal((await after.getContainer('ctl')).init!.pid, pid, 'the container kept across a second upgrade');
    await after.removeContainer({ containerId: 'ctl' });
  } finally {
    after.close();
  }
});

// Every archived release with the mechanism (those with a state sample): upgraded in place to
// today's build, and today's build downgraded in place to it, a container kept both ways.
for (const version of fs.readdirSync(RELEASES).filter((v) => fs.existsSync(path.join(RELEASES, v, 'state', 'state.json')))) {
  it(`archived ${version} -> today's build -> ${version}, in place, a container kept`, async () => {
    const old = await startAgent({ bundle: path.join(RELEASES, version, 'agent.cjs') });
    try {
      const first = await AgentClient.connect(old.addr, { protocols: ['v2'] });
      assert.equal(first.agent.agent_version, version);
      await first.createContainer({ containerId: 'm', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] }) });
      await first.startContainer({ containerId: 'm' });
      const pid = (await first.getContainer('m')).init!.pid;
      first.close();
      const today = await upgradeAndWait(old.addr, stageBinary(old.sharedDir, 'today'), 'matrix-1');
      assert.equal((await today.getContainer('m')).init!.pid, pid, `kept by today's build after ${version}`);
      assert.equal(today.agent.image!.previous_version, version);
      today.close();
      const back = await upgradeAndWait(old.addr, stageBinary(old.sharedDir, 'back', path.join(RELEASES, version)), 'matrix-2');
      assert.equal(back.agent.agent_version, version);
      assert.equal((await back.getContainer('m')).init!.pid, pid, `kept by ${version} after today's build`);
      await back.removeContainer({ containerId: 'm' });
      back.close();
    } finally {
      await old.stop();
    }
  });
}

it('an image unhealthy after the takeover rolls back to the previous one: counted as failed, the container kept', async () => {
  // The fault is a fake (upgrade/commit.ts): nothing real makes a fresh image unhealthy on purpose.
  const faulty = await startAgent({ env: { AGENT_FAKE_FAULT: 'unhealthy-after-takeover' } });
  try {
    const c = await AgentClient.connect(faulty.addr, { protocols: ['v2'] });
    await c.createContainer({ containerId: 'rb', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] }) });
    await c.startContainer({ containerId: 'rb' });
    const pid = (await c.getContainer('rb')).init!.pid;
    await c.v2('UpgradeAgent', { ...stageBinary(faulty.sharedDir, 'next'), request_id: 'rb-1' });
    c.close();
    let back: AgentClient | null = null;
    for (const deadline = Date.now() + 30_000; ;) {
      assert.ok(Date.now() < deadline, `no rollback seen:\n${faulty.lines().slice(-15).join('\n')}`);
      back = await AgentClient.connect(faulty.addr, { protocols: ['v2'], connectTimeout: 2 }).catch(() => null);
      if (back && back.agent.image!.failed_upgrades === 1) break;
      back?.close();
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      assert.equal(back!.agent.image!.upgrades, 0, 'the rolled-back image counts no upgrade');
      assert.equal(back!.agent.image!.upgrade_id, '');
      assert.equal((await back!.getContainer('rb')).init!.pid, pid);
      const logs = faulty.logs();
      assert.ok(logs.some((l) => l.msg === 'rolling back to the previous agent image' && String(l.reason).includes('fake fault')));
      assert.ok(logs.some((l) => l.msg === 'not healthy after the takeover, but this image was itself rolled back to: committing anyway'), 'no second rollback');
      await back!.removeContainer({ containerId: 'rb' });
    } finally {
      back!.close();
    }
  } finally {
    await faulty.stop();
  }
});

it('faulty binaries are refused at pre-flight, nothing changed: one that cannot read the state, one that exits at start', async () => {
  const c = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  try {
    await c.createContainer({ containerId: 'steady', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] }) });
    await c.startContainer({ containerId: 'steady' });
    const pid = (await c.getContainer('steady')).init!.pid;
    const before = c.agent.image!;
    // Real binaries (bundles run by the agent's Node), each broken one way.
    const faulty: Record<string, string> = {
      'no-state.cjs': `if (process.argv.includes('--check-state')) { console.log(JSON.stringify({ ok: false, error: 'this build cannot read state format 1' })); process.exit(1); }`,
      'exits-at-start.cjs': `if (process.argv.includes('--check-state')) { console.log(JSON.stringify({ ok: true, version: '9.9.9', writes_format: 1, self_test: true })); process.exit(0); } process.exit(3);`,
    };
    for (const [name, code] of Object.entries(faulty)) {
      const file = path.join(agent.sharedDir, name);
      fs.writeFileSync(file, code);
      const sha256 = crypto.createHash('sha256').update(code).digest('hex');
      await assert.rejects(c.v2('UpgradeAgent', { binary_path: name, sha256, request_id: `fault-${name}` }), (e: unknown) =>
        e instanceof AgentCallError && e.codeName === 'FAILED_PRECONDITION' &&
        (name === 'no-state.cjs' ? /state check .* cannot read state format 1/.test(e.message) : /start-up self-test .* failed/.test(e.message)), name);
    }
    // Still the same image, serving, the container running.
    const again = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
    assert.equal(again.agent.image!.started_at_unix_ms, before.started_at_unix_ms, 'no exec happened');
    assert.equal((await again.getContainer('steady')).init!.pid, pid);
    again.close();
    await c.removeContainer({ containerId: 'steady' });
  } finally {
    c.close();
  }
});

it('UploadAgentBinary stands in for the shared directory: hostile uploads refused, a cut one resumed, then UpgradeAgent uploaded execs it', async () => {
  const own = await startAgent();
  const grpcClient = new AgentV2Service(own.addr.replace(/^unix:\/\//, 'unix:'), grpc.credentials.createInsecure()) as unknown as Record<string, Function>;
  /** One UploadAgentBinary call with these messages as they are: its answer or its error. */
  const raw = (messages: Array<{ size?: number; sha256?: string; offset?: number; data?: Buffer }>) =>
    new Promise<{ err: grpc.ServiceError | null; res?: { size: number; sha256: string } }>((resolve) => {
      const call = grpcClient.UploadAgentBinary!.call(grpcClient, (err: grpc.ServiceError | null, res: { size: number; sha256: string }) => resolve({ err, res }));
      for (const m of messages) call.write(m);
      call.end();
    });
  const refused = async (messages: Parameters<typeof raw>[0], code: grpc.status, why: RegExp) => {
    const { err } = await raw(messages);
    assert.equal(err?.code, code, `${why}: ${err?.details}`);
    assert.match(err!.details, why);
  };
  try {
    // A real executable: a script that runs today's bundle, kept in the state dir by the agent.
    const next = stageBinary(own.sharedDir, 'uploaded');
    const script = Buffer.from(`#!/bin/sh\nexec ${process.execPath} ${path.join(own.sharedDir, next.binary_path)} "$@"\n`);
    const sha256 = crypto.createHash('sha256').update(script).digest('hex');
    const size = script.length;
    await refused([], grpc.status.INVALID_ARGUMENT, /sent no message/);
    await refused([{ size, sha256: 'not-hex', data: script }], grpc.status.INVALID_ARGUMENT, /not 64 lowercase hex/);
    await refused([{ size: 0, sha256, data: script }], grpc.status.INVALID_ARGUMENT, /size 0 is out of range/);
    await refused([{ size: 2 ** 40, sha256, data: script }], grpc.status.INVALID_ARGUMENT, /out of range/);
    await refused([{ size, sha256, offset: 0, data: script.subarray(0, 10) }, { offset: 20, data: script.subarray(20) }], grpc.status.INVALID_ARGUMENT, /starts at offset 20, the bytes so far end at 10/);
    await refused([{ size, sha256, data: Buffer.concat([script, script]) }], grpc.status.INVALID_ARGUMENT, new RegExp(`more than the ${size} bytes announced`));
    await refused([{ size, sha256: 'f'.repeat(64), data: script }], grpc.status.FAILED_PRECONDITION, /have sha256 [0-9a-f]{64}, not f{64}: discarded/);
    // Cut short, then resumed where the agent says.
    await refused([{ size, sha256, data: script.subarray(0, 12) }], grpc.status.FAILED_PRECONDITION, /ended at 12 of \d+ bytes: resume at offset 12/);
    await refused([{ size, sha256, offset: 13, data: script.subarray(13) }], grpc.status.FAILED_PRECONDITION, /holds 12 bytes .*resume at offset 12/);
    const done = await raw([{ size, sha256, offset: 12, data: script.subarray(12) }]);
    assert.equal(done.err, null);
    assert.deepEqual(done.res, { size, sha256 });

    const c = await AgentClient.connect(own.addr, { protocols: ['v2'] });
    assert.ok(c.agent.capabilities.includes('feature:upgrade-upload'));
    await c.createContainer({ containerId: 'up', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] }) });
    await c.startContainer({ containerId: 'up' });
    const pid = (await c.getContainer('up')).init!.pid;
    await assert.rejects(c.v2('UpgradeAgent', { binary_path: '', sha256: 'e'.repeat(64), uploaded: true }), /no binary with sha256 e{64} was uploaded/);
    await assert.rejects(c.v2('UpgradeAgent', { binary_path: 'x', sha256, uploaded: true }), /is given with uploaded: name one binary, not both/);
    // The typed client's upload of the same file (again: complete uploads are kept by sha256).
    const file = path.join(own.sharedDir, 'next-agent.sh');
    fs.writeFileSync(file, script);
    assert.deepEqual(await c.uploadAgentBinary(file), { size, sha256 });
    const plan = await c.v2('UpgradeAgent', { binary_path: '', sha256, uploaded: true, request_id: 'up-1' });
    c.close();
    let after: AgentClient | null = null;
    for (const deadline = Date.now() + 30_000; ;) {
      assert.ok(Date.now() < deadline, 'the uploaded image never answered');
      after = await AgentClient.connect(own.addr, { protocols: ['v2'], connectTimeout: 2 }).catch(() => null);
      if (after?.agent.image?.upgrade_id === plan.upgrade_id) break;
      after?.close();
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await after!.getContainer('up')).init!.pid, pid);
    await after!.removeContainer({ containerId: 'up' });
    after!.close();
    assert.ok(fs.existsSync(path.join(own.stateDir, 'upgrade', 'uploads', sha256)), 'the running image\'s upload is kept');
  } finally {
    (grpcClient as unknown as grpc.Client).close();
    await own.stop();
  }
});

it('ten upgrades in a row with a v1 and a v2 client calling throughout, then a downgrade to the archived release: every call answered, each exec made once', async () => {
  const v1 = await AgentClient.connect(agent.addr, { protocols: ['v1'] });
  const v2 = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  await v2.createContainer({ containerId: 'race', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] }) });
  await v2.startContainer({ containerId: 'race' });
  const pid = (await v2.getContainer('race')).init!.pid;
  let stop = false;
  const failures: string[] = [];
  let v1Calls = 0;
  const execIds: string[] = [];
  // v1 has no request ids: a v1 runtime retries what changes nothing itself; the v2 client retries by request id.
  const v1Racer = (async () => {
    while (!stop) {
      for (let attempt = 0; ; attempt++) {
        try {
          await v1.v1('GetGuestDetails', { mem_block_size: false, mem_hotplug_probe: false });
          v1Calls++;
          break;
        } catch (e) {
          if (!(e instanceof AgentCallError ? e.codeName === 'UNAVAILABLE' : /UNAVAILABLE|14/.test(String(e))) || attempt > 100) {
            failures.push(`v1: ${String(e)}`);
            break;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  })();
  // Each exec waited for and released: what a runtime does; a retried exec applied twice would be ALREADY_EXISTS.
  const v2Racer = (async () => {
    for (let i = 0; !stop; i++) {
      const execId = `r${i}`;
      try {
        await v2.exec({ containerId: 'race', execId, process: proc(['true']) });
        await v2.wait({ containerId: 'race', execId });
        await v2.releaseProcess({ containerId: 'race', execId });
        execIds.push(execId);
      } catch (e) {
        failures.push(`v2 exec ${execId}: ${String(e)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const today = stageBinary(agent.sharedDir, 'race');
  const upgrade = async (target: { binary_path: string; sha256: string }, id: string) => (await upgradeAndWait(agent.addr, target, id)).close();
  try {
    for (let n = 0; n < 10; n++) await upgrade(today, `race-${n}`);
    // And back to the archived release that has the mechanism, with the same checks.
    const version = fs.readdirSync(RELEASES).filter((v) => fs.existsSync(path.join(RELEASES, v, 'state', 'state.json'))).sort().at(-1)!;
    await upgrade(stageBinary(agent.sharedDir, 'race-back', path.join(RELEASES, version)), 'race-back');
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    stop = true;
    await Promise.all([v1Racer, v2Racer]);
  }
  assert.deepEqual(failures, [], 'every call was answered (after retries across the execs)');
  assert.ok(v1Calls > 10 && execIds.length > 10, `${v1Calls} v1 calls, ${execIds.length} execs`);
  const check = await AgentClient.connect(agent.addr, { protocols: ['v2'] });
  try {
    const info = await check.getContainer('race');
    assert.equal(info.init!.pid, pid, 'the container kept through eleven execs in place');
    // Every exec was made, waited for and released once: none is left behind.
    assert.deepEqual(info.execs.map((e) => e.execId).filter((id) => /^r\d+$/.test(id)), []);
    await check.removeContainer({ containerId: 'race' });
  } finally {
    check.close();
    v1.close();
    v2.close();
  }
});
