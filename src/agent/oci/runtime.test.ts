// The OCI runtime driver's launch path (create, exec --detach) against fake
// runtimes: shell scripts that hang, or exit 0 without a usable pid file.
// A fake's stray process holds the container stdio, as a real container
// process would. Run: node --import tsx --test src/agent/oci/runtime.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AgentError } from '../errors';
import { silentLogger } from '../log';
import { ProcessIO } from '../process/process-io';
import { OciRuntime } from './runtime';
import { testReaper } from '../process/reaper.testing';

const { reaper, tmp } = testReaper('runtime-test');

let seq = 0;
/**
 * A fake runtime binary: `body` runs with $pidfile set from --pid-file and
 * $dir the script's directory (for the files it leaves for the test).
 */
function fakeRuntime(body: string): { binary: string; dir: string } {
  const dir = path.join(tmp, `fake-${++seq}`);
  fs.mkdirSync(path.join(dir, 'bundle'), { recursive: true });
  const binary = path.join(dir, 'fake-runtime');
  fs.writeFileSync(binary, `#!/bin/sh
dir=$(dirname "$0")
pidfile=
while [ $# -gt 0 ]; do
  case "$1" in --pid-file) pidfile=$2; shift ;; esac
  shift
done
${body}
`, { mode: 0o755 });
  return { binary, dir };
}

function runtimeFor(binary: string, timeoutMs = 300): OciRuntime {
  return new OciRuntime({ binary, globalArgs: [], root: path.join(tmp, 'root'), timeoutMs }, reaper, silentLogger);
}

const readPid = (file: string) => Number(fs.readFileSync(file, 'utf8').trim());

async function gone(pid: number): Promise<boolean> {
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    if (!fs.existsSync(`/proc/${pid}`)) return true;
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]?.[0];
    if (state === 'Z') return true; // killed, not yet reaped by whoever is its parent now
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

const failed = (message: RegExp) => (err: unknown) => {
  assert.ok(err instanceof AgentError, `not an AgentError: ${String(err)}`);
  assert.equal(err.kind, 'failed-precondition', err.message);
  assert.match(err.message, message);
  return true;
};

describe('OciRuntime launch', () => {
  it('kills a create that hangs past the deadline and fails with a typed error', { timeout: 8000 }, async () => {
    const fake = fakeRuntime('echo $$ > "$dir/runtime.pid"; exec sleep 1000');
    const io = ProcessIO.pipes(1024);
    const started = Date.now();
    await assert.rejects(runtimeFor(fake.binary).create('c1', path.join(fake.dir, 'bundle'), io), failed(/create .*c1.* 300 ms/));
    assert.ok(Date.now() - started < 5000, 'failed at the deadline');
    assert.ok(await gone(readPid(path.join(fake.dir, 'runtime.pid'))), 'the runtime was killed');
  });

  it('kills a hung exec and the process it already started', { timeout: 8000 }, async () => {
    const fake = fakeRuntime('sleep 1000 & echo $! > "$dir/stray.pid"; exec sleep 1000');
    const io = ProcessIO.pipes(1024);
    await assert.rejects(
      runtimeFor(fake.binary).exec('c1', path.join(fake.dir, 'bundle'), 'e1', '/dev/null', io),
      failed(/exec .*c1.* 300 ms/),
    );
    assert.ok(await gone(readPid(path.join(fake.dir, 'stray.pid'))), 'the started process was killed');
  });

  it('an exec that succeeds without a pid file: the untracked process is killed, the error typed', { timeout: 8000 }, async () => {
    const fake = fakeRuntime('sleep 1000 & echo $! > "$dir/stray.pid"; exit 0');
    const io = ProcessIO.pipes(1024);
    await assert.rejects(
      runtimeFor(fake.binary, 5000).exec('c1', path.join(fake.dir, 'bundle'), 'e1', '/dev/null', io),
      failed(/pid file .*exec-e1\.pid.*killed/),
    );
    assert.ok(await gone(readPid(path.join(fake.dir, 'stray.pid'))), 'the untracked process was killed');
  });

  it('an exec whose pid file holds no pid: the same', { timeout: 8000 }, async () => {
    const fake = fakeRuntime('sleep 1000 & echo $! > "$dir/stray.pid"; echo garbage > "$pidfile"; exit 0');
    const io = ProcessIO.terminal(1024);
    await assert.rejects(
      runtimeFor(fake.binary, 5000).exec('c1', path.join(fake.dir, 'bundle'), 'e2', '/dev/null', io),
      failed(/no valid pid.*killed/),
    );
    assert.ok(await gone(readPid(path.join(fake.dir, 'stray.pid'))), 'the untracked process was killed');
  });

  it('a runtime that exits 0 with a pid file reports the pid', { timeout: 8000 }, async () => {
    const fake = fakeRuntime('sleep 0.2 & echo $! > "$pidfile"; exit 0');
    const io = ProcessIO.pipes(1024);
    const pid = await runtimeFor(fake.binary).exec('c1', path.join(fake.dir, 'bundle'), 'e3', '/dev/null', io);
    assert.ok(pid > 0);
    const status = await reaper.wait(pid);
    assert.equal(status.code, 0);
    io.close();
  });
});
