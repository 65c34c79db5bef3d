// The core's event bus (events.ts): sequence numbers, cursors, the kept
// window and the out-of-range error, streaming with watch() and its end on
// abort, subscribers and take-queues. Then what the core publishes on it, with
// the fake runtime (fake-runtime.testing.ts) whose container processes are
// real children waited for by the real Reaper.
// Run: node --import tsx --test src/agent/core/events.test.ts
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AgentError } from '../errors';
import { isKind } from '../errors.testing';
import { silentLogger } from '../log';
import type { ContainerDeps } from './container';
import { EventBus, EventCursorError, type CoreEvent, type Sequenced } from './events';
import { FakeRuntime } from './fake-runtime.testing';
import { Sandbox } from './sandbox';
import { testReaper } from '../process/reaper.testing';

const state = (containerId: string, s: 'created' | 'running' | 'paused' | 'stopped' | 'removed' = 'running'): CoreEvent =>
  ({ type: 'container-state', containerId, state: s, at: Date.now() });
const idsOf = (items: Sequenced<CoreEvent>[]) => items.map((i) => i.event.containerId);
const tick = () => new Promise((r) => setImmediate(r));

/** Asserts `err` is the cursor error with these bounds, and returns true (for assert.rejects/throws). */
const cursorError = (oldestSeq: number, lastSeq: number) => (err: unknown) => {
  assert.ok(err instanceof EventCursorError, `not an EventCursorError: ${String(err)}`);
  assert.ok(err instanceof AgentError);
  assert.equal(err.kind, 'out-of-range');
  assert.equal(err.reason, 'EVENT_CURSOR_OUT_OF_RANGE');
  assert.deepEqual([err.oldestSeq, err.lastSeq], [oldestSeq, lastSeq]);
  assert.deepEqual(err.metadata, { oldest_seq: String(oldestSeq), last_seq: String(lastSeq) });
  return true;
};

