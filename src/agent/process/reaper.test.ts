// The reaper's table of unclaimed orphan statuses, with real orphans: this
// test process becomes a child subreaper (Reaper.start), so a background
// `sleep` whose shell exits is re-parented to it, exits, and is reaped by the
// sweep, as container processes are when the OCI runtime exits.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { silentLogger } from '../log';
import { processStartTime, Reaper, type ReaperOptions } from './reaper';

let current: Reaper | null = null;
afterEach(() => {
  current?.stop();
  current = null;
});

function reaper(options: ReaperOptions = {}): Reaper {
  current = new Reaper(silentLogger, options);
  current.start();
  return current;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts `sleep seconds` as an orphan of this process; resolves with its pid once its shell has exited. */
function orphan(r: Reaper, seconds = 0.05): Promise<number> {
  const child = r.spawn('sh', ['-c', `sleep ${seconds} >/dev/null 2>&1 & echo $!`], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', () => resolve(Number(out.trim())));
  });
}

async function untilReaped(r: Reaper, count: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (r.unclaimedCount < count && Date.now() < deadline) await sleep(10);
  assert.ok(r.unclaimedCount >= count, `${count} orphan statuses kept`);
}

/** 'pending' if `p` has not settled within `ms`. */
async function outcome<T>(p: Promise<T>, ms = 200): Promise<{ value: T } | { error: unknown } | 'pending'> {
  return Promise.race([p.then((value) => ({ value }), (error: unknown) => ({ error })), sleep(ms).then(() => 'pending' as const)]);
}

describe('Reaper unclaimed statuses', () => {
  it('keeps the status of an orphan that exited before anyone waited, for a wait soon after', async () => {
    const r = reaper();
    const pid = await orphan(r);
    await untilReaped(r, 1);
    const status = await r.wait(pid);
    assert.deepEqual([status.code, status.signal], [0, null]);
    assert.equal(r.unclaimedCount, 0, 'claimed once');
  });

  it('does not give an old status to a later process with the same pid (start times differ)', async () => {
    let reused: number | null = null;
    const r = reaper({
      // After the orphan was reaped, pretend its pid went to a new live process started later.
      startTimeOf: (pid) => (pid === reused ? Number.MAX_SAFE_INTEGER : processStartTime(pid)),
    });
    const pid = await orphan(r);
    await untilReaped(r, 1);
    reused = pid;
    const got = await outcome(r.wait(pid));
    assert.ok(got === 'pending' || 'error' in got, `the stale status was handed out: ${JSON.stringify(got)}`);
    assert.equal(r.unclaimedCount, 0, 'the stale status is dropped');
  });

  it('records the start time of the zombie it reaps (field 22 of /proc/PID/stat)', async () => {
    const seen: Array<[number, number | null]> = [];
    const r = reaper({ startTimeOf: (pid) => {
      const t = processStartTime(pid);
      seen.push([pid, t]);
      return t;
    } });
    const pid = await orphan(r);
    await untilReaped(r, 1);
    const atReap = seen.find(([p, t]) => p === pid && t !== null);
    assert.ok(atReap, 'the zombie\'s start time was read before it was reaped');
    assert.ok(atReap[1]! > 0);
  });

  it('drops statuses older than the age limit', async () => {
    const r = reaper({ unclaimedTtlMs: 100 });
    const pid = await orphan(r);
    await untilReaped(r, 1);
    await sleep(250);
    const got = await outcome(r.wait(pid));
    assert.ok(got === 'pending' || 'error' in got, `an expired status was handed out: ${JSON.stringify(got)}`);
    assert.equal(r.unclaimedCount, 0);
  });

  it('keeps at most maxUnclaimed statuses, dropping the oldest', async () => {
    const r = reaper({ maxUnclaimed: 2 });
    const pids = [];
    for (let i = 0; i < 4; i++) pids.push(await orphan(r, 0.01));
    await sleep(300);
    r.sweep();
    assert.equal(r.unclaimedCount, 2);
    const newest = await outcome(r.wait(pids[3]!));
    assert.ok(newest !== 'pending' && 'value' in newest, 'the newest status is kept');
  });

  it('a child_process child that has exited ahead of them does not hide watched processes and orphans for long', async () => {
    const r = reaper();
    // Many exits at once, mixed: orphans, and children child_process waits for itself.
    const orphans = await Promise.all([1, 2, 3, 4, 5, 6].map(() => orphan(r, 0.2)));
    const spawned = [1, 2, 3].map(() => r.spawn('sh', ['-c', 'sleep 0.2'], { stdio: 'ignore' }));
    const closed = Promise.all(spawned.map((c) => new Promise((resolve) => c.once('close', resolve))));
    const statuses = await Promise.all(orphans.map((pid) => r.wait(pid)));
    assert.deepEqual(statuses.map((s) => s.code), orphans.map(() => 0));
    await closed; // and child_process got its own children's exits
    assert.deepEqual(spawned.map((c) => c.exitCode), [0, 0, 0]);
  });
});
