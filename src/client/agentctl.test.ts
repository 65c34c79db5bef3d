// agentctl's own logic against fake agents: --protocol, the negotiated
// version on stderr, which version a command name calls, watch and attach.
// Run: node --import tsx --test src/client/agentctl.test.ts
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { ReadOutputRequest__Output } from '../generated/agent/v2/ReadOutputRequest';
import type { WatchEventsRequest__Output } from '../generated/agent/v2/WatchEventsRequest';
import { run } from './agentctl';
import { answer, negotiateAs, startFakeAgent, type FakeAgent } from './fake-agent.testing';

let agent: FakeAgent | null = null;
afterEach(async () => {
  await agent?.close();
  agent = null;
});

async function ctl(...argv: string[]): Promise<{ code: number; out: string[]; err: string[]; raw: Buffer }> {
  const out: string[] = [];
  const err: string[] = [];
  const raw: Buffer[] = [];
  const code = await run(['--addr', agent!.addr, ...argv], (s) => out.push(s), { err: (s) => err.push(s), stdout: (b) => raw.push(Buffer.from(b)) });
  return { code, out, err, raw: Buffer.concat(raw) };
}

const watchEvents = (requests: WatchEventsRequest__Output[]) =>
  ((call: grpc.ServerWritableStream<WatchEventsRequest__Output, unknown>) => {
    requests.push(call.request);
    call.write({ seq: 6, at_unix_ms: 0, process_started: { container_id: 'c1', exec_id: 'e1', pid: 42 } });
    call.write({ seq: 7, at_unix_ms: 1000, process_exited: { container_id: 'c1', exec_id: 'e1', pid: 42, status: { signal: 9, oom_killed: true } } });
    call.write({ seq: 8, at_unix_ms: 2000, container_state: { container_id: 'c1', state: 'CONTAINER_STATE_STOPPED' } });
    // ... and follows: the stream stays open.
  }) as grpc.UntypedHandleCall;

function bothVersions(): Parameters<typeof startFakeAgent>[0] {
  const reads: ReadOutputRequest__Output[] = [];
  return {
    discovery: negotiateAs(['v1', 'v2'], { capabilities: ['feature:tty'] }),
    v1: { WaitProcess: answer({ status: 137 }), ReadStdout: answer({ data: Buffer.from('v1 bytes') }) },
    v2: {
      ListContainers: answer({ containers: [] }),
      WaitProcess: answer({ status: { code: 0, signal: 9 } }),
      WatchEvents: watchEvents([]),
      ReadOutput: ((call: grpc.ServerWritableStream<ReadOutputRequest__Output, unknown>) => {
        reads.push(call.request);
        const from = Number(call.request.offset);
        call.write({ offset: from, data: Buffer.from([0x00, 0xff, 0x41]), eof: false });
        call.write({ offset: from + 3, data: Buffer.from('\n'), eof: false });
        call.write({ offset: from + 4, data: Buffer.alloc(0), eof: true });
        call.end();
      }) as grpc.UntypedHandleCall,
    },
  };
}

