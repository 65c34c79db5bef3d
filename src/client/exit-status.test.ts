// The exit status as one shape: v1's shell-style integer converted (and where
// that is a guess), v2's message taken as it is. Run:
//   node --import tsx --test src/client/exit-status.test.ts
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { exitStatusFromV1, exitStatusFromV2, MAX_SIGNAL } from './exit-status';

describe('v1 status integer to ExitStatus', () => {
  it('0..128 is an exit code, exact', () => {
    for (const n of [0, 1, 2, 127, 128]) {
      const s = exitStatusFromV1(n);
      assert.deepEqual([s.code, s.signal, s.ambiguous, s.shellStatus, s.source], [n, null, false, n, 'v1']);
    }
  });

  it('129..128+SIGRTMAX is read as signal n-128, and flagged ambiguous (exit(137) looks the same as SIGKILL)', () => {
    assert.deepEqual([exitStatusFromV1(137).signal, exitStatusFromV1(137).code, exitStatusFromV1(137).ambiguous], [9, null, true]);
    assert.equal(exitStatusFromV1(143).signal, 15);
    assert.equal(exitStatusFromV1(129).signal, 1);
    assert.equal(exitStatusFromV1(128 + MAX_SIGNAL).signal, 64);
    assert.equal(exitStatusFromV1(137).shellStatus, 137);
  });

  it('above 128+SIGRTMAX no signal could give it: an exit code, exact', () => {
    for (const n of [193, 200, 255]) {
      const s = exitStatusFromV1(n);
      assert.deepEqual([s.code, s.signal, s.ambiguous], [n, null, false]);
    }
  });

  it('v1 cannot tell core dumps, OOM kills or times: false/null, source "v1"', () => {
    const s = exitStatusFromV1(137);
    assert.deepEqual([s.coreDumped, s.oomKilled, s.startedAtMs, s.exitedAtMs], [false, false, null, null]);
  });
});

describe('v2 ExitStatus', () => {
  const wire = { code: 0, signal: 0, core_dumped: false, oom_killed: false, started_at_unix_ms: 0, exited_at_unix_ms: 0 };
  it('signal 0: exited with its code', () => {
    const s = exitStatusFromV2({ ...wire, code: 137, started_at_unix_ms: 10, exited_at_unix_ms: 20 });
    assert.deepEqual(s, { code: 137, signal: null, coreDumped: false, oomKilled: false, startedAtMs: 10, exitedAtMs: 20, shellStatus: 137, source: 'v2', ambiguous: false });
  });
  it('a signal: no code, every flag kept', () => {
    const s = exitStatusFromV2({ ...wire, signal: 9, core_dumped: true, oom_killed: true });
    assert.deepEqual([s.code, s.signal, s.coreDumped, s.oomKilled, s.shellStatus, s.ambiguous, s.startedAtMs], [null, 9, true, true, 137, false, null]);
  });
});
