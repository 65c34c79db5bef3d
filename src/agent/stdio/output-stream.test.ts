// Run: node --import tsx --test src/agent/stdio/output-stream.test.ts
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { AgentError } from '../errors';
import { OutputStream } from './output-stream';
import { isKind } from '../errors.testing';

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads with reader `name` from 'next' until the empty end-of-stream answer (v1's loop). */
async function drainNext(s: OutputStream, name: string, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const c = await s.readAs(name, 'next', max);
    if (c.data.length === 0) {
      assert.equal(c.eof, true);
      return Buffer.concat(parts);
    }
    parts.push(c.data);
  }
}

describe('OutputStream offsets', () => {
  it('appends at absolute offsets from 0; a read waits at the end, returns at most max, and takes nothing', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    assert.deepEqual(s.snapshot(), { start: 0, end: 0, ended: false });
    const pending = s.read(0, 3);
    src.write('hello');
    assert.deepEqual(await pending, { offset: 0, data: Buffer.from('hel'), eof: false });
    // Not destructive: the same offset gives the same bytes.
    assert.equal((await s.read(0, 100)).data.toString(), 'hello');
    assert.deepEqual(await s.read(3, 100), { offset: 3, data: Buffer.from('lo'), eof: false });
    assert.deepEqual(s.snapshot(), { start: 0, end: 5, ended: false });
    src.write(' world');
    await tick();
    assert.equal((await s.read(2, 6)).data.toString(), 'llo wo', 'a read across two chunks');
  });

  it('reports EOF with the final offset: the last bytes carry eof, and a read at the end answers empty with eof', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    src.write('abc');
    await tick();
    assert.equal((await s.read(0, 10)).eof, false, 'not ended yet');
    src.end('de');
    await tick();
    assert.deepEqual(s.snapshot(), { start: 0, end: 5, ended: true });
    assert.deepEqual(await s.read(1, 10), { offset: 1, data: Buffer.from('bcde'), eof: true });
    assert.deepEqual(await s.read(1, 2), { offset: 1, data: Buffer.from('bc'), eof: false }, 'bytes follow');
    assert.deepEqual(await s.read(5, 10), { offset: 5, data: Buffer.alloc(0), eof: true });
  });

  it('refuses offsets past the end and non-offsets', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024, 'stdout of exec e1 in container c1');
    src.write('abc');
    await tick();
    await assert.rejects(s.read(4, 10), isKind('out-of-range', /^offset 4 is past the end of stdout of exec e1 in container c1 \(3\)$/));
    await assert.rejects(s.readAs('v2', 4, 10), isKind('out-of-range', /past the end/));
    await assert.rejects(s.read(-1, 10), isKind('invalid-argument'));
    await assert.rejects(s.read(1.5, 10), isKind('invalid-argument'));
    await assert.rejects(s.read(0, 0), isKind('invalid-argument'));
    // A refused read registers no reader (which would hold the window for ever).
    s.reader('v1').ack(3);
    assert.equal(s.start, 3, 'only v1 counts');
  });

  it('answers a reader asking for released bytes with out-of-range naming the first offset still held', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    src.write('0123456789');
    await tick();
    assert.equal((await s.readAs('v1', 'next', 4)).data.toString(), '0123');
    assert.equal(s.start, 4, 'released once the only reader acknowledged them');
    await assert.rejects(
      s.readAs('v2', 2, 10, { subject: 'stdout of exec e1 in container c1' }),
      (err: unknown) =>
        isKind('out-of-range', /^bytes before offset 4 of stdout of exec e1 in container c1 were already released; read from 4$/)(err) &&
        (assert.deepEqual((err as AgentError).metadata, { first_offset: '4' }), true),
    );
    await assert.rejects(s.read(0, 10), isKind('out-of-range', /read from 4/));
    // The offset it names works.
    assert.deepEqual(await s.readAs('v2', 4, 3), { offset: 4, data: Buffer.from('456'), eof: false });
    // Now v2 is registered at 4 and holds the rest for itself.
    assert.equal((await s.readAs('v1', 'next', 100)).data.toString(), '456789');
    assert.equal(s.start, 4, 'v2 has not acknowledged past 4');
    assert.equal((await s.readAs('v2', 7, 100)).data.toString(), '789');
    assert.equal(s.start, 7);
  });

  it('trims nothing while no reader is registered (unread output is kept)', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    src.write('abcdef');
    await tick();
    await s.read(3, 10);
    assert.equal(s.start, 0);
    assert.equal(s.retained, 6);
  });

  it('a reader re-asking the same offset (a reply lost) gets the same bytes; acknowledgements never move back', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    src.write('abcdef');
    await tick();
    const first = await s.readAs('v2', 0, 3);
    const again = await s.readAs('v2', 0, 3);
    assert.deepEqual(first, again);
    await s.readAs('v2', 3, 3);
    assert.equal(s.start, 3);
    await s.readAs('v2', 3, 3);
    s.reader('v2').ack(1);
    assert.equal(s.reader('v2').position, 3);
    assert.throws(() => s.reader('v2').ack(7), isKind('out-of-range'));
    assert.throws(() => s.reader('v2').ack(-1), isKind('invalid-argument'));
  });

  it("gives concurrent 'next' reads of one reader different bytes, each once", async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    const a = s.readAs('v1', 'next', 3);
    const b = s.readAs('v1', 'next', 3);
    src.write('abcdef');
    const [ra, rb] = await Promise.all([a, b]);
    assert.deepEqual([ra.offset, ra.data.toString(), rb.offset, rb.data.toString()], [0, 'abc', 3, 'def']);
    // One woken with nothing left for it waits again instead of answering empty.
    const c = s.readAs('v1', 'next', 3);
    const d = s.readAs('v1', 'next', 3);
    src.write('gh');
    await tick();
    assert.equal((await c).data.toString(), 'gh');
    assert.equal(s.waiting, 1, 'd waits for more');
    src.end();
    assert.deepEqual(await d, { offset: 8, data: Buffer.alloc(0), eof: true });
  });

  it('treats a source error (EIO from a pty master) as end of stream', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    const pending = s.read(0, 10);
    src.destroy(Object.assign(new Error('read EIO'), { code: 'EIO' }));
    assert.deepEqual(await pending, { offset: 0, data: Buffer.alloc(0), eof: true });
  });
});

