// ProcessIO with real processes on its pipes or its pty (spawned here
// directly, with the stdio ProcessIO hands out, as the runtime is).
// Run: node --import tsx --test src/agent/process/process-io.test.ts
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { AgentError } from '../errors';
import { ProcessIO } from './process-io';
import { isKind } from '../errors.testing';

function tmpFile(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'process-io-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'stdin');
}

/** Runs `script` (with $1 = `file`) on the stdio of `io`. */
function run(t: TestContext, io: ProcessIO, script: string, file: string): { child: ChildProcess; exit: Promise<number | null> } {
  const child = spawn('sh', ['-c', script, 'sh', file], { stdio: io.spawnStdio() });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  io.attach(child);
  t.after(() => {
    child.kill('SIGKILL');
    io.close();
  });
  return { child, exit };
}

/** Reads `stream` with reader "test" until `text` appeared. */
async function waitForOutput(io: ProcessIO, text: string): Promise<void> {
  let seen = '';
  while (!seen.includes(text)) {
    const c = await io.stdout.readAs('test', 'next', 1024, { signal: AbortSignal.timeout(5000) });
    seen += c.data.toString();
    if (c.eof && !seen.includes(text)) throw new Error(`output ended before ${JSON.stringify(text)}: ${JSON.stringify(seen)}`);
  }
}

describe('ProcessIO stdin with offsets (pipes)', () => {
  it('writes each byte once: retried, overlapping and v1 writes; a gap is out of range naming what was written', async (t) => {
    const file = tmpFile(t);
    const io = ProcessIO.pipes(64 * 1024);
    const { exit } = run(t, io, 'cat > "$1"', file);
    assert.equal(io.written, 0);
    assert.equal(await io.writeStdinAt(0, Buffer.from('hello')), 5);
    assert.equal(await io.writeStdinAt(0, Buffer.from('hello')), 5, 'a retried write succeeds');
    assert.equal(io.written, 5, '... and is not applied twice');
    assert.equal(await io.writeStdinAt(3, Buffer.from('lo world')), 11, 'only the unwritten tail " world" is written');
    assert.equal(await io.writeStdinAt(6, Buffer.from('wor')), 9, 'inside what was written: nothing to do');
    await assert.rejects(io.writeStdinAt(20, Buffer.from('x')), (err: unknown) => {
      isKind('out-of-range', /^stdin offset 20 is past the input written so far \(11 bytes\); write from 11$/)(err);
      assert.deepEqual((err as AgentError).metadata, { written: '11' });
      return true;
    });
    await assert.rejects(io.writeStdinAt(-1, Buffer.from('x')), isKind('invalid-argument'));
    await assert.rejects(io.writeStdinAt(0.5, Buffer.from('x')), isKind('invalid-argument'));
    assert.equal(await io.writeStdin(Buffer.from('!')), 1, "v1's write goes at the end");
    // Concurrent: two fresh writes and a retry of both, each byte once, in order.
    const results = await Promise.all([
      io.writeStdinAt(12, Buffer.from('A')),
      io.writeStdinAt(13, Buffer.from('B')),
      io.writeStdinAt(12, Buffer.from('AB')),
      io.writeStdin(Buffer.from('C')),
    ]);
    assert.deepEqual(results, [13, 14, 14, 1]);
    assert.deepEqual(io.snapshot().stdin, { written: 15 });
    io.closeStdin();
    assert.equal(await exit, 0);
    assert.equal(fs.readFileSync(file, 'utf8'), 'hello world!ABC');
    // After CloseStdin a retry of bytes already applied still succeeds; new bytes do not.
    assert.equal(await io.writeStdinAt(0, Buffer.from('hello')), 5);
    await assert.rejects(io.writeStdinAt(15, Buffer.from('late')), isKind('failed-precondition', /stdin is closed/));
    await assert.rejects(io.writeStdin(Buffer.from('late')), isKind('failed-precondition', /stdin is closed/));
    assert.equal(io.written, 15, 'a refused write is not counted');
  });

  it('CloseStdin comes after the writes accepted before it', async (t) => {
    const file = tmpFile(t);
    const io = ProcessIO.pipes(64 * 1024);
    const { exit } = run(t, io, 'cat > "$1"', file);
    const big = Buffer.alloc(4 * 1024 * 1024, 'x');
    const writing = io.writeStdinAt(0, big);
    const second = io.writeStdinAt(big.length, Buffer.from('end'));
    io.closeStdin();
    assert.equal(await writing, big.length);
    assert.equal(await second, big.length + 3);
    assert.equal(await exit, 0);
    assert.equal(fs.statSync(file).size, big.length + 3);
  });

  it('stdin never written holds only its fd: closing it is the end of input, and the process is found by its stdio', async (t) => {
    const file = tmpFile(t);
    const io = ProcessIO.pipes(64 * 1024);
    const { child, exit } = run(t, io, 'cat > "$1"; echo done', file);
    const fd = io.descriptors().stdin;
    assert.ok(fd !== null && fs.fstatSync(fd).isSocket(), 'the agent holds its end of the stdin pipe');
    assert.equal((io as unknown as { stdin: unknown }).stdin, null, 'no stream is made for input nobody wrote');
    // The shell holds all three; cat, its stdout on the file, only stdin and stderr: found by stdin's end too.
    await new Promise((r) => setTimeout(r, 50));
    const holders = io.holders();
    assert.ok(holders.includes(child.pid!) && holders.length === 2, `the shell and its cat: ${holders}`);
    io.closeStdin();
    assert.equal(await exit, 0, 'cat read the end of input and exited');
    await waitForOutput(io, 'done');
    assert.equal(fs.readFileSync(file, 'utf8'), '');
    assert.throws(() => fs.fstatSync(fd), /EBADF/, 'the agent end is closed');
    await assert.rejects(io.writeStdinAt(0, Buffer.from('late')), isKind('failed-precondition', /stdin is closed/));
  });

  it('a write that failed is not reported as applied when retried', async (t) => {
    const io = ProcessIO.pipes(64 * 1024);
    const { exit } = run(t, io, 'exec 0<&-; sleep 0.05', tmpFile(t));
    await exit;
    const data = Buffer.alloc(1024 * 1024, 'x');
    await assert.rejects(io.writeStdinAt(0, data), isKind('failed-precondition', /stdin/));
    await assert.rejects(io.writeStdinAt(0, data), isKind('failed-precondition', /stdin/), 'the retry fails too');
    await assert.rejects(io.writeStdin(Buffer.from('x')), isKind('failed-precondition', /stdin/));
  });

  it('reports the snapshot of every stream', async (t) => {
    const io = ProcessIO.pipes(64 * 1024);
    const { exit } = run(t, io, 'printf abc; printf de >&2', tmpFile(t));
    assert.equal(await exit, 0);
    while (!io.stdout.ended || !io.stderr.ended) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(io.snapshot(), {
      stdout: { start: 0, end: 3, ended: true },
      stderr: { start: 0, end: 2, ended: true },
      stdin: { written: 0 },
    });
  });
});