describe('EventBus', () => {
  it('numbers events 1, 2, 3... in publish order, and reads them from any cursor in that order', async () => {
    const bus = new EventBus();
    assert.deepEqual([bus.lastSeq, bus.oldestSeq], [0, 1], 'empty: from now is 0');
    const seqs = ['a', 'b', 'c', 'd'].map((id) => bus.publish(state(id)).seq);
    assert.deepEqual(seqs, [1, 2, 3, 4]);
    assert.deepEqual([bus.lastSeq, bus.oldestSeq], [4, 1]);
    const all = await bus.read(0);
    assert.deepEqual(all.map((i) => i.seq), [1, 2, 3, 4]);
    assert.deepEqual(idsOf(all), ['a', 'b', 'c', 'd']);
    assert.deepEqual(idsOf(await bus.read(2)), ['c', 'd'], 'only what follows the cursor');
    // The event is the same frozen object for every reader.
    assert.equal((await bus.read(3))[0], all[3]);
    assert.ok(Object.isFrozen(all[0]!.event));
  });

  it('a reader at the newest seq ("from now") waits for the next event', async () => {
    const bus = new EventBus();
    bus.publish(state('old'));
    let got: Sequenced<CoreEvent>[] | null = null;
    const reading = bus.read(bus.lastSeq).then((r) => (got = r));
    await tick();
    assert.equal(got, null, 'nothing new yet');
    assert.equal(bus.waiting, 1);
    bus.publish(state('new'));
    await reading;
    assert.deepEqual(idsOf(got!), ['new']);
    assert.equal(got![0]!.seq, 2);
    assert.equal(bus.waiting, 0);
  });

  it('keeps the newest `capacity` events; an older cursor is out of range naming the oldest seq held', async () => {
    const bus = new EventBus({ capacity: 4 });
    for (let i = 1; i <= 10; i++) bus.publish(state(`c${i}`));
    assert.deepEqual([bus.oldestSeq, bus.lastSeq], [7, 10]);
    assert.deepEqual(idsOf(await bus.read(6)), ['c7', 'c8', 'c9', 'c10'], 'the oldest cursor still served');
    await assert.rejects(bus.read(5), cursorError(7, 10));
    await assert.rejects(bus.read(0), cursorError(7, 10));
    assert.throws(() => bus.watch(5), cursorError(7, 10), 'watch refuses at once');
    await assert.rejects(bus.read(5), /event cursor 5 fell out of the kept window: events 6\.\.6 were dropped; events 7\.\.10 are held/);
    // A cursor from the future (an earlier agent's) is refused too, not waited on for ever.
    await assert.rejects(bus.read(11), cursorError(7, 10));
    await assert.rejects(bus.read(11), /ahead of the newest event 10/);
    assert.throws(() => bus.check(-1), isKind('invalid-argument', /not a non-negative integer/));
    assert.throws(() => bus.check(1.5), isKind('invalid-argument'));
    assert.throws(() => bus.check(Number.NaN), isKind('invalid-argument'));
    bus.check(10);
    // A fresh bus serves 0 only.
    const fresh = new EventBus();
    fresh.check(0);
    assert.throws(() => fresh.check(1), cursorError(1, 0));
    assert.equal(bus.waiting, 0);
  });

  it('watch streams every event after the cursor as it comes, and ends quietly on abort, leaving no reader', async () => {
    const bus = new EventBus();
    bus.publish(state('before'));
    const ac = new AbortController();
    const seen: number[] = [];
    const done = (async () => {
      for await (const item of bus.watch(0, ac.signal)) seen.push(item.seq);
    })();
    await tick();
    bus.publish(state('x'));
    bus.publish(state('y'));
    await tick();
    bus.publish(state('z'));
    for (let i = 0; i < 20 && seen.length < 4; i++) await tick();
    assert.deepEqual(seen, [1, 2, 3, 4]);
    assert.equal(bus.waiting, 1, 'waiting for the fifth');
    ac.abort();
    await done; // no error: the consumer went away
    assert.equal(bus.waiting, 0, 'the aborted wait is gone');
    bus.publish(state('after'));
    assert.deepEqual(seen, [1, 2, 3, 4]);
  });

  it('watch from now skips the past; break and return() end it at once, with a wait in progress too', async () => {
    const bus = new EventBus();
    bus.publish(state('past'));
    const stream = bus.watch(bus.lastSeq);
    const pending = stream.next();
    await tick();
    assert.equal(bus.waiting, 1);
    bus.publish(state('now'));
    const first = await pending;
    assert.equal(first.done, false);
    assert.equal(first.value?.event.containerId, 'now');
    assert.equal(stream.position, 2);
    // A next() waiting when the consumer stops resolves done, and its wait is withdrawn.
    const waiting = stream.next();
    await tick();
    assert.equal(bus.waiting, 1);
    assert.deepEqual(await stream.return(), { done: true, value: undefined });
    assert.deepEqual(await waiting, { done: true, value: undefined });
    assert.equal(bus.waiting, 0);
    assert.deepEqual(await stream.next(), { done: true, value: undefined });
    // for-await with break: nothing stays behind, on the bus or on the caller's signal.
    const call = new AbortController();
    for await (const item of bus.watch(0, call.signal)) {
      assert.equal(item.seq, 1);
      break;
    }
    assert.equal(bus.waiting, 0);
    assert.equal(getEventListeners(call.signal, 'abort').length, 0);
    // Already aborted: nothing at all.
    const none = bus.watch(0, AbortSignal.abort());
    assert.deepEqual(await none.next(), { done: true, value: undefined });
  });

  it('a watcher too slow for the kept window gets the out-of-range error from next()', async () => {
    const bus = new EventBus({ capacity: 3 });
    const stream = bus.watch(0);
    bus.publish(state('a'));
    assert.equal((await stream.next()).value?.seq, 1);
    // The events it had in hand are still handed out; the gap after them is the error.
    for (let i = 0; i < 5; i++) bus.publish(state(`b${i}`));
    await assert.rejects(stream.next(), cursorError(4, 6));
    assert.deepEqual(await stream.next(), { done: true, value: undefined }, 'ended by the error');
    assert.equal(bus.waiting, 0);
  });

  it('subscribers see each event synchronously, in order; a failing one does not stop the others', () => {
    const bus = new EventBus({ log: silentLogger });
    const seen: string[] = [];
    bus.subscribe(() => {
      throw new Error('broken subscriber');
    });
    const off = bus.subscribe((item) => seen.push(`${item.seq}:${item.event.containerId}`));
    bus.publish(state('a'));
    assert.deepEqual(seen, ['1:a'], 'before publish returned');
    off();
    bus.publish(state('b'));
    assert.deepEqual(seen, ['1:a']);
    assert.equal(bus.lastSeq, 2);
  });

  it('a take-queue gets only its own type, from its creation on', async () => {
    const bus = new EventBus();
    bus.publish({ type: 'oom-kill', containerId: 'before', at: 1 });
    const ooms = bus.takeQueue('oom-kill');
    bus.publish(state('c'));
    bus.publish({ type: 'oom-kill', containerId: 'c', at: 2 });
    assert.equal(ooms.pending, 1);
    const taken = await ooms.take();
    assert.deepEqual(taken, { type: 'oom-kill', containerId: 'c', at: 2 });
  });
});

