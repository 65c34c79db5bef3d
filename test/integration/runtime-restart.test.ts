// A runtime restart without loss (docs/compatibility.md, "Runtime restart
// without loss"): a real client process (test/integration/restart-client.ts,
// the v2 typed API) starts a process writing about 10 MB of deterministic
// output (seq) and reads it, saving its resume record after every chunk; the
// test SIGKILLs that process mid-stream, the stream open. Twice:
// - the writer pauses after 3 MB (until a gate file appears) and the client
//   has taken everything sent when it dies; the rest (7 MB) is written while no
//   client is connected, up to the agent's window, the writer then held back;
// - the writer does not pause: the client stops taking chunks after 3 MB
//   while the agent goes on sending, and dies with output in flight (sent by
//   the agent, buffered on the client's side, never handed to the runtime).
// While no client is connected two more processes end (one with exit 3, one
// by SIGKILL). A new client process resumes from the saved record:
// it finds the container by listing, reads on from the record's offset and
// gets every byte exactly once (sha256 against the same seq output made here),
// and gets the exit statuses, and the exit events from the record's event
// cursor, of the processes that ended while nobody was connected.
// (Retries of CreateContainer, ExecProcess and WriteInput with the same request
// id are tested in v2.test.ts.)
// Needs root, crun, busybox-static, unshare and `npm run build`.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { REPO, startAgent, type TestAgent } from '../helpers/agent-process';
import { SEQ_TO, type StartOptions } from './restart-client';

const CLIENT = path.join(REPO, 'test/integration/restart-client.ts');
/** gen's first part in the gated case: printed before the gate opens. */
const PAUSE_AT = 420_000;

/** What `seq 1 N` prints. */
function seqOutput(n: number): Buffer {
  const parts: string[] = [];
  for (let i = 1; i <= n; i++) parts.push(`${i}\n`);
  return Buffer.from(parts.join(''));
}

interface ClientProcess {
  child: ChildProcess;
  lines: Array<Record<string, any>>;
  stderr: () => string;
  /** The first line `pred` accepts (or a failure when the client exits first or `ms` pass). */
  waitFor(pred: (l: Record<string, any>) => boolean, ms: number): Promise<Record<string, any>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runClient(args: string[]): ClientProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Array<Record<string, any>> = [];
  let stderr = '';
  let partial = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (b: Buffer) => {
    const parts = (partial + b.toString()).split('\n');
    partial = parts.pop()!;
    for (const p of parts) if (p.trim()) lines.push(JSON.parse(p) as Record<string, any>);
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-20000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let done = false;
  void exited.then(() => {
    done = true;
    for (const w of waiters.splice(0)) w();
  });
  return {
    child,
    lines,
    stderr: () => stderr,
    exited,
    async waitFor(pred, ms) {
      const deadline = Date.now() + ms;
      for (;;) {
        const hit = lines.find(pred);
        if (hit) return hit;
        const error = lines.find((l) => l.error);
        if (error) throw new Error(`client ${child.pid} failed: ${error.error}\nstderr:\n${stderr}`);
        if (done) throw new Error(`client ${child.pid} exited first; lines:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr}`);
        if (Date.now() > deadline) throw new Error(`client ${child.pid}: nothing matching within ${ms} ms; lines:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr}`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, 200);
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
    },
  };
}

/** Pids whose command line contains `marker` (the gate processes, found by their gate file's name). */
function pidsWith(marker: string): number[] {
  return fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)).flatMap((n) => {
    try {
      return fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').includes(marker) ? [Number(n)] : [];
    } catch {
      return [];
    }
  });
}

let agent: TestAgent;
const started: ChildProcess[] = [];

before(async () => {
  agent = await startAgent();
});

after(async () => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await agent?.stop();
});

