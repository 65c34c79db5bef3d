import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AgentError } from '../errors';
import { EventQueue } from './event-queue';

const cancelled = (err: unknown) => {
  assert.ok(err instanceof AgentError, `not an AgentError: ${String(err)}`);
  assert.equal(err.kind, 'failed-precondition');
  assert.match(err.message, /cancelled/);
  return true;
};

describe('EventQueue give-back', () => {
  it('a taker cancelled as its event arrives gives the event back to the queue', async () => {
    const q = new EventQueue<string>(8);
    const ac = new AbortController();
    const taking = q.take(ac.signal);
    q.push('e1');
    // The event was handed over, but the caller goes away before it can pass it on.
    ac.abort();
    await assert.rejects(taking, cancelled);
    assert.equal(q.pending, 1);
    assert.equal(await q.take(), 'e1');
    assert.equal(q.pending, 0);
  });

  it('the given-back event goes to a live waiter', async () => {
    const q = new EventQueue<string>(8);
    const ac = new AbortController();
    const first = q.take(ac.signal);
    const second = q.take();
    q.push('e1');
    ac.abort();
    await assert.rejects(first, cancelled);
    assert.equal(await second, 'e1');
    assert.equal(q.pending, 0);
  });

  it('an older event given back after a newer one was taken is delivered first, none lost', async () => {
    const q = new EventQueue<string>(8);
    const ac = new AbortController();
    const first = q.take(ac.signal);
    const second = q.take();
    q.push('e1'); // to first
    q.push('e2'); // to second
    ac.abort();
    await assert.rejects(first, cancelled);
    assert.equal(await second, 'e2');
    assert.equal(q.pending, 1);
    q.push('e3');
    assert.equal(await q.take(), 'e1');
    assert.equal(await q.take(), 'e3');
  });

  it('a cancelled caller is never handed a kept event', async () => {
    const q = new EventQueue<string>(8);
    q.push('kept');
    await assert.rejects(q.take(AbortSignal.abort()), cancelled);
    assert.equal(q.pending, 1);
    assert.equal(await q.take(), 'kept');
  });
});
