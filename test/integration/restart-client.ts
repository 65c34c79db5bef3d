// The runtime side of test/integration/runtime-restart.test.ts, run as a
// process of its own (node --import tsx), so the test can SIGKILL it as a
// runtime dies: nothing of it survives but the files it wrote.
//
//   restart-client.ts start JSON   (JSON: StartOptions)
//     Creates a container (init sleep), execs "gen" (seq 1 SEQ_TO: MBs of
//     deterministic output; with genGate, it prints up to pauseAt first and
//     the rest once the gate file exists) and two processes waiting for gate
//     files (gateA, then exit 3; gateB, then SIGKILL themselves), watches
//     events, and reads gen's stdout with the v2 typed API into DIR/out.bin,
//     saving the resume record (DIR/record.json, written whole then renamed)
//     after every chunk it has appended. After stallAfter bytes it stops
//     taking chunks, the stream still open, prints {"stalled": ...} and waits
//     to be killed.
//   restart-client.ts resume DIR CONTAINER
//     Resumes from DIR/record.json in a new process: lists the containers,
//     cuts out.bin back to the record's offset (bytes appended after the last
//     save are read again), reads gen's stdout from there to the end, waits
//     for the exit statuses, and watches events from the record's cursor until
//     it has the exits of all three processes. Prints one JSON summary.
// Every line on stdout is one JSON object.
import fs from 'node:fs';
import path from 'node:path';
import { AgentClient, type AgentEvent, type ContainerInfo, type ExitStatus } from '../../src/client/client';
import { containerSpec } from '../helpers/spec';

export const GEN = 'gen';
export const SEQ_TO = 1_400_000;

export interface StartOptions {
  addr: string;
  dir: string;
  container: string;
  gateA: string;
  gateB: string;
  /** A gate file for gen's second part; none: gen prints everything at once. */
  genGate?: string;
  /** With genGate: the last number printed before the gate. */
  pauseAt?: number;
  stallAfter: number;
  /** Largest chunk to ask for. */
  chunkBytes: number;
}
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });
const say = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
const log = (level: string, message: string) => process.stderr.write(`client ${process.pid} ${level}: ${message}\n`);

