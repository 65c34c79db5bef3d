// v2's conventions and its presentation of core records (conversions.ts).
// Pure functions: no agent, no build needed. The RPCs end to end are in
// test/integration/v2.test.ts.
// Run: node --import tsx --test src/handlers/v2/conversions.test.ts
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ContainerSnapshot, ProcessSnapshot } from '../../agent/core/snapshot';
import { isKind } from '../../agent/errors.testing';
import type { ExitStatus } from '../../agent/process/exit-status';
import {
  argumentsOf, chunkBytesOf, containerInfoToV2, eventToV2, exitStatusToV2, initExecIdOf, isV2Reader, processInfoToV2, readerOf,
  removeTimeoutOf, stateToV2, streamFromV2,
} from './conversions';

const status = (more: Partial<ExitStatus>): ExitStatus => ({
  code: null, signal: null, coreDumped: false, oomKilled: false, startedAt: 1000, exitedAt: 2000, ...more,
});

const proc = (more: Partial<ProcessSnapshot> = {}): ProcessSnapshot => ({
  execId: 'e1', pid: 42, running: true, terminal: false, startedAt: 1000, exitStatus: null,
  stdout: { start: 0, end: 10, ended: false }, stderr: { start: 3, end: 3, ended: true }, stdin: { written: 7 }, ...more,
});

describe('v2 conventions', () => {
  it('an empty CreateContainer exec id is the container id; a given one is kept', () => {
    assert.equal(initExecIdOf({ container_id: 'c1', exec_id: '' }), 'c1');
    assert.equal(initExecIdOf({ container_id: 'c1', exec_id: 'init' }), 'init');
  });

  it('a RemoveContainer timeout of 0 is 10 seconds; others are kept', () => {
    assert.equal(removeTimeoutOf(0), 10);
    assert.equal(removeTimeoutOf(1), 1);
    assert.equal(removeTimeoutOf(300), 300);
  });

  it('ReadOutput: the reader is "default" unless named, kept apart from other versions\' readers; chunks are 64 KiB unless told, at most 1 MiB', () => {
    assert.equal(readerOf(''), 'v2.default');
    assert.equal(readerOf('shim-7'), 'v2.shim-7');
    assert.equal(readerOf('v1'), 'v2.v1', "a v2 reader named v1 is not v1's");
    assert.ok(isV2Reader(readerOf('x')) && !isV2Reader('v1'));
    assert.throws(() => readerOf('../x'), isKind('invalid-argument', /reader/));
    assert.throws(() => readerOf('a'.repeat(126)), isKind('invalid-argument', /too long/));
    assert.equal(readerOf('a'.repeat(125)).length, 128);
    assert.equal(chunkBytesOf(0), 65536);
    assert.equal(chunkBytesOf(1), 1);
    assert.equal(chunkBytesOf(4096), 4096);
    assert.equal(chunkBytesOf(1 << 20), 1 << 20);
    assert.equal(chunkBytesOf((1 << 20) + 1), 1 << 20);
    assert.equal(chunkBytesOf(0xffffffff), 1 << 20);
  });

  it('output streams by name; UNSPECIFIED and unknown numbers are refused', () => {
    assert.equal(streamFromV2('OUTPUT_STREAM_STDOUT'), 'stdout');
    assert.equal(streamFromV2('OUTPUT_STREAM_STDERR'), 'stderr');
    assert.throws(() => streamFromV2('OUTPUT_STREAM_UNSPECIFIED'), isKind('invalid-argument', /OUTPUT_STREAM_UNSPECIFIED.*is not an output stream/));
    assert.throws(() => streamFromV2(7), isKind('invalid-argument', /stream 7 is not/));
  });

  it("a request's arguments for the request-id ledger are all its fields but request_id", () => {
    const req = { container_id: 'c', exec_id: 'e', offset: 3, data: Buffer.from('x'), close: false, request_id: 'r1' };
    assert.deepEqual(argumentsOf(req), { container_id: 'c', exec_id: 'e', offset: 3, data: Buffer.from('x'), close: false });
    assert.equal('request_id' in req, true, 'the request itself is left alone');
  });
});

