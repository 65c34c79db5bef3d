// Run: node --import tsx --test src/agent/state/codec.test.ts
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeState, encodeState, StateError } from './codec';
import { emptyState, STATE_FORMAT, type AgentState } from './document';
import { migrate } from './migrations';

const sample = (): AgentState => ({
  ...emptyState('0.3.0', 1_700_000_000_000),
  sandbox: { id: 'sandbox', hostname: 'pod-1', dns: true },
  storages: [{ driver: '9p', mountPoint: '/run/agent/shared/vol', source: 'vol', fstype: '9p', owners: ['c1', 'sandbox'], plan: { flags: 0, data: 'trans=virtio' }, created: { dirs: ['/run/agent/shared/vol'], file: null, localDir: null } }],
  containers: [{
    id: 'c1', bundle: '/run/agent/containers/c1', state: 'running', createdAt: 1_700_000_000_100,
    init: {
      execId: 'c1', pid: 4242, pidStartTicks: 123456, terminal: false, startedAt: 1_700_000_000_200, oomKillsAtStart: 0, exit: null, collected: false,
      fds: { stdin: 20, stdout: 21, stderr: 22, pty: null },
      stdout: { start: 100, end: 4096, ended: false, readers: { v1: 100, 'v2.default': 2048 } },
      stderr: { start: 0, end: 0, ended: false, readers: {} }, stdinWritten: 12,
    },
    execs: [{
      execId: 'e1', pid: 4300, pidStartTicks: 123999, terminal: true, startedAt: 1_700_000_000_300, oomKillsAtStart: null,
      exit: { code: null, signal: 9, coreDumped: false, oomKilled: true, exitedAt: 1_700_000_000_400 }, collected: false,
      fds: { stdin: null, stdout: null, stderr: null, pty: 23 },
      stdout: { start: 0, end: 10, ended: true, readers: {} }, stderr: { start: 0, end: 0, ended: true, readers: {} }, stdinWritten: 0,
    }],
  }],
  requests: [{ requestId: 'cc-1', digest: 'ab12', result: { pid: 4242 }, at: 1_700_000_000_150 }],
  lastEventSeq: 57,
});

describe('state codec', () => {
  it('round-trips every field, and writes format and min_reader_format first', () => {
    const text = encodeState(sample());
    assert.match(text, /^\{"format":1,"min_reader_format":1,/);
    const back = decodeState(text, 'test');
    assert.deepEqual(back.state, sample());
    assert.equal(back.format, STATE_FORMAT);
    assert.deepEqual(back.unknownKeys, []);
  });

  it("ignores a newer writer's keys (naming them) and fills in what an older writer left out", () => {
    const doc = JSON.parse(encodeState(sample()));
    doc.format = STATE_FORMAT + 1;
    doc.future_top = { x: 1 };
    doc.containers[0].init.future_field = 'y';
    delete doc.containers[0].init.stdin_written;
    delete doc.containers[0].execs[0].fds;
    delete doc.requests;
    const back = decodeState(JSON.stringify(doc), 'test');
    assert.deepEqual(back.unknownKeys.sort(), ['state.containers[0].init.future_field', 'state.future_top']);
    assert.equal(back.state.containers[0]!.init.stdinWritten, 0);
    assert.deepEqual(back.state.containers[0]!.execs[0]!.fds, { stdin: null, stdout: null, stderr: null, pty: null });
    assert.deepEqual(back.state.requests, []);
    assert.equal(back.format, STATE_FORMAT + 1);
  });

  it('refuses, with what to do, a document that needs a newer reader or is older than it reads', () => {
    const doc = JSON.parse(encodeState(sample()));
    assert.throws(() => decodeState(JSON.stringify({ ...doc, format: 9, min_reader_format: 7 }), '/s/state.json'),
      (err: unknown) => err instanceof StateError && /state \/s\/state.json: needs a reader of format 7 or later \(it is format 9, written by agent 0.3.0\).*run a newer agent/.test(err.message));
    assert.throws(() => decodeState(JSON.stringify({ ...doc, format: 0, min_reader_format: 0 }), 'x'), (err: unknown) => err instanceof StateError && /older than this agent reads/.test(err.message));
  });

  it('refuses hostile or broken documents with a StateError naming the field, never another exception', () => {
    const good = JSON.parse(encodeState(sample()));
    const cases: Array<[string, (d: any) => unknown, RegExp]> = [
      ['not JSON', () => undefined, /is not JSON/],
      ['an array', () => [], /state is not an object/],
      ['no format', (d) => ({ ...d, format: undefined }), /state.format is missing/],
      ['a string pid', (d) => (d.containers[0].init.pid = '4242', d), /state.containers\[0\].init.pid should be a non-negative integer/],
      ['a negative offset', (d) => (d.containers[0].init.stdout.end = -1, d), /stdout.end should be a non-negative integer/],
      ['end before start', (d) => (d.containers[0].init.stdout.end = 1, d), /stdout.end is 1, before start 100/],
      ['an unknown container state', (d) => (d.containers[0].state = 'zombie', d), /state.containers\[0\].state is \W?zombie\W?, not one of/],
      ['no init', (d) => (delete d.containers[0].init, d), /state.containers\[0\].init is missing/],
      ['owners not strings', (d) => (d.storages[0].owners = [1], d), /owners should be a list of strings/],
      ['containers not a list', (d) => ({ ...d, containers: {} }), /state.containers should be a list/],
      ['a huge number', (d) => (d.last_event_seq = 2 ** 60, d), /last_event_seq should be a non-negative integer/],
    ];
    for (const [name, mutate, expected] of cases) {
      const text = name === 'not JSON' ? '{"format": 1,' : JSON.stringify(mutate(structuredClone(good)));
      assert.throws(() => decodeState(text, 'x'), (err: unknown) => err instanceof StateError && expected.test(err.message), name);
    }
  });

  it('brings an older format up one step at a time, and says which step is missing', () => {
    const steps = [
      { from: 1, up: (d: Record<string, unknown>) => ({ ...d, renamed: d.old }) },
      { from: 2, up: (d: Record<string, unknown>) => ({ ...d, added: true }) },
    ];
    assert.deepEqual(migrate({ format: 1, old: 5 }, 1, 3, steps), { format: 3, old: 5, renamed: 5, added: true });
    assert.throws(() => migrate({ format: 1 }, 1, 3, steps.slice(1)), /no migration of state format 1 to 2/);
  });
});