async function restartScenario(name: string, gated: boolean, chunkBytes: number): Promise<void> {
  const work = path.join(agent.dir, `runtime-${name}`);
  fs.mkdirSync(work);
  const container = `restart-${name}`;
  const tag = `${name}-${process.pid}`;
  const [gateA, gateB, genGate] = [`gate-a-${tag}`, `gate-b-${tag}`, `gate-gen-${tag}`];
  const expected = seqOutput(SEQ_TO);
  const firstPart = seqOutput(PAUSE_AT).length;
  assert.ok(expected.length > 10_000_000, `seq 1 ${SEQ_TO} is ${expected.length} bytes`);
  const stallAfter = gated ? firstPart : 3 * 1024 * 1024;

  // 1. The first runtime process: reads, saves its record after every chunk, stalls with the stream open.
  const options: StartOptions = { addr: agent.addr, dir: work, container, gateA, gateB, stallAfter, chunkBytes, ...(gated ? { genGate, pauseAt: PAUSE_AT } : {}) };
  const first = runClient(['start', JSON.stringify(options)]);
  started.push(first.child);
  const stalled = await first.waitFor((l) => l.stalled === true, 60_000);
  assert.ok(stalled.appended >= stallAfter && stalled.appended < expected.length, JSON.stringify(stalled));
  if (gated) assert.equal(stalled.appended, firstPart, 'the client took everything the writer printed before its pause');
  assert.equal(stalled.record_offset, stalled.chunk_offset, 'the record names the offset of the chunk being handled');
  assert.ok(stalled.event_cursor > 0, 'the first client took events before it died');

  // 2. SIGKILL, as a runtime dies: no clean-up, the stream open.
  const killedAt = Date.now();
  first.child.kill('SIGKILL');
  assert.deepEqual(await first.exited, { code: null, signal: 'SIGKILL' });
  const record = JSON.parse(fs.readFileSync(path.join(work, 'record.json'), 'utf8'));
  assert.equal(record.format, 1);
  assert.equal(record.agent.protocol, 'v2');
  assert.equal(record.event_cursor, stalled.event_cursor);

  // 3. With nobody connected, two processes end and the writer goes on: the gates open (files in the container's root).
  assert.ok(pidsWith(gateA).length > 0 && pidsWith(gateB).length > 0, 'the gate processes are running');
  for (const g of [gateA, gateB, genGate]) fs.writeFileSync(path.join(agent.sharedDir, 'busybox', g), '');
  for (const deadline = Date.now() + 10_000; pidsWith(gateA).length + pidsWith(gateB).length > 0;) {
    assert.ok(Date.now() < deadline, 'the gate processes did not end');
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 300));

  // 4. A new runtime process resumes from the record.
  const second = runClient(['resume', work, container]);
  started.push(second.child);
  const summary = await second.waitFor((l) => l.resumed === true, 120_000);
  assert.deepEqual(await second.exited, { code: 0, signal: null }, second.stderr());
  assert.notEqual(second.child.pid, first.child.pid);
  assert.equal(summary.protocol, 'v2');

  // Listing found the container and its processes, the gates already ended.
  assert.ok(summary.listed, 'ListContainers did not list the container');
  const listed = Object.fromEntries((summary.listed.execs as Array<{ exec_id: string; exit: any }>).map((e) => [e.exec_id, e.exit]));
  assert.deepEqual(Object.keys(listed).sort(), ['gate-a', 'gate-b', 'gen']);
  assert.equal(listed['gate-a']?.code, 3);
  assert.equal(listed['gate-b']?.signal, 9);

  // Every byte exactly once: the resumed stream starts at the record's offset, and the whole is seq's output.
  assert.equal(summary.first_offset, summary.record_offset, 'the resumed stream starts at the offset the record saved');
  assert.ok(summary.out_bin_before_cut >= summary.record_offset);
  const out = fs.readFileSync(path.join(work, 'out.bin'));
  assert.equal(out.length, expected.length);
  assert.equal(summary.end_offset, expected.length);
  assert.equal(createHash('sha256').update(out).digest('hex'), createHash('sha256').update(expected).digest('hex'));

  // Exit statuses kept for a client that was not there.
  const s = summary.statuses as Record<string, { code: number | null; signal: number | null; exitedAtMs: number | null; source: string }>;
  assert.deepEqual([s['gate-a']!.code, s['gate-a']!.signal, s['gate-a']!.source], [3, null, 'v2']);
  assert.deepEqual([s['gate-b']!.code, s['gate-b']!.signal], [null, 9]);
  assert.deepEqual([s.gen!.code, s.gen!.signal], [0, null]);
  for (const g of ['gate-a', 'gate-b']) {
    assert.ok(s[g]!.exitedAtMs! >= killedAt && s[g]!.exitedAtMs! <= summary.started_at_ms, `${g} ended while no client was connected`);
  }

  // Events from the record's cursor: everything after it, the exits of the gates among them, with their statuses.
  const events = summary.events as Array<{ seq: number; atMs: number; type: string; containerId?: string; execId?: string; status?: any }>;
  assert.equal(summary.record_cursor, record.event_cursor);
  assert.ok(events.length > 0 && events[0]!.seq === (record.event_cursor as number) + 1, `events resume right after the cursor ${record.event_cursor}: ${JSON.stringify(events.slice(0, 3))}`);
  for (let i = 1; i < events.length; i++) assert.equal(events[i]!.seq, events[i - 1]!.seq + 1, 'no event missing');
  const exit = (execId: string) => events.find((e) => e.type === 'process_exited' && e.containerId === container && e.execId === execId);
  assert.equal(exit('gate-a')?.status?.code, 3);
  assert.equal(exit('gate-b')?.status?.signal, 9);
  assert.equal(exit('gen')?.status?.code, 0);
  for (const g of ['gate-a', 'gate-b']) assert.ok(exit(g)!.atMs >= killedAt && exit(g)!.atMs <= summary.started_at_ms, `${g}'s exit event is from while no client was connected`);
  assert.ok(agent.alive());
}

it('killed with nothing in flight (the writer paused): the new process reads on, every byte once, and gets what ended meanwhile', async () => {
  await restartScenario('paused', true, 64 * 1024);
});

// The client reads with acknowledged_only (feature:output-acknowledgement):
// the agent releases only what the client acknowledged having taken, so the
// megabytes sitting in the dead client's grpc-js and HTTP/2 buffers are still
// held. (With 0.2.0, which kept a reader only 256 KiB behind what it sent,
// this resume was OUT_OF_RANGE.)
it('killed with output in flight (the client stopped taking chunks): the new process reads on, every byte once', async () => {
  await restartScenario('in-flight', false, 64 * 1024);
});
