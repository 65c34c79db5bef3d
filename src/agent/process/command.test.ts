// Tests of runCommand (src/agent/process/command.ts) through the Reaper as its
// Spawner: collected output, typed failures (a non-zero exit, a program that
// cannot be started), the deadline and cancellation. Runs sh, cat and sleep;
// changes nothing. Run: node --import tsx --test src/agent/process/command.test.ts

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import { isKind } from '../errors.testing';
import { silentLogger } from '../log';
import { runCommand } from './command';
import { Reaper } from './reaper';

describe('runCommand', () => {
  const reaper = new Reaper(silentLogger);
  test('collects output, types failures, times out', async () => {
    assert.deepEqual(await runCommand(reaper, 'sh', ['-c', 'echo out; echo err >&2']), { stdout: 'out\n', stderr: 'err\n' });
    assert.equal((await runCommand(reaper, 'cat', [], { input: 'abc' })).stdout, 'abc');
    await assert.rejects(runCommand(reaper, 'sh', ['-c', 'echo boom >&2; exit 3']),
      (e) => isKind('failed-precondition')(e) && /exited with 3: boom/.test((e as Error).message));
    await assert.rejects(runCommand(reaper, '/nonexistent/cmd', [], { spawnHint: 'install it' }),
      (e) => isKind('failed-precondition')(e) && /cannot run \/nonexistent\/cmd: .*ENOENT.*; install it/.test((e as Error).message));
    await assert.rejects(runCommand(reaper, 'sleep', ['5'], { timeoutMs: 100 }), /timed out after 100 ms/);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(runCommand(reaper, 'sleep', ['5'], { signal: ac.signal }), isKind('unavailable'));
  });

  test('a program that cannot start for want of descriptors is RESOURCE_EXHAUSTED, said so', async () => {
    // A fake spawner (running out of descriptors for real would starve this test process):
    // child_process's child when spawn fails with EMFILE: no pid, no pipes, then 'error'.
    const fake = {
      spawn: () => {
        const child = new EventEmitter() as EventEmitter & { pid?: number; stdout: null; stderr: null };
        child.stdout = null;
        child.stderr = null;
        process.nextTick(() => child.emit('error', Object.assign(new Error('spawn EMFILE'), { code: 'EMFILE' })));
        return child as unknown as ChildProcess;
      },
    };
    await assert.rejects(runCommand(fake, 'ip', ['link']),
      (e) => isKind('resource-exhausted')(e) && /cannot run ip: spawn EMFILE \(the agent is out of descriptors or processes\)/.test((e as Error).message));
  });
});
