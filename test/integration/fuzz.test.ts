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
import protobuf from 'protobufjs';
import {
  formatFuzzReport, FUZZ_MAX_MESSAGE_BYTES, fuzzInputs, fuzzSession, GENERATORS, servedMethods, startFuzzAgent, varintBytes, type FuzzSession,
} from '../helpers/fuzz';

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

describe('fuzz engine', () => {
  const methods = servedMethods();
  const take = (seed: number, n: number) => {
    const out = [];
    for (const x of fuzzInputs(seed, methods, FUZZ_MAX_MESSAGE_BYTES)) {
      if (x.index >= n) break;
      out.push(x);
    }
    return out;
  };

  it('one seed gives the same inputs in the same order; another seed others', () => {
    const a = take(SEED, 300);
    const b = take(SEED, 300);
    assert.deepEqual(a.map((x) => [x.method.path, x.generator.name, x.input.toString('hex')]), b.map((x) => [x.method.path, x.generator.name, x.input.toString('hex')]));
    const c = take(SEED + 1, 300);
    assert.notDeepEqual(a.map((x) => x.input.toString('hex')), c.map((x) => x.input.toString('hex')));
  });

  it('varints as protobuf writes them, negative numbers in ten bytes', () => {
    for (const v of [0, 1, 127, 128, 300, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1]) {
      assert.deepEqual(Buffer.from(varintBytes(v)), Buffer.from(protobuf.Writer.create().uint64(v).finish()), String(v));
    }
    assert.deepEqual(Buffer.from(varintBytes(-1n)), Buffer.from(protobuf.Writer.create().int64(-1).finish()));
    assert.equal(varintBytes(-1n).length, 10);
    assert.deepEqual(Buffer.from(varintBytes((1n << 64n) - 1n)), Buffer.from(varintBytes(-1n)));
  });

  it('plain-valid inputs decode as their request type; truncated ones walk every prefix of one encoding', () => {
    const inputs = take(SEED, 20_000);
    const plain = inputs.filter((x) => x.generator.name === 'plain-valid');
    assert.ok(plain.length > 100);
    for (const x of plain) assert.doesNotThrow(() => x.method.type.decode(x.input), `${x.method.path} #${x.index}`);
    // Per method, truncated inputs are prefixes 0, 1, 2, ... of one base until it is used up.
    const byMethod = new Map<string, Buffer[]>();
    for (const x of inputs.filter((y) => y.generator.name === 'truncated')) byMethod.set(x.method.path, [...(byMethod.get(x.method.path) ?? []), x.input]);
    const walk = [...byMethod.values()].find((list) => list.length > 10)!;
    assert.equal(walk[0]!.length, 0);
    for (let i = 1; i < walk.length && walk[i]!.length > 0; i++) {
      assert.equal(walk[i]!.length, i);
      assert.ok(walk[i - 1]!.equals(walk[i]!.subarray(0, i - 1)));
    }
  });

  it('oversized inputs sit right around max_message_bytes', () => {
    const sizes = new Set(take(SEED, 40_000).filter((x) => x.generator.name === 'oversized').map((x) => x.input.length - FUZZ_MAX_MESSAGE_BYTES));
    assert.ok(sizes.size >= 3, `sizes seen: ${[...sizes]}`);
    for (const d of sizes) assert.ok([-64, -1, 0, 1, 4096].includes(d), String(d));
  });
});
