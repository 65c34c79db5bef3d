// The exit status record (exit-status.ts) of real processes, reaped by the
// real Reaper as container processes are: this test process becomes a child
// subreaper, each process runs in the background of a shell that exits at
// once, so it is re-parented here. One exits with a code, one is killed by a
// signal, one dumps core (where this machine lets a process dump core into
// its working directory), and the OOM rule on its own.
// Run: node --import tsx --test src/agent/process/exit-status.test.ts
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { exitStatus, oomKilled, SIGKILL, type ProcessExit } from './exit-status';
import { testReaper } from './reaper.testing';

const { reaper, tmp } = testReaper('exit-status-test');

/**
 * Runs `script` (with sh -c) in the background of a shell in `cwd`; resolves
 * with its pid once that shell exited. The script starts only then (its fd 4
 * reads EOF when we close our end): a shell reaps a background child that
 * exits while the shell still runs, and the Reaper would never see it.
 */
function background(script: string, cwd = tmp): Promise<number> {
  const launcher = '{ read _ <&4; exec sh -c "$0" 4<&-; } >/dev/null 2>&1 & echo $!';
  const child = reaper.spawn('sh', ['-c', launcher, script], { cwd, stdio: ['ignore', 'pipe', 'ignore', 'ignore', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.once('exit', () => (child.stdio[4] as Socket | null)?.destroy());
  return new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', () => resolve(Number(out.trim())));
  });
}

/** Resolves once process `pid` runs `comm` (its script has got that far). */
async function running(pid: number, comm: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== comm) {
    if (Date.now() > deadline) assert.fail(`process ${pid} never ran ${comm}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The record of a process the way the core makes it: reaped, then judged against OOM kill counts. */
async function recordOf(pid: number, startedAt: number, kills: [number | null, number | null] = [null, null]) {
  const exit = await reaper.wait(pid);
  return exitStatus(exit, startedAt, oomKilled(exit, ...kills));
}

/** Why this machine cannot show a core dump being recorded, or null if it can. */
function coreDumpSkipReason(): string | null {
  const probe = spawnSync('sh', ['-c', 'ulimit -c unlimited'], { encoding: 'utf8' });
  if (probe.status !== 0) return `the sandbox does not allow \`ulimit -c unlimited\`: ${probe.stderr.trim()}`;
  let pattern: string;
  try {
    pattern = fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim();
  } catch (err) {
    return `cannot read /proc/sys/kernel/core_pattern: ${(err as Error).message}`;
  }
  // Only a core file in the process's working directory can be checked here; a pipe hands it to another program.
  if (pattern === '' || pattern.startsWith('|') || pattern.includes('/')) return `core_pattern ${JSON.stringify(pattern)} does not write into the working directory`;
  return null;
}

describe('exit status record of real processes', () => {
  it('a process exiting with a code: that code, no signal, no core, not OOM-killed, with its times', async () => {
    const startedAt = Date.now();
    const pid = await background('sleep 0.1; exit 7');
    const status = await recordOf(pid, startedAt, [0, 0]);
    assert.deepEqual(
      { code: status.code, signal: status.signal, coreDumped: status.coreDumped, oomKilled: status.oomKilled },
      { code: 7, signal: null, coreDumped: false, oomKilled: false },
    );
    assert.equal(status.startedAt, startedAt);
    assert.ok(status.exitedAt >= startedAt + 100 && status.exitedAt <= Date.now(), `exitedAt ${status.exitedAt - startedAt} ms after the start`);
    assert.deepEqual(Object.keys(status).sort(), ['code', 'coreDumped', 'exitedAt', 'oomKilled', 'signal', 'startedAt']);
  });

  it('a process killed by a signal: no code, the signal number, no core', async () => {
    const pid = await background('exec sleep 30');
    await running(pid, 'sleep');
    process.kill(pid, 'SIGTERM');
    const status = await recordOf(pid, Date.now(), [0, 0]);
    assert.deepEqual([status.code, status.signal, status.coreDumped, status.oomKilled], [null, os.constants.signals.SIGTERM, false, false]);
  });

  it('a SIGKILL is oomKilled only when the cgroup counted an OOM kill since the start', async () => {
    const killed = async (kills: [number | null, number | null]) => {
      const pid = await background('exec sleep 30');
      await running(pid, 'sleep');
      process.kill(pid, 'SIGKILL');
      return recordOf(pid, Date.now(), kills);
    };
    const oom = await killed([2, 3]);
    assert.deepEqual([oom.code, oom.signal, oom.oomKilled], [null, SIGKILL, true]);
    assert.equal((await killed([3, 3])).oomKilled, false, 'killed, but not by the OOM killer');
    assert.equal((await killed([null, null])).oomKilled, false, 'no cgroup of its own: no count to go by');
  });

  it('a process that dumps core: the signal and coreDumped', async (t) => {
    const reason = coreDumpSkipReason();
    if (reason) return t.skip(reason);
    const dir = fs.mkdtempSync(path.join(tmp, 'core-'));
    const pid = await background('ulimit -c unlimited; exec sleep 30', dir);
    await running(pid, 'sleep');
    // SIGABRT's default action dumps core (SIGQUIT would do, but a shell's background job ignores it).
    process.kill(pid, 'SIGABRT');
    const status = await recordOf(pid, Date.now(), [0, 1]);
    assert.deepEqual([status.code, status.signal, status.coreDumped, status.oomKilled], [null, os.constants.signals.SIGABRT, true, false]);
    assert.ok(fs.readdirSync(dir).some((f) => f.startsWith('core')), 'the kernel wrote the core file');
    // The same death without a core limit: no dump, and the record says so.
    const dir0 = fs.mkdtempSync(path.join(tmp, 'nocore-'));
    const pid0 = await background('ulimit -c 0; exec sleep 30', dir0);
    await running(pid0, 'sleep');
    process.kill(pid0, 'SIGABRT');
    const status0 = await recordOf(pid0, Date.now());
    assert.deepEqual([status0.signal, status0.coreDumped], [os.constants.signals.SIGABRT, false]);
    assert.deepEqual(fs.readdirSync(dir0), []);
  });
});

describe('the OOM rule', () => {
  const exit = (signal: number | null): ProcessExit => ({ code: signal === null ? 0 : null, signal, coreDumped: false, exitedAt: 0 });
  it('needs a SIGKILL and a count that rose; an unknown count is no', () => {
    assert.equal(oomKilled(exit(SIGKILL), 0, 1), true);
    assert.equal(oomKilled(exit(SIGKILL), 1, 1), false);
    assert.equal(oomKilled(exit(SIGKILL), null, 1), false);
    assert.equal(oomKilled(exit(SIGKILL), 0, null), false);
    assert.equal(oomKilled(exit(os.constants.signals.SIGTERM), 0, 1), false);
    assert.equal(oomKilled(exit(null), 0, 1), false);
  });
});
