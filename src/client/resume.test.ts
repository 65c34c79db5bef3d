// The resume record: a later client resumes from what an earlier one saved
// (the format-1 fixture, kept as it was written), tolerates unknown and
// missing optional keys, and refuses a record that needs a newer reader.
// Run: node --import tsx --test src/client/resume.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { ReadOutputRequest__Output } from '../generated/agent/v2/ReadOutputRequest';
import type { WatchEventsRequest__Output } from '../generated/agent/v2/WatchEventsRequest';
import { AgentClient } from './client';
import { answer, negotiateAs, startFakeAgent, type FakeAgent } from './fake-agent.testing';
import { readResumeRecord, RESUME_FORMAT, RESUME_READER_FORMAT, ResumeRecordError, writeResumeRecord } from './resume';

const FIXTURE = path.join(__dirname, 'fixtures', 'resume-record-format-1.json');
const fixtureText = fs.readFileSync(FIXTURE, 'utf8');
const fixture = () => JSON.parse(fixtureText) as Record<string, any>;

describe('reading a resume record', () => {
  it('reads the format-1 record an earlier client saved', () => {
    const { state, origin } = readResumeRecord(fixtureText);
    assert.deepEqual(origin, { format: 1, minReaderFormat: 1, client: { name: 'agent-client', version: '0.2.0' }, savedAtMs: 1764580000000 });
    assert.deepEqual(state, {
      address: 'unix:///run/agent/agent.sock',
      protocol: 'v2',
      agentVersion: '0.2.0',
      eventCursor: 41,
      streams: [
        { containerId: 'web', execId: 'web', stream: 'stdout', offset: 4096 },
        { containerId: 'web', execId: 'ls', stream: 'stderr', offset: 17 },
      ],
      stdin: [{ containerId: 'web', execId: 'web', offset: 12 }],
      initExecIds: { web: 'web' },
      outstanding: [{ requestId: '2f1d3c9e-7a55-4f0e-9a51-1d2b3c4d5e6f', method: 'StartContainer', containerId: 'web', startedAtMs: 1764579999000 }],
    });
  });

  it('gives every optional key its default when it is missing', () => {
    const rec = fixture();
    for (const k of ['min_reader_format', 'saved_at_unix_ms', 'client', 'event_cursor', 'streams', 'stdin', 'init_exec_ids', 'outstanding']) delete rec[k];
    delete rec.agent.version;
    delete rec.outstanding;
    const { state, origin } = readResumeRecord(rec);
    assert.deepEqual(state, { address: 'unix:///run/agent/agent.sock', protocol: 'v2', agentVersion: '', eventCursor: null, streams: [], stdin: [], initExecIds: {}, outstanding: [] });
    assert.deepEqual(origin, { format: 1, minReaderFormat: 1, client: null, savedAtMs: null });
  });

  it('one missing key leaves the others as they were (a record from a writer that did not know "stdin" yet)', () => {
    const rec = fixture();
    delete rec.stdin;
    const { state } = readResumeRecord(JSON.stringify(rec));
    assert.deepEqual(state.stdin, []);
    assert.equal(state.streams.length, 2);
    assert.equal(state.eventCursor, 41);
  });

  it('ignores keys it does not know, at every level, and reads a newer format that allows format-1 readers', () => {
    const rec = fixture();
    rec.format = RESUME_READER_FORMAT + 1;
    rec.min_reader_format = 1;
    rec.leases = [{ id: 'x' }];
    rec.agent.tls = { ca: '...' };
    rec.streams[0].reader = 'runtime-2';
    rec.outstanding[0].args_digest = 'sha256:00';
    const { state, origin } = readResumeRecord(rec);
    assert.equal(origin.format, RESUME_READER_FORMAT + 1);
    assert.deepEqual(state, readResumeRecord(fixtureText).state);
  });

  it('refuses a record whose min_reader_format is newer than this client reads, saying so', () => {
    const rec = fixture();
    rec.format = 3;
    rec.min_reader_format = 2;
    assert.throws(() => readResumeRecord(rec), (err: unknown) => {
      assert.ok(err instanceof ResumeRecordError);
      assert.equal(err.message, 'resume record of format 3 needs a reader of format 2 or later; this client reads up to format 1: ' +
        'resume with the release that wrote it (or a later one)');
      return true;
    });
  });

  it('refuses what is not a record, and wrong types, naming the key', () => {
    assert.throws(() => readResumeRecord('{not json'), /resume record is not JSON/);
    assert.throws(() => readResumeRecord('[]'), /resume record is not a JSON object/);
    assert.throws(() => readResumeRecord({ agent: {} }), /no valid "format"/);
    const cases: Array<[(r: Record<string, any>) => void, RegExp]> = [
      [(r) => (r.format = 1.5), /no valid "format"/],
      [(r) => (r.min_reader_format = 0), /"min_reader_format" is not a positive integer/],
      [(r) => delete r.agent, /resume record "agent" is not a JSON object/],
      [(r) => delete r.agent.address, /agent\.address is not a string/],
      [(r) => (r.agent.protocol = 'v3'), /agent\.protocol "v3" is not a version this client speaks/],
      [(r) => (r.streams[1].offset = -1), /streams\[1\]\.offset is not a non-negative integer/],
      [(r) => (r.streams[0].stream = 'stdin'), /streams\[0\]\.stream "stdin" is not stdout or stderr/],
      [(r) => (r.event_cursor = '41'), /event_cursor is not a non-negative integer/],
      [(r) => (r.outstanding = {}), /outstanding is not an array/],
    ];
    for (const [spoil, message] of cases) {
      const rec = fixture();
      spoil(rec);
      assert.throws(() => readResumeRecord(rec), message);
    }
  });
});

