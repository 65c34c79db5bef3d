// A short fuzz run against the bundled agent: 20,000 malformed, truncated,
// random and boundary-valued inputs with a fixed seed across every method of
// every service it serves, from 4 connections (test/helpers/fuzz.ts; the
// million-input run with a table is bench/fuzz.ts). It fails on an agent
// exit, any INTERNAL or UNKNOWN answer, a call left unanswered, a leaked fd
// or child, and a file made outside the agent's shared and state dirs (the
// rest of its temp dir, and entries named after the run's path markers in
// /tmp, /, /var/tmp, /run and the repository). Then the inputs earlier runs
// found are sent again, one by one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { formatFuzzReport, fuzzSession, GENERATORS, servedMethods, startFuzzAgent, type FuzzSession } from '../helpers/fuzz';

/**
 * Inputs that bench/fuzz.ts runs found answered with INTERNAL or not at all
 * (and those the first runs found), each sent again to a fresh agent: each
 * must be answered within 5 s with a status other than INTERNAL or UNKNOWN.
 */
const FINDINGS: Array<{ what: string; path: string; hex: string }> = [
  { what: 'a hostname longer than 64 bytes (sethostname EINVAL)', path: '/agent.v1.AgentService/CreateSandbox', hex: `0a41${'78'.repeat(65)}` },
  { what: 'a hostname with a NUL', path: '/agent.v1.AgentService/CreateSandbox', hex: '0a03610062' },
  { what: 'a spec "😀": V8\'s JSON.parse message holds a lone surrogate, grpc-js\'s encodeURI of the status message throws', path: '/agent.v1.AgentService/CreateContainer', hex: '1a04f09f9880' },
  { what: 'a truncated health request', path: '/grpc.health.v1.Health/Check', hex: '0a' },
  { what: 'a truncated health List request', path: '/grpc.health.v1.Health/List', hex: '0f' },
  { what: 'a length past the end', path: '/grpc.health.v1.Health/List', hex: '7affffffffffffffffff01616263' },
];

const INPUTS = 20_000;
const SEED = 0x5eed;
const CHANNELS = 4;
const CONCURRENCY = 16;
const FD_MARGIN = 5;

describe('fuzz', () => {
  let session: FuzzSession | undefined;
  const report = () => (session ? formatFuzzReport(session, { channels: CHANNELS, concurrency: CONCURRENCY }) : 'no run');

  it(`the agent survives ${INPUTS} fuzzed inputs (seed ${SEED}) with no INTERNAL or UNKNOWN answer`, { timeout: 180_000 }, async (t) => {
    session = await fuzzSession({ inputs: INPUTS, seed: SEED, channels: CHANNELS, concurrency: CONCURRENCY });
    t.diagnostic(`${INPUTS} inputs in ${(session.result.durationMs / 1000).toFixed(1)} s`);
    const { result } = session;
    assert.equal(session.exited, null, `the agent exited\n${report()}`);
    assert.equal(result.stoppedEarly, null);
    assert.equal(result.inputs, INPUTS);
    assert.equal(result.internal + result.unknown, 0, `INTERNAL or UNKNOWN answers (bench/fuzz.ts --seed ${SEED} --input N reproduces one)\n${report()}`);
    assert.deepEqual(result.slow, [], `calls left unanswered until their deadline\n${report()}`);
  });

  it('the inputs earlier fuzz runs found are answered promptly, with no INTERNAL or UNKNOWN', { timeout: 60_000 }, async () => {
    const agent = await startFuzzAgent();
    const client = new grpc.Client(`unix:${agent.addr.slice('unix://'.length)}`, grpc.credentials.createInsecure());
    try {
      const id = (b: Buffer) => b;
      const bad: string[] = [];
      for (const f of FINDINGS) {
        const err = await new Promise<grpc.ServiceError | null>((resolve) =>
          client.makeUnaryRequest(f.path, id, id, Buffer.from(f.hex, 'hex'), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e) => resolve(e)));
        const code = err?.code ?? grpc.status.OK;
        if (code === grpc.status.INTERNAL || code === grpc.status.UNKNOWN || code === grpc.status.DEADLINE_EXCEEDED) {
          bad.push(`${f.path} ${f.hex.slice(0, 40)} (${f.what}): ${grpc.status[code]} ${JSON.stringify(err?.details.slice(0, 160))}`);
        }
      }
      assert.deepEqual(bad, []);
      assert.ok(agent.alive());
    } finally {
      client.close();
      await agent.stop();
    }
  });

  it('every served method and every generator got inputs', () => {
    assert.ok(session, 'no run');
    // The methods fuzzed: those of the descriptor whose service the agent lists through reflection.
    const methods = [...session.result.byMethod.keys()];
    const described = servedMethods().map((m) => m.path);
    for (const m of ['/agent.Discovery/Negotiate', '/agent.v1.AgentService/CreateContainer', '/agent.v1.AgentService/GetOOMEvent',
      '/grpc.health.v1.Health/Watch', '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo']) {
      assert.ok(methods.includes(m), `${m} was not fuzzed`);
    }
    assert.ok(methods.length >= 36 && methods.every((m) => described.includes(m)));
    assert.deepEqual(methods.filter((m) => !session!.result.byMethod.get(m)), [], 'methods never called');
    assert.deepEqual(GENERATORS.map((g) => g.name).filter((g) => !session!.result.byGenerator.has(g)), [], 'generators never used');
  });

  it('leaks no fd and no child, and creates nothing outside the shared and state dirs', () => {
    assert.ok(session, 'no run');
    const { before, after } = session;
    assert.ok(after.fds <= before.fds + FD_MARGIN, `fds ${before.fds} before, ${after.fds} after a settle (margin ${FD_MARGIN})\n${report()}`);
    assert.equal(after.children, 0, 'children of the agent left');
    assert.deepEqual(session.outside, [], 'files created in the agent\'s temp dir outside its shared and state dirs');
    assert.deepEqual(session.markers, [], 'entries named after fuzz markers outside the agent\'s roots');
  });
});
