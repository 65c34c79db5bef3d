// v1's presentation of core records (conversions.ts).
// Run: node --import tsx --test src/handlers/v1/conversions.test.ts
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExitStatus } from '../../agent/process/exit-status';
import { shellStatus } from './conversions';

const status = (more: Partial<ExitStatus>): ExitStatus => ({
  code: null, signal: null, coreDumped: false, oomKilled: false, startedAt: 1, exitedAt: 2, ...more,
});

describe('v1 WaitProcess status (shellStatus)', () => {
  it('is the exit code of a process that exited', () => {
    assert.equal(shellStatus(status({ code: 0 })), 0);
    assert.equal(shellStatus(status({ code: 3 })), 3);
    assert.equal(shellStatus(status({ code: 255 })), 255);
  });

  it('is 128 + the signal of a process a signal ended, whatever else the record says', () => {
    assert.equal(shellStatus(status({ signal: 9 })), 137);
    assert.equal(shellStatus(status({ signal: 15 })), 143);
    assert.equal(shellStatus(status({ signal: 9, oomKilled: true })), 137, 'an OOM kill is a SIGKILL to v1');
    assert.equal(shellStatus(status({ signal: 6, coreDumped: true })), 134, 'a core dump is not shown');
  });

  it('is 255 when the record has neither (it never should)', () => {
    assert.equal(shellStatus(status({})), 255);
  });
});