describe('OutputStream drained', () => {
  it('counts a stream nobody reads as drained once it ends empty, and not when it ends with bytes', async () => {
    const empty = new PassThrough();
    const s = new OutputStream(empty, 1024);
    assert.equal(s.drained, false);
    empty.end();
    await tick();
    assert.equal(s.drained, true);

    const full = new PassThrough();
    const t = new OutputStream(full, 1024);
    full.end('x');
    await tick();
    assert.equal(t.drained, false, 'unread output is owed to whoever reads');
  });

  it('is drained once the reader is answered end of stream, not when it merely has the last bytes', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    src.end('x');
    await tick();
    const last = await s.readAs('v1', 'next', 10);
    assert.deepEqual(last, { offset: 0, data: Buffer.from('x'), eof: true });
    assert.equal(s.drained, false, 'v1 has not seen the end yet (it sees it as an empty answer)');
    assert.deepEqual(await s.readAs('v1', 'next', 10), { offset: 1, data: Buffer.alloc(0), eof: true });
    assert.equal(s.drained, true);
  });

  it('waits for every registered reader', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    src.end('ab');
    await tick();
    await s.readAs('v2', 0, 10);
    assert.equal((await drainNext(s, 'v1', 1)).toString(), 'ab');
    assert.equal(s.drained, false, 'v2 has the bytes, not the end');
    assert.deepEqual(await s.readAs('v2', 2, 10), { offset: 2, data: Buffer.alloc(0), eof: true });
    assert.equal(s.drained, true);
  });

  it('owes the end to a reader that registered on a stream that then ended empty', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    const ac = new AbortController();
    const pending = s.readAs('v1', 'next', 10, { signal: ac.signal });
    ac.abort();
    assert.deepEqual(await pending, { offset: 0, data: Buffer.alloc(0), eof: false });
    src.end();
    await tick();
    assert.equal(s.drained, false);
    await s.readAs('v1', 'next', 10);
    assert.equal(s.drained, true);
  });
});