// ---- What the core publishes (fake runtime, real processes) ----

const { reaper, tmp } = testReaper('events-test');

let sandboxes = 0;
function sandboxWith(more: Partial<ContainerDeps> = {}) {
  const dir = path.join(tmp, `s${++sandboxes}`);
  const sharedDir = path.join(dir, 'shared');
  fs.mkdirSync(path.join(sharedDir, 'rootfs'), { recursive: true });
  const bus = new EventBus();
  const deps: ContainerDeps = { runtime: new FakeRuntime(reaper), reaper, log: silentLogger, outputBufferBytes: 64 * 1024, events: bus, ...more };
  const sandbox = new Sandbox({ stateDir: path.join(dir, 'state'), sharedDir }, deps, silentLogger);
  const spec = (args: string[]) => ({
    ociVersion: '1.0.2',
    process: { args, cwd: '/' },
    root: { path: path.join(sharedDir, 'rootfs') },
    linux: { namespaces: [{ type: 'mount' }, { type: 'pid' }] },
  });
  return { bus, sandbox, spec };
}

/** An event in short: "container-state c1 running", "process-exited c1/e1 code=3". */
function brief(e: CoreEvent): string {
  switch (e.type) {
    case 'container-state':
      return `container-state ${e.containerId} ${e.state}`;
    case 'process-started':
      return `process-started ${e.containerId}/${e.execId}`;
    case 'process-exited':
      return `process-exited ${e.containerId}/${e.execId} ${e.status.signal !== null ? `signal=${e.status.signal}` : `code=${e.status.code}`}`;
    case 'oom-kill':
      return `oom-kill ${e.containerId}`;
  }
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('what the core publishes', () => {
  it("a container's life: create, start, exec, pause, resume, remove, each process's start and exit, in order", async () => {
    const { bus, sandbox, spec } = sandboxWith();
    const from = bus.lastSeq;
    const c = await sandbox.createContainer('c1', 'init1', spec(['sleep', '30']));
    await c.start();
    const e1 = await c.exec('e1', { args: ['sh', '-c', 'exit 3'], cwd: '/' });
    const waited = await c.wait('e1', AbortSignal.timeout(5000));
    await c.pause();
    await c.resume();
    await sandbox.removeContainer('c1', 5);
    const items = await bus.read(from);
    assert.deepEqual(items.map((i) => brief(i.event)), [
      'process-started c1/init1',
      'container-state c1 created',
      'container-state c1 running',
      'process-started c1/e1',
      'process-exited c1/e1 code=3',
      'container-state c1 paused',
      'container-state c1 running',
      'process-exited c1/init1 signal=9',
      'container-state c1 stopped',
      'container-state c1 removed',
    ]);
    assert.deepEqual(items.map((i) => i.seq), items.map((_, k) => from + k + 1), 'consecutive seqs');
    const [initStarted, , , execStarted, execExited] = items.map((i) => i.event);
    assert.equal(initStarted!.type === 'process-started' && initStarted.pid, c.init.pid);
    assert.equal(execStarted!.type === 'process-started' && execStarted.pid, e1.pid);
    // The event carries the process's own record: what WaitProcess got.
    assert.ok(execExited!.type === 'process-exited');
    assert.equal(execExited.status, waited);
    assert.equal(execExited.pid, e1.pid);
    assert.deepEqual([waited.code, waited.signal, waited.coreDumped, waited.oomKilled], [3, null, false, false]);
    assert.ok(waited.startedAt <= waited.exitedAt);
    const times = items.map((i) => (i.event.type === 'process-exited' ? i.event.status.exitedAt : i.event.at));
    assert.deepEqual(times, [...times].sort((a, b) => a - b), 'times do not go back');
  });

  it('an init that ends by itself: its exit, then stopped; no exec or start event for what was refused', async () => {
    const { bus, sandbox, spec } = sandboxWith();
    const c = await sandbox.createContainer('c2', 'c2', spec(['sh', '-c', 'sleep 0.2; exit 4']));
    await c.start();
    await c.wait('c2', AbortSignal.timeout(5000));
    await until('stopped', () => c.state === 'stopped');
    await assert.rejects(c.exec('late', { args: ['true'], cwd: '/' }), isKind('failed-precondition'));
    assert.deepEqual((await bus.read(0)).map((i) => brief(i.event)), [
      'process-started c2/c2',
      'container-state c2 created',
      'container-state c2 running',
      'process-exited c2/c2 code=4',
      'container-state c2 stopped',
    ]);
    await sandbox.removeContainer('c2', 5);
    assert.deepEqual((await bus.read(bus.lastSeq - 1)).map((i) => brief(i.event)), ['container-state c2 removed'], 'nothing else left to stop');
  });

  it('a failed create publishes nothing', async () => {
    const { bus, sandbox, spec } = sandboxWith({ runtime: Object.assign(new FakeRuntime(reaper), { onCall: () => { throw new AgentError('failed-precondition', 'no'); } }) });
    await assert.rejects(sandbox.createContainer('c3', 'c3', spec(['sleep', '30'])), isKind('failed-precondition'));
    assert.equal(bus.lastSeq, 0);
  });

  it('an exit status is oomKilled when the process was SIGKILLed and the cgroup counted a kill since it started', async () => {
    let count = 5;
    const asked: string[] = [];
    const oomKills = { count: async (id: string) => (asked.push(id), count) };
    const { bus, sandbox, spec } = sandboxWith({ oomKills });
    const c = await sandbox.createContainer('c4', 'c4', spec(['sleep', '30']));
    await c.start();
    const run = async (execId: string, kill: NodeJS.Signals, countBeforeKill: number) => {
      await c.exec(execId, { args: ['sleep', '30'], cwd: '/' });
      count = countBeforeKill;
      c.signal(execId, os.constants.signals[kill]);
      return c.wait(execId, AbortSignal.timeout(5000));
    };
    assert.equal((await run('oom', 'SIGKILL', 6)).oomKilled, true, 'killed as the count rose');
    assert.equal((await run('kill', 'SIGKILL', 6)).oomKilled, false, 'killed, the count unchanged since its start');
    assert.equal((await run('term', 'SIGTERM', 7)).oomKilled, false, 'not a SIGKILL');
    const exited = (await bus.read(0)).flatMap((i) => (i.event.type === 'process-exited' ? [[i.event.execId, i.event.status.oomKilled]] : []));
    assert.deepEqual(exited, [['oom', true], ['kill', false], ['term', false]]);
    assert.ok(asked.every((id) => id === 'c4'));
    // The init's cgroup was new (0 kills) when it started: a SIGKILL now, with kills counted, is judged an OOM kill.
    await sandbox.removeContainer('c4', 5);
    assert.equal(c.init.status?.oomKilled, true);
    // Without an OOM watcher nothing is oomKilled.
    const plain = sandboxWith();
    const p = await plain.sandbox.createContainer('c5', 'c5', plain.spec(['sleep', '30']));
    await plain.sandbox.removeContainer('c5', 5);
    assert.deepEqual([p.init.status?.signal, p.init.status?.oomKilled], [9, false]);
  });

  it('an exec is kept until its status is acknowledged (or collected) and its output read to the end', async () => {
    const { sandbox, spec } = sandboxWith();
    const c = await sandbox.createContainer('c6', 'c6', spec(['sleep', '30']));
    await c.start();
    const quiet = await c.exec('quiet', { args: ['sleep', '0.2'], cwd: '/' });
    assert.throws(() => quiet.acknowledge(), isKind('failed-precondition', /has not exited/));
    await quiet.exited();
    await until('the exec\'s output to end', () => quiet.io.stdout.drained && quiet.io.stderr.drained);
    assert.equal(c.process('quiet'), quiet, 'kept: nobody has its status yet');
    quiet.acknowledge();
    assert.equal(quiet.collected, true);
    assert.throws(() => c.process('quiet'), isKind('not-found'), 'acknowledged with no output left: forgotten');
    quiet.acknowledge(); // again: nothing more to do
    // With output nobody read, an acknowledged exec stays for its output.
    const chatty = await c.exec('chatty', { args: ['sh', '-c', 'echo unread'], cwd: '/' });
    await chatty.exited();
    chatty.acknowledge();
    assert.equal(c.process('chatty'), chatty);
    // The init is never forgotten by an acknowledgement.
    await sandbox.removeContainer('c6', 5);
    c.init.acknowledge();
    assert.equal(c.process('c6'), c.init);
  });
});