describe('ProcessIO stdin with offsets (pty)', () => {
  it('writes each byte once and in order, also when concurrent writes wait for room in the terminal', async (t) => {
    const file = tmpFile(t);
    const io = ProcessIO.terminal(64 * 1024);
    const total = 300_000;
    const { exit } = run(t, io, `stty raw -echo && echo ready && head -c ${total} > "$1"`, file);
    await waitForOutput(io, 'ready');
    const a = Buffer.alloc(100_000, 'a');
    const b = Buffer.alloc(100_000, 'b');
    const c = Buffer.alloc(100_000, 'c');
    // Much more than the terminal's input queue: each write waits for room, and the next must not slip in between.
    const results = await Promise.all([
      io.writeStdinAt(0, a),
      io.writeStdinAt(100_000, b),
      io.writeStdinAt(50_000, Buffer.concat([a.subarray(50_000), b])), // a retry: nothing new
      io.writeStdinAt(150_000, Buffer.concat([b.subarray(50_000), c])), // overlapping: only c is new
    ]);
    assert.deepEqual(results, [100_000, 200_000, 200_000, 300_000]);
    await assert.rejects(io.writeStdinAt(300_001, Buffer.from('x')), isKind('out-of-range', /write from 300000/));
    assert.equal(await exit, 0);
    assert.ok(fs.readFileSync(file).equals(Buffer.concat([a, b, c])), 'the bytes arrived once each, in order');
  });
});