describe('OutputStream waiters', () => {
  it('forgets the waiter of every aborted read (polling a silent process stays bounded)', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    for (let i = 0; i < 1000; i++) {
      const ac = new AbortController();
      const reads = [s.read(0, 10, { signal: ac.signal }), s.readAs('v1', 'next', 10, { signal: ac.signal }), s.readAs('v2', 0, 10, { signal: ac.signal })];
      assert.equal(s.waiting, 3);
      ac.abort();
      for (const r of await Promise.all(reads)) assert.deepEqual(r, { offset: 0, data: Buffer.alloc(0), eof: false });
    }
    assert.equal(s.waiting, 0);
    // An already aborted signal does not wait at all.
    assert.equal((await s.read(0, 10, { signal: AbortSignal.abort() })).data.length, 0);
    assert.equal(s.waiting, 0);
    // A reader still waiting is woken by data as before.
    const live = s.readAs('v1', 'next', 10);
    assert.equal(s.waiting, 1);
    src.write('late');
    assert.equal((await live).data.toString(), 'late');
    assert.equal(s.waiting, 0);
    assert.equal(s.drained, false);
  });
});

describe('OutputStream back-pressure', () => {
  it('pauses the source while the window holds the limit and resumes when trimming brings it below, losing nothing', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 10);
    for (let i = 0; i < 5; i++) src.write('abcd');
    await tick();
    assert.ok(src.isPaused(), 'source paused once 10 bytes are held');
    assert.ok(s.retained >= 10 && s.retained <= 12, `retained ${s.retained}`);
    // A read that acknowledges nothing changes nothing.
    await s.read(0, 100);
    assert.ok(src.isPaused());
    src.end();
    assert.equal((await drainNext(s, 'v1', 7)).toString(), 'abcd'.repeat(5));
  });

  it('a reader that does not acknowledge holds the window for everyone', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 8);
    await s.readAs('slow', 0, 1, { signal: AbortSignal.abort() });
    src.write('0123456789');
    await tick();
    assert.equal((await s.readAs('v1', 'next', 100)).data.toString(), '0123456789');
    assert.equal(s.start, 0, 'slow is still at 0');
    assert.ok(src.isPaused());
    s.reader('slow').ack(10);
    assert.equal(s.start, 10);
    assert.equal(src.isPaused(), false);
  });

  it('blocks a real writer of 10 MB that nobody reads at the limit (retained <= limit + one chunk), and resumes it when read', async (t) => {
    const limit = 256 * 1024;
    const total = 10_000_000;
    const child = spawn('head', ['-c', String(total), '/dev/zero'], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => child.kill('SIGKILL'));
    let exited = false;
    const exit = new Promise<void>((r) => child.once('exit', () => ((exited = true), r())));
    const s = new OutputStream(child.stdout as Readable, limit);
    let maxRetained = 0;
    let maxChunk = 0;
    child.stdout!.on('data', (c: Buffer) => {
      maxChunk = Math.max(maxChunk, c.length);
      maxRetained = Math.max(maxRetained, s.retained);
    });
    // Let it write until it blocks: the window reaches the limit and stops growing.
    for (let last = -1, still = 0; still < 4; ) {
      await sleep(50);
      still = s.end >= limit && s.end === last ? still + 1 : 0;
      last = s.end;
      if (exited) break;
    }
    assert.ok(s.end >= limit, `at least the limit arrived (${s.end})`);
    assert.ok(s.end < total, `the writer is blocked short of ${total} bytes (${s.end} arrived)`);
    assert.ok(maxRetained <= limit + maxChunk, `retained ${maxRetained} <= ${limit} + one chunk (${maxChunk})`);
    assert.equal(exited, false, 'the writer is blocked in write(2), not finished');
    // Reading releases the window and the writer goes on; every byte arrives once.
    let got = 0;
    for (;;) {
      const c = await s.readAs('v1', 'next', 100_000);
      if (c.data.length === 0) break;
      assert.ok(c.data.every((b) => b === 0));
      got += c.data.length;
    }
    assert.equal(got, total);
    assert.ok(maxRetained <= limit + maxChunk, `retained ${maxRetained} <= ${limit} + one chunk (${maxChunk}) while read`);
    await exit;
  });
});

