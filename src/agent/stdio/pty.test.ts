import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AgentError } from '../errors';
import { Pty } from './pty';

const closedTerminal = (err: unknown) => {
  assert.ok(err instanceof AgentError, `not an AgentError: ${String(err)}`);
  assert.equal(err.kind, 'failed-precondition');
  assert.match(err.message, /terminal is closed/);
  return true;
};

describe('Pty', () => {
  it('refuses write and resize once closed', async () => {
    const pty = new Pty();
    pty.close();
    await assert.rejects(pty.write(Buffer.from('x')), closedTerminal);
    assert.throws(() => pty.resize(100, 40), closedTerminal);
  });

  it('a write waiting for room stops when the pty closes, and never writes to a reused fd', async (t) => {
    const pty = new Pty();
    // Nobody reads the slave: the terminal's input queue fills and the write waits on EAGAIN.
    const writing = pty.write(Buffer.alloc(1024 * 1024, 'a'));
    let settled = false;
    void writing.then(() => (settled = true), () => (settled = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(settled, false, 'the write is waiting for room');
    const fdNumber = pty.masterFd;
    const closedFd = new Promise((r) => pty.output.once('close', r));
    pty.close();
    await closedFd;
    // The fd number is free again: whatever opens next is likely to get it.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pty-test-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'other');
    const other = fs.openSync(file, 'w');
    try {
      await assert.rejects(writing, closedTerminal);
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(fs.statSync(file).size, 0, `nothing written to fd ${other} (the pty's was ${fdNumber})`);
    } finally {
      fs.closeSync(other);
    }
  });
});
