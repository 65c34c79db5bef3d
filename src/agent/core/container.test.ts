// The core's Container with a fake runtime (fake-runtime.testing.ts) whose
// container processes are real short-lived children, waited for by the real
// Reaper. Run: node --import tsx --test src/agent/core/container.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AgentError } from '../errors';
import { silentLogger } from '../log';
import type { OciSpec } from '../oci/spec';
import { Container, type ContainerDeps } from './container';
import { FakeRuntime } from './fake-runtime.testing';
import { testReaper } from '../process/reaper.testing';
import { isKind } from '../errors.testing';

const { reaper, tmp } = testReaper('container-test');

let seq = 0;
function setup(): { runtime: FakeRuntime; deps: ContainerDeps; bundle: string; id: string } {
  const runtime = new FakeRuntime(reaper);
  const id = `c${++seq}`;
  return { runtime, deps: { runtime, reaper, log: silentLogger, outputBufferBytes: 64 * 1024 }, bundle: path.join(tmp, id), id };
}

const spec = (args: string[]): OciSpec => ({ ociVersion: '1.0.2', process: { args, cwd: '/' }, root: { path: '/' } });
const proc = (args: string[], extra: Record<string, unknown> = {}) => ({ args, cwd: '/', ...extra });

function alive(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('Container (fake runtime, real processes)', () => {
  it('creates, starts, execs, waits, reads output and removes', async () => {
    const { runtime, deps, bundle, id } = setup();
    const c = await Container.create(id, id, bundle, spec(['sleep', '30']), false, deps);
    assert.equal(c.state, 'created');
    assert.ok(c.init.pid && alive(c.init.pid));
    await c.start();
    assert.equal(c.state, 'running');

    const p = await c.exec('e1', proc(['sh', '-c', 'echo hello; echo oops >&2; exit 3']));
    assert.ok(p.pid! > 0);
    const status = await c.wait('e1', AbortSignal.timeout(5000));
    assert.deepEqual([status.code, status.signal], [3, null]);
    assert.equal((await c.readOutput('e1', 'stdout', 'v1', 'next', 100)).data.toString(), 'hello\n');
    assert.equal((await c.readOutput('e1', 'stderr', 'v1', 'next', 100)).data.toString(), 'oops\n');

    const initPid = c.init.pid!;
    await c.remove(5);
    assert.equal(alive(initPid), false);
    assert.equal(c.init.status?.signal, 9);
    assert.deepEqual(runtime.calls.map((x) => x.method), ['create', 'start', 'exec', 'delete']);
    assert.equal(fs.existsSync(bundle), false, 'bundle removed');
  });

  it('stdio of an exec the runtime is still starting is a retryable UNAVAILABLE, not a crash', async () => {
    const { runtime, deps, bundle, id } = setup();
    const c = await Container.create(id, id, bundle, spec(['sleep', '30']), false, deps);
    await c.start();
    const held = deferred();
    runtime.onCall = (call) => (call.method === 'exec' && call.execId === 'starting' ? held.promise : undefined);
    const starting = c.exec('starting', proc(['echo', 'hi']));
    await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(c.readOutput('starting', 'stdout', 'v1', 'next', 100), isKind('unavailable', /still being started/));
    await assert.rejects(c.process('starting').io.writeStdinAt(0, Buffer.from('x')), isKind('unavailable'));
    assert.throws(() => c.process('starting').io.closeStdin(), isKind('unavailable'));
    held.resolve();
    await starting;
    const out = await c.readOutput('starting', 'stdout', 'v1', 0, 100);
    assert.equal(out.offset, 0);
    await c.remove(5);
  });

  it('remove refuses new exec/start/pause/resume at once, and kills an exec that was in flight', async () => {
    const { runtime, deps, bundle, id } = setup();
    const c = await Container.create(id, id, bundle, spec(['sleep', '30']), false, deps);
    await c.start();
    const held = deferred();
    runtime.onCall = (call) => (call.method === 'exec' && call.execId === 'slow' ? held.promise : undefined);
    const slow = c.exec('slow', proc(['sleep', '30']));
    const slowResult = slow.then(() => 'started', (e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(runtime.calls.at(-1)?.execId, 'slow', 'the exec is in the runtime');

    const removing = c.remove(5);
    let removed = false;
    void removing.then(() => (removed = true));
    assert.equal(c.state, 'running', 'still running while being removed');
    await assert.rejects(c.exec('late', proc(['true'])), isKind('failed-precondition', /being removed/));
    await assert.rejects(c.pause(), isKind('failed-precondition', /being removed/));
    await assert.rejects(c.resume(), isKind('failed-precondition', /being removed/));
    await assert.rejects(c.start(), isKind('failed-precondition', /being removed/));
    assert.equal(runtime.calls.some((x) => x.execId === 'late'), false, 'the refused exec never reached the runtime');

    await new Promise((r) => setTimeout(r, 50));
    assert.equal(removed, false, 'remove waits for the exec in flight');
    held.resolve();
    await removing;
    const err = await slowResult;
    assert.ok(err instanceof AgentError && err.kind === 'failed-precondition', `the in-flight exec failed: ${String(err)}`);
    const slowPid = runtime.pids.get(id)!.at(-1)!;
    assert.equal(alive(slowPid), false, 'the process the in-flight exec started was killed');
    assert.equal(runtime.calls.at(-1)?.method, 'delete');
  });

  it('a removal that times out says what it still waited for; the next one goes on from there', async () => {
    const { runtime, deps, bundle, id } = setup();
    const c = await Container.create(id, id, bundle, spec(['sleep', '30']), false, deps);
    await c.start();
    const held = deferred();
    runtime.onCall = (call) => (call.method === 'exec' && call.execId === 'slow' ? held.promise : undefined);
    const slow = c.exec('slow', proc(['sleep', '30'])).catch(() => {});
    await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(c.remove(0.1),
      isKind('failed-precondition', new RegExp(`removing container ${id}: the runtime had not yet started 1 of its execs after 0.1 s; RemoveContainer again goes on`)));
    assert.ok(alive(c.init.pid!), 'nothing was killed before the execs under way had started');
    held.resolve();
    await slow;
    await c.remove(5);
    assert.equal(alive(c.init.pid!), false);
    assert.equal(runtime.calls.at(-1)?.method, 'delete');
  });

  it('concurrent removes share one removal', async () => {
    const { runtime, deps, bundle, id } = setup();
    const c = await Container.create(id, id, bundle, spec(['sleep', '30']), false, deps);
    await Promise.all([c.remove(5), c.remove(5)]);
    assert.equal(runtime.calls.filter((x) => x.method === 'delete').length, 1);
  });

  it('remove succeeds when the runtime no longer knows the container; other delete failures still fail it', async () => {
    const { runtime, deps, bundle, id } = setup();
    const c = await Container.create(id, id, bundle, spec(['sleep', '30']), false, deps);
    runtime.onCall = (call) => {
      if (call.method === 'delete') throw new AgentError('not-found', `container ${id} does not exist`);
    };
    await c.remove(5);
    assert.equal(fs.existsSync(bundle), false, 'removed all the same');
    const other = setup();
    const d = await Container.create(other.id, other.id, other.bundle, spec(['sleep', '30']), false, other.deps);
    other.runtime.onCall = (call) => {
      if (call.method === 'delete') throw new AgentError('failed-precondition', 'crun delete: device busy');
    };
    await assert.rejects(d.remove(5), isKind('failed-precondition', /device busy/));
  });

  it('a failing create deletes what the runtime made and removes the bundle', async () => {
    const { runtime, deps, bundle, id } = setup();
    runtime.onCall = (call) => {
      if (call.method === 'create') throw new AgentError('failed-precondition', 'fake create failed');
    };
    await assert.rejects(Container.create(id, id, bundle, spec(['sleep', '30']), false, deps), isKind('failed-precondition', /fake create failed/));
    assert.deepEqual(runtime.calls.map((x) => x.method), ['create', 'delete']);
    assert.equal(fs.existsSync(bundle), false);
  });
});

describe('Container.readOutput (readers with places of their own)', () => {
  it("serves a v1 reader ('next') and a v2 reader (offsets) every byte, and forgets the exec once both were answered the end", async () => {
    const { deps, bundle, id } = setup();
    const c = await Container.create(id, id, bundle, spec(['sleep', '30']), false, deps);
    await c.start();
    await c.exec('e2', proc(['sh', '-c', 'printf abcdefgh']));
    await c.wait('e2', AbortSignal.timeout(5000));
    assert.deepEqual(await c.readOutput('e2', 'stdout', 'v2', 0, 3), { offset: 0, data: Buffer.from('abc'), eof: false });
    assert.equal((await c.readOutput('e2', 'stdout', 'v1', 'next', 100)).data.toString(), 'abcdefgh');
    assert.deepEqual(await c.readOutput('e2', 'stdout', 'v1', 'next', 100), { offset: 8, data: Buffer.alloc(0), eof: true });
    assert.equal(c.process('e2').execId, 'e2', 'v2 is still owed the rest');
    await assert.rejects(
      c.readOutput('e2', 'stdout', 'v2', 100, 10),
      isKind('out-of-range', new RegExp(`^offset 100 is past the end of stdout of exec e2 in container ${id} \\(8\\)$`)),
    );
    assert.deepEqual(await c.readOutput('e2', 'stdout', 'v2', 3, 100), { offset: 3, data: Buffer.from('defgh'), eof: true });
    assert.equal(c.process('e2').execId, 'e2', 'v2 has the last bytes but was not yet answered the end');
    assert.deepEqual(await c.readOutput('e2', 'stdout', 'v2', 8, 100), { offset: 8, data: Buffer.alloc(0), eof: true });
    // stderr ended empty and nobody registered there: nothing is owed.
    assert.throws(() => c.process('e2'), isKind('not-found'));
    await assert.rejects(c.readOutput('e2', 'stdout', 'v1', 'next', 100), isKind('not-found'));
    await c.remove(5);
  });

  it('answers a reader asking for released bytes with out-of-range naming the first offset held; v1 alone behaves as before', async () => {
    const { deps, bundle, id } = setup();
    const c = await Container.create(id, id, bundle, spec(['sleep', '30']), false, deps);
    await c.start();
    await c.exec('e3', proc(['sh', '-c', 'printf 0123456789; printf err >&2']));
    await c.wait('e3', AbortSignal.timeout(5000));
    assert.equal((await c.readOutput('e3', 'stdout', 'v1', 'next', 4)).data.toString(), '0123');
    await assert.rejects(
      c.readOutput('e3', 'stdout', 'v2', 0, 10),
      isKind('out-of-range', new RegExp(`^bytes before offset 4 of stdout of exec e3 in container ${id} were already released; read from 4$`)),
    );
    await assert.rejects(c.readOutput('e3', 'stdout', 'bad reader!', 'next', 10), isKind('invalid-argument', /reader/));
    assert.equal((await c.readOutput('e3', 'stdout', 'v1', 'next', 100)).data.toString(), '456789');
    assert.equal((await c.readOutput('e3', 'stdout', 'v1', 'next', 100)).data.length, 0);
    assert.equal(c.process('e3').execId, 'e3', 'stderr is still owed to whoever reads it');
    assert.equal((await c.readOutput('e3', 'stderr', 'v1', 'next', 100)).data.toString(), 'err');
    assert.equal(c.process('e3').execId, 'e3', 'v1 has the bytes of stderr, not yet its end');
    assert.equal((await c.readOutput('e3', 'stderr', 'v1', 'next', 100)).data.length, 0);
    assert.throws(() => c.process('e3'), isKind('not-found'));
    await c.remove(5);
  });
});
