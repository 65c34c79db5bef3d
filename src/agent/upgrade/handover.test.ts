// Run: node --import tsx --test src/agent/upgrade/handover.test.ts
// A real exec in place: a child process prepares a handover and execs a new
// Node image (the addon's execve, same pid), which adopts the record.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const REPO = path.resolve(__dirname, '..', '..', '..');
const HANDOVER_TS = path.join(REPO, 'src/agent/upgrade/handover.ts');
const NATIVE_TS = path.join(REPO, 'src/native/native.ts');

test('named fds cross the exec and are adopted; a number now naming another file is refused; unnamed survivors are closed', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'handover-'));
  const sock = path.join(dir, 'l.sock');
  const out = path.join(dir, 'out.json');
  const newImage = `
    const fs = require('node:fs');
    const net = require('node:net');
    const { adoptHandover } = require(${JSON.stringify(HANDOVER_TS)});
    const { native } = require(${JSON.stringify(NATIVE_TS)});
    const record = JSON.parse(process.env.HANDOVER);
    const adopted = adoptHandover(record);
    // Looked at at once: the numbers closed are free for this image's next fds.
    const leakedOpen = record.unnamed.some((fd) => fs.existsSync('/proc/self/fd/' + fd));
    const listener = adopted.fds.get('listener');
    const cloexec = listener === undefined ? null : native.getCloexec(listener);
    // The listening socket still accepts: a client connects and is accepted on the adopted fd.
    const server = net.createServer((c) => { c.end('from the new image'); server.close(); });
    server.listen({ fd: listener }, () => {
      const c = net.connect(${JSON.stringify(sock)});
      let got = '';
      c.on('data', (b) => (got += b)).on('end', () => {
        fs.writeFileSync(${JSON.stringify(out)}, JSON.stringify({ pid: process.pid, adopted: [...adopted.fds.keys()], refused: adopted.refused, closed: adopted.closed, cloexec, got,
          leakedOpen }));
      });
    });`;
  const oldImage = `
    const fs = require('node:fs');
    const { prepareHandover } = require(${JSON.stringify(HANDOVER_TS)});
    const { native } = require(${JSON.stringify(NATIVE_TS)});
    const listener = native.unixListen(${JSON.stringify(sock)}, 16);
    const log = fs.openSync(${JSON.stringify(path.join(dir, 'log'))}, 'w');
    const swapped = fs.openSync(${JSON.stringify(path.join(dir, 'a'))}, 'w');
    // A library's fd opened without close-on-exec: it crosses unnamed.
    const leaked = fs.openSync('/dev/null', 'r');
    native.clearCloexec(leaked);
    const record = prepareHandover([{ name: 'listener', fd: listener }, { name: 'log', fd: log }, { name: 'swapped', fd: swapped }]);
    // After the record was made, 'swapped' is closed and its number reused for another file.
    fs.closeSync(swapped);
    const other = fs.openSync(${JSON.stringify(path.join(dir, 'b'))}, 'w');
    if (other !== swapped) throw new Error('fd number not reused: ' + other + ' vs ' + swapped);
    native.clearCloexec(other);
    fs.writeFileSync(${JSON.stringify(path.join(dir, 'before.json'))}, JSON.stringify({ pid: process.pid, record, leaked }));
    native.execve(process.execPath, [process.execPath, '--import', 'tsx', '-e', ${JSON.stringify(newImage)}], [...Object.entries(process.env).map(([k, v]) => k + '=' + v), 'HANDOVER=' + JSON.stringify(record)]);`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', oldImage], { cwd: REPO, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
  const before = JSON.parse(fs.readFileSync(path.join(dir, 'before.json'), 'utf8'));
  const after = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.equal(after.pid, before.pid, 'the same process');
  assert.deepEqual(before.record.fds.map((f: { name: string; kind: string }) => [f.name, f.kind]), [['listener', 'socket'], ['log', 'file'], ['swapped', 'file']]);
  assert.ok(before.record.unnamed.includes(before.leaked), `the leaked fd ${before.leaked} is an unnamed survivor: ${before.record.unnamed}`);
  assert.deepEqual(after.adopted, ['listener', 'log']);
  assert.equal(after.refused.length, 1);
  assert.equal(after.refused[0].name, 'swapped');
  assert.match(after.refused[0].why, /not the file handed over/);
  assert.deepEqual(after.closed, before.record.unnamed, 'the unnamed survivors were closed');
  assert.equal(after.leakedOpen, false);
  assert.equal(after.cloexec, true, 'an adopted fd is close-on-exec again');
  assert.equal(after.got, 'from the new image');
  fs.rmSync(dir, { recursive: true, force: true });
});
