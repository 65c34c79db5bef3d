// Run: node --import tsx --test src/agent/memory-trim.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { silentLogger } from './log';
import { startMemoryTrim } from './memory-trim';
import { native } from '../native/native';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('memory trim', () => {
  it('trims on its timer until stopped', async () => {
    let calls = 0;
    const stop = startMemoryTrim(silentLogger, 10, () => (calls++, true));
    await sleep(60);
    stop();
    const seen = calls;
    assert.ok(seen >= 2, `trimmed ${seen} times in 60 ms at 10 ms`);
    await sleep(40);
    assert.equal(calls, seen, 'no trim after stop');
  });

  it('stops for good when the trim itself fails, without throwing', async () => {
    let calls = 0;
    const stop = startMemoryTrim(silentLogger, 10, () => {
      calls++;
      throw new Error('no addon');
    });
    await sleep(60);
    stop();
    assert.equal(calls, 1);
  });

  it('the addon gives back to the kernel what a burst of allocations freed below the top of the heap', async () => {
    const anonKb = () => Number(/^RssAnon:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // 80 MB of 4 KB backing stores, malloc's (under its mmap threshold), then one allocation above them that stays:
    // free() alone can only give back the top of the heap, so once they are collected their pages stay resident.
    let burst: Buffer[] | null = Array.from({ length: 20_000 }, () => Buffer.allocUnsafeSlow(4096).fill(1));
    const pin = Buffer.allocUnsafeSlow(4096).fill(2);
    burst = null;
    gc();
    await sleep(200); // V8 frees backing stores on a background thread
    const before = anonKb();
    assert.equal(native.trimMemory(), true);
    const after = anonKb();
    assert.ok(before - after > 40_000, `RssAnon ${before} kB -> ${after} kB`);
    assert.equal(pin[0], 2);
    void burst;
  });
});