function saveRecord(dir: string, client: AgentClient, container: string): { offset: number; cursor: number | null } {
  const record = client.saveState();
  const tmp = path.join(dir, `record.json.${process.pid}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify(record));
  fs.renameSync(tmp, path.join(dir, 'record.json'));
  const s = record.streams.find((x) => x.container_id === container && x.exec_id === GEN && x.stream === 'stdout');
  return { offset: s?.offset ?? 0, cursor: record.event_cursor ?? null };
}

async function start(o: StartOptions): Promise<void> {
  const { dir, container: CONTAINER, gateA, gateB, stallAfter } = o;
  const client = await AgentClient.connect(o.addr, { protocols: ['v2'], log: (l, m) => log(l, m) });
  await client.createContainer({ containerId: CONTAINER, ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] }) });
  await client.startContainer({ containerId: CONTAINER });
  // Events from the start: the record carries the cursor of the last one this client took.
  void (async () => {
    for await (const e of client.watchEvents({ afterSeq: 0 })) say({ event: e.type, seq: e.seq, exec: 'execId' in e ? e.execId : undefined });
  })().catch((err: unknown) => log('warn', `watchEvents: ${String(err)}`));
  await client.exec({ containerId: CONTAINER, execId: 'gate-a', process: proc(['sh', '-c', `while [ ! -e /${gateA} ]; do sleep 0.05; done; exit 3`]) });
  await client.exec({ containerId: CONTAINER, execId: 'gate-b', process: proc(['sh', '-c', `while [ ! -e /${gateB} ]; do sleep 0.05; done; kill -KILL $$`]) });
  const gen = o.genGate
    ? ['sh', '-c', `seq 1 ${o.pauseAt}; while [ ! -e /${o.genGate} ]; do sleep 0.05; done; seq ${o.pauseAt! + 1} ${SEQ_TO}`]
    : ['seq', '1', String(SEQ_TO)];
  await client.exec({ containerId: CONTAINER, execId: GEN, process: proc(gen) });
  const out = fs.openSync(path.join(dir, 'out.bin'), 'w');
  let appended = 0;
  let saved = saveRecord(dir, client, CONTAINER);
  for await (const chunk of client.readOutput({ containerId: CONTAINER, execId: GEN, maxChunkBytes: o.chunkBytes })) {
    // The record first counts a chunk when the next is asked for: saved here, it names this chunk's offset.
    fs.writeSync(out, chunk.data);
    appended += chunk.data.length;
    saved = saveRecord(dir, client, CONTAINER);
    if (appended >= stallAfter) {
      say({ stalled: true, appended, record_offset: saved.offset, event_cursor: saved.cursor, chunk_offset: chunk.offset });
      // Stop taking chunks, stream still open: the runtime dies here, with output in flight.
      await new Promise(() => {});
    }
  }
  say({ ended_before_stall: true, appended });
}

async function resume(dir: string, CONTAINER: string): Promise<void> {
  const text = fs.readFileSync(path.join(dir, 'record.json'), 'utf8');
  const record = JSON.parse(text) as { streams: Array<{ container_id: string; exec_id: string; stream: string; offset: number }>; event_cursor: number | null };
  const startedAtMs = Date.now();
  const client = await AgentClient.resume(text, { protocols: ['v2'], log: (l, m) => log(l, m) });
  try {
    const listed: ContainerInfo[] = await client.listContainers();
    const mine = listed.find((c) => c.containerId === CONTAINER);
    const recordOffset = record.streams.find((s) => s.container_id === CONTAINER && s.exec_id === GEN && s.stream === 'stdout')?.offset ?? 0;
    // Bytes appended after the last save are not committed: cut them, they come again.
    const outFile = path.join(dir, 'out.bin');
    const before = fs.statSync(outFile).size;
    fs.truncateSync(outFile, recordOffset);
    const out = fs.openSync(outFile, 'a');
    let first: number | null = null;
    let end = recordOffset;
    let chunks = 0;
    for await (const chunk of client.readOutput({ containerId: CONTAINER, execId: GEN, maxChunkBytes: 1024 * 1024 })) {
      if (first === null) first = chunk.offset;
      if (chunk.offset !== end) throw new Error(`chunk at offset ${chunk.offset}, expected ${end}`);
      fs.writeSync(out, chunk.data);
      end = chunk.offset + chunk.data.length;
      chunks++;
    }
    fs.closeSync(out);
    const statuses: Record<string, ExitStatus> = {};
    for (const execId of ['gate-a', 'gate-b', GEN]) statuses[execId] = await client.wait({ containerId: CONTAINER, execId });
    const events: AgentEvent[] = [];
    const wanted = new Set(['gate-a', 'gate-b', GEN]);
    const deadline = setTimeout(() => {
      say({ error: `events: no exits of ${[...wanted].join(', ')} after cursor ${record.event_cursor}`, events });
      process.exit(1);
    }, 20_000);
    for await (const e of client.watchEvents()) {
      events.push(e);
      if (e.type === 'process_exited' && e.containerId === CONTAINER) wanted.delete(e.execId);
      if (wanted.size === 0) break;
    }
    clearTimeout(deadline);
    for (const execId of ['gate-a', 'gate-b', GEN]) await client.releaseProcess({ containerId: CONTAINER, execId });
    await client.removeContainer({ containerId: CONTAINER });
    say({
      resumed: true,
      started_at_ms: startedAtMs,
      protocol: client.protocol,
      listed: mine ? { state: mine.state, execs: mine.execs.map((p) => ({ exec_id: p.execId, exit: p.exitStatus, stdout: p.stdout })) } : null,
      record_offset: recordOffset,
      record_cursor: record.event_cursor,
      out_bin_before_cut: before,
      first_offset: first,
      end_offset: end,
      chunks,
      statuses,
      events,
    });
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'start' && args.length === 1) await start(JSON.parse(args[0]!) as StartOptions);
  else if (mode === 'resume' && args.length === 2) await resume(args[0]!, args[1]!);
  else throw new Error('usage: restart-client.ts start JSON | resume DIR CONTAINER');
}

if (require.main === module) {
  main().catch((err: unknown) => {
    say({ error: err instanceof Error ? `${err.message}\n${err.stack}` : String(err) });
    process.exit(1);
  });
}
