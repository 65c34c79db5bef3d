import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { OutputBuffer } from './output-buffer';

describe('OutputBuffer', () => {
  it('blocks a reader until data arrives, then returns at most the asked length', async () => {
    const src = new PassThrough();
    const buf = new OutputBuffer(src, 1024);
    const pending = buf.read(3);
    src.write('hello');
    assert.equal((await pending).toString(), 'hel');
    assert.equal((await buf.read(100)).toString(), 'lo');
    assert.equal(buf.offset, 5);
  });

  it('pauses the source at the limit and resumes it when read, losing nothing', async () => {
    const src = new PassThrough();
    const buf = new OutputBuffer(src, 10);
    for (let i = 0; i < 5; i++) src.write('abcd');
    await new Promise((r) => setImmediate(r));
    assert.ok(src.isPaused(), 'source paused once 10 bytes wait');
    assert.ok(buf.buffered <= 12);
    let text = '';
    src.end();
    for (;;) {
      const chunk = await buf.read(7);
      if (chunk.length === 0) break;
      text += chunk.toString();
    }
    assert.equal(text, 'abcd'.repeat(5));
  });

  it('reports end of stream as an empty read, and drained only once EOF was delivered', async () => {
    const src = new PassThrough();
    const buf = new OutputBuffer(src, 1024);
    src.end('x');
    await new Promise((r) => setImmediate(r));
    assert.equal(buf.drained, false);
    assert.equal((await buf.read(10)).toString(), 'x');
    assert.equal(buf.drained, false, 'the reader has not seen the end yet');
    assert.equal((await buf.read(10)).length, 0);
    assert.equal(buf.drained, true);
  });

  it('counts a stream nobody reads as drained once it ends empty', async () => {
    const src = new PassThrough();
    const buf = new OutputBuffer(src, 1024);
    src.end();
    await new Promise((r) => setImmediate(r));
    assert.equal(buf.drained, true);
  });

  it('treats a source error (EIO from a pty master) as end of stream', async () => {
    const src = new PassThrough();
    const buf = new OutputBuffer(src, 1024);
    const pending = buf.read(10);
    src.destroy(Object.assign(new Error('read EIO'), { code: 'EIO' }));
    assert.equal((await pending).length, 0);
  });

  it('gives up waiting when the call is cancelled', async () => {
    const buf = new OutputBuffer(new PassThrough(), 1024);
    const ac = new AbortController();
    const pending = buf.read(10, ac.signal);
    ac.abort();
    assert.equal((await pending).length, 0);
    assert.equal(buf.drained, false);
  });
});

describe('OutputBuffer waiters', () => {
  it('forgets the waiter of every aborted read (polling a silent process stays bounded)', async () => {
    const src = new PassThrough();
    const buf = new OutputBuffer(src, 1024);
    for (let i = 0; i < 1000; i++) {
      const ac = new AbortController();
      const pending = buf.read(10, ac.signal);
      ac.abort();
      assert.equal((await pending).length, 0);
    }
    assert.equal(buf.waiting, 0);
    // A reader still waiting is woken by data as before.
    const live = buf.read(10);
    assert.equal(buf.waiting, 1);
    src.write('late');
    assert.equal((await live).toString(), 'late');
    assert.equal(buf.waiting, 0);
  });
});
