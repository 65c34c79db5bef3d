// Tests of runCommand (src/agent/process/command.ts) through the Reaper as its
// Spawner: collected output, typed failures (a non-zero exit, a program that
// cannot be started), the deadline and cancellation. Runs sh, cat and sleep;
// changes nothing. Run: node --import tsx --test src/agent/process/command.test.ts

import assert from 'node:assert/strict';
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
});