describe('OutputStream with two readers', () => {
  it('gives a v1 reader and a v2 reader of a real process every byte exactly once (digest over 5 MB, random chunking)', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'output-stream-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'written');
    // tee keeps a copy of exactly what went into the pipe.
    const child = spawn('sh', ['-c', 'head -c 5000000 /dev/urandom | tee "$1"', 'sh', file], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => child.kill('SIGKILL'));
    const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // A small window: trimming and back-pressure happen all the time.
    const s = new OutputStream(child.stdout as Readable, 64 * 1024);
    const rand = (n: number) => 1 + Math.floor(Math.random() * n);

    const v1 = (async () => {
      const hash = createHash('sha256');
      let length = 0;
      for (;;) {
        const c = await s.readAs('v1', 'next', rand(100_000));
        if (c.data.length === 0) return { digest: hash.digest('hex'), length };
        assert.equal(c.offset, length, 'v1 gets the next bytes');
        hash.update(c.data);
        length += c.data.length;
        if (Math.random() < 0.05) await sleep(1);
      }
    })();

    const v2 = (async () => {
      const hash = createHash('sha256');
      let offset = 0;
      let lost = 0;
      for (;;) {
        const c = await s.readAs('v2', offset, rand(100_000));
        assert.equal(c.offset, offset);
        // Now and then the reply is lost (a deadline, a reconnect): ask again from the same offset.
        if (c.data.length > 0 && Math.random() < 0.1) {
          lost++;
          continue;
        }
        hash.update(c.data);
        offset += c.data.length;
        if (c.eof) {
          // Confirms the end, as a resumed stream at the final offset would.
          assert.deepEqual(await s.readAs('v2', offset, 1), { offset, data: Buffer.alloc(0), eof: true });
          return { digest: hash.digest('hex'), length: offset, lost };
        }
        if (Math.random() < 0.05) await sleep(1);
      }
    })();

    const [a, b] = await Promise.all([v1, v2]);
    assert.equal(await exit, 0);
    const written = fs.readFileSync(file);
    assert.equal(written.length, 5_000_000);
    const expected = createHash('sha256').update(written).digest('hex');
    assert.deepEqual({ digest: a.digest, length: a.length }, { digest: expected, length: 5_000_000 }, 'v1');
    assert.deepEqual({ digest: b.digest, length: b.length }, { digest: expected, length: 5_000_000 }, 'v2');
    assert.ok(b.lost > 0, 'some replies were lost and asked for again');
    assert.equal(s.drained, true);
    assert.ok(s.retained <= 64 * 1024 + 65536);
  });
});

/** Takes `n` chunks from a follow() generator (or fewer at its end). */
async function take(gen: AsyncGenerator<{ offset: number; data: Buffer; eof: boolean }>, n: number) {
  const got: Array<{ offset: number; data: string; eof: boolean }> = [];
  for (let i = 0; i < n; i++) {
    const r = await gen.next();
    if (r.done) break;
    got.push({ offset: r.value.offset, data: r.value.data.toString(), eof: r.value.eof });
  }
  return got;
}

