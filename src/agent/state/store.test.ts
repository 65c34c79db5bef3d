// Run: node --import tsx --test src/agent/state/store.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { StateError } from './codec';
import { emptyState } from './document';
import { STATE_FILE, StateStore } from './store';

const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'state-store-'));

describe('StateStore', () => {
  it('reads null when there is no state, and what was written after a flush', async () => {
    const store = new StateStore(path.join(tmpDir(), 'state'));
    assert.equal(store.read(), null);
    store.save(() => ({ ...emptyState('t'), lastEventSeq: 3 }));
    await store.flush();
    assert.equal(store.read()!.state.lastEventSeq, 3);
    assert.equal((fs.statSync(store.file).mode & 0o777).toString(8), '600');
  });

  it('folds a burst of saves into few writes, each taking the latest state', async () => {
    const store = new StateStore(tmpDir());
    let seq = 0;
    for (let i = 0; i < 100; i++) {
      seq++;
      store.save(() => ({ ...emptyState('t'), lastEventSeq: seq }));
    }
    await store.flush();
    assert.ok(store.writes <= 2, `${store.writes} writes`);
    assert.equal(store.read()!.state.lastEventSeq, 100);
  });

  it('replaces the file by rename: a reader never sees a torn document, and no temporary file is left', async () => {
    const dir = tmpDir();
    const store = new StateStore(dir);
    const big = { ...emptyState('t'), requests: Array.from({ length: 2000 }, (_, i) => ({ requestId: `r${i}`, digest: 'd'.repeat(64), result: { i }, at: i })) };
    store.writeNow(big);
    const inode = fs.statSync(store.file).ino;
    store.writeNow({ ...big, lastEventSeq: 9 });
    assert.notEqual(fs.statSync(store.file).ino, inode, 'a new file, renamed over the old');
    assert.deepEqual(fs.readdirSync(dir), [STATE_FILE]);
  });

  it('a broken file is a StateError naming the file, and is left as it is', () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, STATE_FILE), '{"format": 1, "containers": [');
    assert.throws(() => new StateStore(dir).read(), (err: unknown) => err instanceof StateError && err.message.includes(path.join(dir, STATE_FILE)));
    assert.equal(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8'), '{"format": 1, "containers": [');
  });
});