describe('agentctl', () => {
  it('prints the protocol in use on stderr, and in Negotiate\'s output', async () => {
    agent = await startFakeAgent(bothVersions());
    const r = await ctl('Negotiate');
    assert.equal(r.code, 0);
    assert.match(r.err[0]!, /^agentctl: protocol v2 with agent 9\.8\.7 at unix:\/\//);
    assert.match(r.out.join('\n'), /selected_version: v2\n[\s\S]*protocol in use: v2$/);
    const forced = await ctl('--protocol', '1', '--json', 'Negotiate');
    assert.equal(JSON.parse(forced.out[0]!).selected_version, 'v1');
    assert.match(forced.err[0]!, /^agentctl: protocol v1 with agent 9\.8\.7/);
    assert.deepEqual(agent.calls.filter((c) => c.method === 'Negotiate').map((c) => c.request.protocol_versions), [['v2', 'v1'], ['v1']]);
  });

  it('calls the negotiated version\'s RPC for a name both have; --protocol forces one', async () => {
    agent = await startFakeAgent(bothVersions());
    const v2 = await ctl('--json', 'WaitProcess', 'container_id=c1', 'exec_id=c1');
    assert.deepEqual(JSON.parse(v2.out[0]!).status, { code: 0, signal: 9, core_dumped: false, oom_killed: false, started_at_unix_ms: 0, exited_at_unix_ms: 0 });
    const v1 = await ctl('waitprocess', 'container_id=c1', '--protocol=v1', '--json');
    assert.deepEqual(JSON.parse(v1.out[0]!), { status: 137 });
    assert.deepEqual(agent.calls.filter((c) => c.method === 'WaitProcess').map((c) => c.service), ['v2', 'v1']);
  });

  it('a v1-only name calls v1 when the agent serves both, unless --protocol 2; a v2-only name needs v2', async () => {
    agent = await startFakeAgent(bothVersions());
    const r = await ctl('ReadStdout', 'container_id=c1');
    assert.deepEqual([r.code, r.out], [0, ['v1 bytes']]);
    const refused = await ctl('--protocol', '2', 'ReadStdout', 'container_id=c1');
    assert.deepEqual([refused.code, refused.out], [2, ['agentctl: ReadStdout is a v1 RPC and --protocol 2 was given']]);
    const v2only = await ctl('--protocol', '1', 'ListContainers');
    assert.equal(v2only.code, 1);
    assert.match(v2only.out[0]!, /^agentctl: ListContainers failed: v2 ListContainers needs protocol v2; this client speaks v1 with the agent at unix:\/\/\S+ \(version 9\.8\.7, which serves v1, v2\)/);
  });

  it('a v2 stream RPC prints one line per message', async () => {
    agent = await startFakeAgent(bothVersions());
    const r = await ctl('ReadOutput', 'container_id=c1', 'exec_id=e1', 'offset=5');
    assert.equal(r.code, 0);
    assert.deepEqual(r.out.map((l) => JSON.parse(l).offset), [5, 8, 9]);
  });

  it('watch prints one line per event, from --after, up to --count', async () => {
    const requests: WatchEventsRequest__Output[] = [];
    agent = await startFakeAgent({ ...bothVersions(), v2: { ...bothVersions().v2, WatchEvents: watchEvents(requests) } });
    const r = await ctl('watch', '--after', '5', '--count', '3');
    assert.equal(r.code, 0);
    assert.deepEqual(r.out, [
      'seq=6 at=1970-01-01T00:00:00.000Z process_started container=c1 exec=e1 pid=42',
      'seq=7 at=1970-01-01T00:00:01.000Z process_exited container=c1 exec=e1 pid=42 signal=9 oom-killed',
      'seq=8 at=1970-01-01T00:00:02.000Z container_state container=c1 state=stopped',
    ]);
    // agentctl's own options may follow the command, as they always could.
    const j = await ctl('watch', '--from-now', '--count=1', '--json');
    assert.equal(JSON.parse(j.out[0]!).type, 'process_started');
    assert.deepEqual(requests.map((q) => [q.after_seq, q.from_now]), [[5, false], [0, true]]);
  });

  it('watch on a v1 connection says it needs v2', async () => {
    agent = await startFakeAgent(bothVersions());
    const r = await ctl('--protocol', '1', 'watch');
    assert.equal(r.code, 1);
    assert.match(r.out[0]!, /^agentctl: watch failed: watchEvents needs protocol v2; this client speaks v1 with the agent at/);
  });

  it('attach writes the raw bytes from --offset to stdout and follows to the end', async () => {
    agent = await startFakeAgent(bothVersions());
    const r = await ctl('attach', 'c1', 'e1', '--stream', 'stderr', '--offset', '10');
    assert.equal(r.code, 0);
    assert.deepEqual(r.raw, Buffer.from([0x00, 0xff, 0x41, 0x0a]));
    assert.deepEqual(r.out, []);
    assert.equal(r.err.at(-1), 'agentctl: end of stderr at offset 14');
    const read = agent.calls.find((c) => c.method === 'ReadOutput')!.request;
    assert.deepEqual([read.container_id, read.exec_id, read.stream, Number(read.offset)], ['c1', 'e1', 'OUTPUT_STREAM_STDERR', 10]);
  });

  it('attach over v1 polls the v1 reads', async () => {
    const chunks = [Buffer.from('ab'), Buffer.from('cd')];
    agent = await startFakeAgent({ discovery: negotiateAs(['v1']), v1: { ReadStdout: answer(() => ({ data: chunks.shift() ?? Buffer.alloc(0) })) } });
    const r = await ctl('attach', 'c1');
    assert.deepEqual([r.code, r.raw.toString(), r.err.at(-1)], [0, 'abcd', 'agentctl: end of stdout at offset 4']);
    assert.equal(agent.calls.filter((c) => c.method === 'ReadStdout')[0]!.request.exec_id, '');
  });

  it('refuses bad options before dialling, and documents the commands', async () => {
    agent = await startFakeAgent(bothVersions());
    for (const argv of [['--protocol', '3', 'Negotiate'], ['attach'], ['attach', 'c1', '--stream', 'stdin'], ['watch', '--after', 'x'], ['watch', '--bogus'], ['NoSuchRpc']]) {
      const r = await ctl(...argv);
      assert.equal(r.code, 2, argv.join(' '));
    }
    assert.deepEqual(agent.calls, []);
    const help = await ctl('--help');
    for (const word of ['--protocol N', 'watch [--after SEQ] [--from-now]', 'attach CONTAINER [EXEC] [--stream stdout|stderr] [--offset N]', 'v2-only names']) {
      assert.ok(help.out[0]!.includes(word), word);
    }
    const list = await ctl('list');
    const lines = list.out[0]!.split('\n');
    assert.ok(lines.includes('WaitProcess\tv1 v2'));
    assert.ok(lines.includes('ReadStdout\tv1'));
    assert.ok(lines.includes('WatchEvents\tv2'));
    assert.ok(lines.includes('watch\tv2'));
  });

  it('--require fails the connection when the agent lacks the capability', async () => {
    agent = await startFakeAgent(bothVersions());
    await assert.rejects(ctl('--require', 'feature:stream-output', 'Negotiate'), /lacks the capability feature:stream-output/);
    assert.equal((await ctl('--require', 'feature:tty', 'Negotiate')).code, 0);
  });
});