describe('OutputStream follow', () => {
  it("hands out chunks from an offset as they arrive, then an empty eof chunk at the final offset; the reader's place kept `hold` bytes behind", async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    const gen = s.follow('r', 0, 4, { hold: 2 });
    src.write('abcdef');
    assert.deepEqual(await take(gen, 2), [{ offset: 0, data: 'abcd', eof: false }, { offset: 4, data: 'ef', eof: false }]);
    // Taken to 6 when the third chunk is asked for: the place moves to 6 - 2.
    const third = gen.next();
    await tick();
    assert.equal(s.reader('r').position, 4);
    assert.equal(s.start, 4, 'what every reader is past is released');
    src.end('g');
    assert.deepEqual((await third).value, { offset: 6, data: Buffer.from('g'), eof: false }, 'a chunk with data never carries eof');
    assert.deepEqual(await take(gen, 2), [{ offset: 7, data: '', eof: true }]);
    assert.equal(s.reader('r').reachedEnd, false, 'held behind the end, the reader has not reached it');
    assert.equal(s.drained, false);
    assert.deepEqual(await take(s.follow('r', 7, 4, { hold: 2 }), 2), [{ offset: 7, data: '', eof: true }]);
    assert.equal(s.reader('r').reachedEnd, true, 'asked at the final offset: at the end');
    assert.equal(s.drained, true);
  });

  it("'acknowledged' keeps everything the reader was sent until it acknowledges; the window then holds the source back", async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 8);
    const gen = s.follow('r', 0, 4, { hold: 'acknowledged' });
    src.write('abcdefghijkl');
    await tick();
    assert.deepEqual(await take(gen, 3), [{ offset: 0, data: 'abcd', eof: false }, { offset: 4, data: 'efgh', eof: false }, { offset: 8, data: 'ijkl', eof: false }]);
    assert.equal(s.start, 0, 'nothing released: nothing acknowledged');
    assert.equal(src.isPaused(), true, 'the window is full');
    // A client that died with all of it in its buffers resumes from where it had acknowledged (0).
    assert.equal(s.acknowledge('r', 9), 9);
    assert.equal(src.isPaused(), false);
    src.end();
    await tick();
    assert.deepEqual(await take(gen, 2), [{ offset: 12, data: '', eof: true }]);
    assert.equal(s.reader('r').reachedEnd, false);
    assert.equal(s.acknowledge('r', 12), 12);
    assert.equal(s.reader('r').reachedEnd, true, 'acknowledging the final offset of an ended stream is reaching the end');
    assert.throws(() => s.acknowledge('r', 13), isKind('out-of-range', /past the end/));
    assert.equal(s.acknowledge('r', 3), 12, 'an acknowledgement behind the place changes nothing');
  });

  it('ends without an eof chunk when its signal aborts, and refuses an offset already released', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    const ac = new AbortController();
    const gen = s.follow('r', 0, 4, { hold: 'acknowledged', signal: ac.signal });
    const waiting = gen.next();
    await tick();
    assert.equal(s.waiting, 1);
    ac.abort();
    assert.deepEqual(await waiting, { value: undefined, done: true });
    assert.equal(s.waiting, 0);
    src.write('abcdef');
    await tick();
    s.acknowledge('r', 4);
    await assert.rejects(s.follow('r', 2, 4, { hold: 2 }).next(), isKind('out-of-range', /read from 4/));
  });

  it("gathers a writer's small reads into one chunk up to max, and coalesces nothing beyond max", async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1 << 20);
    const gen = s.follow('r', 0, 1000, { hold: 0 });
    const first = gen.next();
    // Ten writes in a row, each its own 'data' event: the chunk after the first wake carries them all.
    for (let i = 0; i < 10; i++) src.write('x'.repeat(50));
    const r = await first;
    assert.equal(r.value!.data.length, 500);
    for (let i = 0; i < 30; i++) src.write('y'.repeat(50));
    await tick();
    assert.equal((await gen.next()).value!.data.length, 1000);
  });
});

describe('OutputStream finishReaders', () => {
  it('moves the readers it is asked about to the end of an ended stream and leaves the others; with no reader, the stream is nobody\'s', async () => {
    const src = new PassThrough();
    const s = new OutputStream(src, 1024);
    s.reader('v1');
    s.reader('v2.a');
    assert.equal(s.finishReaders((n) => n.startsWith('v2.')), false, 'not ended: nothing moved');
    src.end('abcd');
    await tick();
    assert.equal(s.finishReaders((n) => n.startsWith('v2.')), true);
    assert.ok(s.reader('v2.a').reachedEnd);
    assert.equal(s.drained, false, 'v1 still reads');
    assert.equal(s.start, 0);
    const unread = new PassThrough();
    const u = new OutputStream(unread, 1024);
    unread.end('never read');
    await tick();
    assert.equal(u.drained, false, 'ended with bytes nobody read');
    u.finishReaders(() => true);
    assert.equal(u.drained, true);
  });
});
