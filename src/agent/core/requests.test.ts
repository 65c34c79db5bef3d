import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isKind } from '../errors.testing';
import { RequestLedger } from './requests';

describe('RequestLedger', () => {
  it('a retry with the same id and arguments returns the first result and acts once', async () => {
    const ledger = new RequestLedger();
    let acted = 0;
    const act = async () => ({ n: ++acted });
    const first = await ledger.once('r1', 'CreateContainer', { id: 'c1', spec: { a: 1, b: [1, 2] } }, act);
    const retry = await ledger.once('r1', 'CreateContainer', { spec: { b: [1, 2], a: 1 }, id: 'c1' }, act);
    assert.deepEqual(first, { n: 1 });
    assert.equal(retry, first, 'the very same result');
    assert.equal(acted, 1);
  });

  it('a retry while the first call still runs waits for it instead of acting again', async () => {
    const ledger = new RequestLedger();
    let acted = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const act = async () => {
      acted++;
      await gate;
      return 'done';
    };
    const a = ledger.once('r', 'ExecProcess', { x: 1 }, act);
    const b = ledger.once('r', 'ExecProcess', { x: 1 }, act);
    release();
    assert.deepEqual(await Promise.all([a, b]), ['done', 'done']);
    assert.equal(acted, 1);
  });

  it('the same id with other arguments (or another call) is refused, naming the id', async () => {
    const ledger = new RequestLedger();
    await ledger.once('r2', 'WriteInput', { data: Buffer.from('a') }, async () => 1);
    await assert.rejects(ledger.once('r2', 'WriteInput', { data: Buffer.from('b') }, async () => 2), isKind('already-exists', /request id "r2" was already used for a different request/));
    await assert.rejects(ledger.once('r2', 'CloseInput', { data: Buffer.from('a') }, async () => 2), isKind('already-exists'));
  });

  it('a failed first call is forgotten, so a retry acts again', async () => {
    const ledger = new RequestLedger();
    let n = 0;
    await assert.rejects(ledger.once('r3', 'X', {}, async () => {
      n++;
      throw new Error('transient');
    }));
    assert.equal(await ledger.once('r3', 'X', {}, async () => ++n), 2);
  });

  it('no request id: no idempotency; a bad id is refused; memory is bounded by count and age', async () => {
    const ledger = new RequestLedger({ capacity: 3, ttlMs: 1000, now: () => clock });
    let clock = 0;
    let n = 0;
    await ledger.once('', 'X', {}, async () => ++n);
    await ledger.once('', 'X', {}, async () => ++n);
    assert.equal(n, 2);
    await assert.rejects(ledger.once('has space', 'X', {}, async () => 0), isKind('invalid-argument'));
    await assert.rejects(ledger.once('x'.repeat(129), 'X', {}, async () => 0), isKind('invalid-argument'));
    for (const id of ['a', 'b', 'c', 'd']) await ledger.once(id, 'X', {}, async () => id);
    assert.equal(ledger.size, 3, 'the oldest went');
    assert.equal(await ledger.once('a', 'X', {}, async () => 'again'), 'again', 'a forgotten id acts again');
    clock = 5000;
    await ledger.once('e', 'X', {}, async () => 'e');
    assert.equal(ledger.size, 1, 'entries older than the ttl are gone');
  });
});