describe('v2 exit status', () => {
  it('an exit: its code, signal 0, the times', () => {
    assert.deepEqual(exitStatusToV2(status({ code: 3 })), {
      code: 3, signal: 0, core_dumped: false, oom_killed: false, started_at_unix_ms: 1000, exited_at_unix_ms: 2000,
    });
  });

  it('a signal death: the signal and code 0, never 128 + signal; core dump and OOM kill kept', () => {
    assert.deepEqual(exitStatusToV2(status({ signal: 9, oomKilled: true })), {
      code: 0, signal: 9, core_dumped: false, oom_killed: true, started_at_unix_ms: 1000, exited_at_unix_ms: 2000,
    });
    const dumped = exitStatusToV2(status({ signal: 6, coreDumped: true }));
    assert.equal(dumped.signal, 6);
    assert.equal(dumped.code, 0);
    assert.equal(dumped.core_dumped, true);
  });
});

describe('v2 snapshots', () => {
  it('a running process: pid, streams as held offsets, stdin offset, no exit status', () => {
    assert.deepEqual(processInfoToV2(proc()), {
      exec_id: 'e1', pid: 42, running: true, terminal: false, started_at_unix_ms: 1000, exit_status: null,
      stdout: { start_offset: 0, end_offset: 10, ended: false }, stderr: { start_offset: 3, end_offset: 3, ended: true },
      stdin_offset: 7,
    });
  });

  it('a process not started yet has pid 0 and start time 0; an exited one has its status', () => {
    const early = processInfoToV2(proc({ pid: null, startedAt: null, running: false }));
    assert.equal(early.pid, 0);
    assert.equal(early.started_at_unix_ms, 0);
    const done = processInfoToV2(proc({ running: false, exitStatus: status({ code: 0 }) }));
    assert.deepEqual(done.exit_status, exitStatusToV2(status({ code: 0 })));
    assert.equal(done.running, false);
  });

  it('a container: id, state, creation time, its init and execs', () => {
    const c: ContainerSnapshot = { id: 'c1', state: 'paused', createdAt: 500, init: proc({ execId: 'c1' }), execs: [proc(), proc({ execId: 'e2', terminal: true })] };
    const info = containerInfoToV2(c);
    assert.equal(info.container_id, 'c1');
    assert.equal(info.state, 'CONTAINER_STATE_PAUSED');
    assert.equal(info.created_at_unix_ms, 500);
    assert.equal(info.init?.exec_id, 'c1');
    assert.deepEqual(info.execs?.map((e) => [e.exec_id, e.terminal]), [['e1', false], ['e2', true]]);
  });

  it('every core container state has a v2 state', () => {
    assert.deepEqual(
      (['created', 'running', 'paused', 'stopped', 'removed'] as const).map(stateToV2),
      ['CONTAINER_STATE_CREATED', 'CONTAINER_STATE_RUNNING', 'CONTAINER_STATE_PAUSED', 'CONTAINER_STATE_STOPPED', 'CONTAINER_STATE_REMOVED'],
    );
  });
});

describe('v2 events', () => {
  it('process started, with its seq and time', () => {
    assert.deepEqual(eventToV2({ seq: 5, event: { type: 'process-started', containerId: 'c', execId: 'e', pid: 9, at: 123 } }), {
      seq: 5, at_unix_ms: 123, event: 'process_started', process_started: { container_id: 'c', exec_id: 'e', pid: 9 },
    });
  });

  it('process exited carries the structured status; its time is the exit time', () => {
    const s = status({ signal: 15 });
    assert.deepEqual(eventToV2({ seq: 6, event: { type: 'process-exited', containerId: 'c', execId: 'e', pid: 9, status: s } }), {
      seq: 6, at_unix_ms: 2000, event: 'process_exited',
      process_exited: { container_id: 'c', exec_id: 'e', pid: 9, status: exitStatusToV2(s) },
    });
  });

  it('container state and OOM kill', () => {
    assert.deepEqual(eventToV2({ seq: 7, event: { type: 'container-state', containerId: 'c', state: 'removed', at: 9 } }), {
      seq: 7, at_unix_ms: 9, event: 'container_state', container_state: { container_id: 'c', state: 'CONTAINER_STATE_REMOVED' },
    });
    assert.deepEqual(eventToV2({ seq: 8, event: { type: 'oom-kill', containerId: 'c', at: 10 } }), {
      seq: 8, at_unix_ms: 10, event: 'oom_killed', oom_killed: { container_id: 'c' },
    });
  });
});