describe('writing a resume record', () => {
  it('writes format 1 with every key the format-1 fixture has, and reads back what it wrote', () => {
    const { state } = readResumeRecord(fixtureText);
    const written = writeResumeRecord(state, { name: 'agent-client', version: '0.2.0' }, 1764580000000);
    assert.equal(written.format, RESUME_FORMAT);
    assert.equal(written.min_reader_format, 1);
    // Today's writer writes what the fixture (an earlier writer) wrote: byte for byte, as JSON.
    assert.deepEqual(JSON.parse(JSON.stringify(written)), fixture());
    assert.deepEqual(readResumeRecord(JSON.stringify(written)).state, state);
  });
});

describe('AgentClient.resume', () => {
  let agent: FakeAgent | null = null;
  let client: AgentClient | null = null;
  afterEach(async () => {
    client?.close();
    client = null;
    await agent?.close();
    agent = null;
  });

  it('picks up offsets, the event cursor, stdin and outstanding request ids from the fixture', async () => {
    const reads: ReadOutputRequest__Output[] = [];
    const watches: WatchEventsRequest__Output[] = [];
    agent = await startFakeAgent({
      discovery: negotiateAs(['v1', 'v2'], { agent_version: '0.3.0' }),
      v2: {
        ListContainers: answer({ containers: [] }),
        ReadOutput: ((call: grpc.ServerWritableStream<ReadOutputRequest__Output, unknown>) => {
          reads.push(call.request);
          call.write({ offset: call.request.offset, data: Buffer.alloc(0), eof: true });
          call.end();
        }) as grpc.UntypedHandleCall,
        WatchEvents: ((call: grpc.ServerWritableStream<WatchEventsRequest__Output, unknown>) => {
          watches.push(call.request);
          call.end();
        }) as grpc.UntypedHandleCall,
        WriteInput: answer((req) => ({ offset: Number(req.offset) + (req.data as Buffer).length })),
        StartContainer: answer({}),
      },
    });
    const rec = fixture();
    rec.agent.address = agent.addr;
    const logs: string[] = [];
    client = await AgentClient.resume(JSON.stringify(rec), { log: (_l, m) => logs.push(m) });
    assert.equal(client.protocol, 'v2');
    assert.ok(logs.some((m) => /is now version 0\.3\.0 \(was 0\.2\.0/.test(m)), 'an agent upgrade since the record is logged');

    // Output: from the saved offset; the init (no exec id) by the saved init exec id.
    for await (const c of client.readOutput({ containerId: 'web' })) assert.equal(c.offset, 4096);
    for await (const c of client.readOutput({ containerId: 'web', execId: 'ls', stream: 'stderr' })) assert.equal(c.offset, 17);
    assert.deepEqual(reads.map((r) => [r.exec_id, r.stream, r.offset]), [['web', 'OUTPUT_STREAM_STDOUT', 4096], ['ls', 'OUTPUT_STREAM_STDERR', 17]]);
    assert.equal(agent.calls.filter((c) => c.method === 'GetContainer').length, 0, 'the init exec id came from the record');

    // Events after the saved cursor.
    for await (const _ of client.watchEvents()) assert.fail('no events');
    assert.deepEqual(watches.map((w) => [w.after_seq, w.from_now]), [[41, false]]);

    // Input at the saved offset.
    assert.deepEqual(await client.writeInput({ containerId: 'web', data: 'more\n' }), { offset: 17 });
    assert.equal(agent.calls.find((c) => c.method === 'WriteInput')!.request.offset, 12);

    // The outstanding call is reported, and re-issued with its id it is no longer outstanding.
    const [pending] = client.outstandingRequests();
    assert.deepEqual(pending, { requestId: '2f1d3c9e-7a55-4f0e-9a51-1d2b3c4d5e6f', method: 'StartContainer', containerId: 'web', startedAtMs: 1764579999000 });
    await client.startContainer({ containerId: 'web', requestId: pending!.requestId });
    assert.equal(agent.calls.find((c) => c.method === 'StartContainer')!.request.request_id, pending!.requestId);
    assert.deepEqual(client.outstandingRequests(), []);

    // Saved again, the record holds the new positions.
    const again = client.saveState();
    assert.equal(again.event_cursor, 41);
    assert.deepEqual(again.stdin, [{ container_id: 'web', exec_id: 'web', offset: 17 }]);
    assert.equal(again.agent.version, '0.3.0');
  });

  it('resumes against an agent that now speaks only v1, and says so', async () => {
    agent = await startFakeAgent({ discovery: negotiateAs(['v1']) });
    const rec = fixture();
    rec.agent.address = agent.addr;
    const warns: string[] = [];
    client = await AgentClient.resume(rec, { log: (l, m) => void (l === 'warn' && warns.push(m)) });
    assert.equal(client.protocol, 'v1');
    assert.equal(warns.length, 1);
    assert.match(warns[0]!, /resuming with protocol v1; the record was saved with v2/);
    assert.equal(client.saveState().agent.protocol, 'v1');
  });

  it('refuses a record it cannot read before connecting anywhere', async () => {
    const rec = fixture();
    rec.min_reader_format = 9;
    await assert.rejects(AgentClient.resume(rec), ResumeRecordError);
  });
});
