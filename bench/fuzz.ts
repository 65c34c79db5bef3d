// Fuzzing at scale: a million malformed, truncated, random and
// boundary-valued requests (by default) across every method of every service
// the bundled agent serves, from 4 connections, then a table: inputs and
// statuses per service and per generator, INTERNAL/UNKNOWN answers (goal 0)
// with the method and a hex excerpt of the input, agent exits (must be 0), the
// agent's fds and memory before and after, the duration. Asserts nothing.
// The engine (generators, runner, report) is test/helpers/fuzz.ts, shared with
// test/integration/fuzz.test.ts.
//
// Run: node --import tsx bench/fuzz.ts [--inputs N] [--seed S] [--channels N] [--concurrency N] [--bundle agent.cjs]
//      node --import tsx bench/fuzz.ts --replay /agent.v1.AgentService/CreateSandbox FILE
//      node --import tsx bench/fuzz.ts --seed S --input N   (input number N of that run, made again and sent)
// (after a build; npm run bench:fuzz builds first). See bench/README.md.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { FUZZ_MAX_MESSAGE_BYTES, formatFuzzReport, fuzzedMethods, fuzzSession, GENERATORS, inputAt, servedMethods, startFuzzAgent } from '../test/helpers/fuzz';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    inputs: { type: 'string', default: '1000000' },
    seed: { type: 'string' },
    channels: { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '16' },
    replay: { type: 'string' },
    /** With --seed: make input number N of that run again, save it and send it to a fresh agent. */
    input: { type: 'string' },
    /** Another agent bundle (an archived release's agent.cjs) instead of dist/agent.cjs. */
    bundle: { type: 'string' },
  },
});
const int = (name: string, text: string | undefined, min: number) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer of at least ${min}, not ${text}`);
  return n;
};

/**
 * Sends one input to one method of a fresh agent and prints the answer: a
 * saved file (--replay METHOD FILE), or input number N of a seed's run made
 * again (--seed S --input N; also saved to a file).
 */
async function replay(what: { method: string; file: string } | { seed: number; index: number }): Promise<void> {
  const agent = await startFuzzAgent(values.bundle && path.resolve(values.bundle));
  const target = `unix:${agent.addr.slice('unix://'.length)}`;
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  try {
    let method: string;
    let input: Buffer;
    let file: string;
    if ('file' in what) {
      ({ method, file } = what);
      input = fs.readFileSync(file);
    } else {
      const made = inputAt(what.seed, (await fuzzedMethods(target)).methods, FUZZ_MAX_MESSAGE_BYTES, what.index);
      method = made.method.path;
      input = made.input;
      file = path.join(os.tmpdir(), `fuzz-${what.seed}-${what.index}.bin`);
      fs.writeFileSync(file, input);
      console.log(`input #${what.index} of seed ${what.seed}: ${method} [${made.generator.name}], ${input.length} bytes, saved to ${file}: ${input.subarray(0, 64).toString('hex')}${input.length > 64 ? '…' : ''}`);
    }
    const known = servedMethods().find((m) => m.path === method);
    if (!known) throw new Error(`${method} is not described; described: ${servedMethods().map((m) => m.path).join(', ')}`);
    const id = (b: Buffer) => b;
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      if (!known.requestStream && !known.responseStream) {
        client.makeUnaryRequest(method, id, id, input, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err) => resolve(err ?? { code: grpc.status.OK, details: '', metadata: new grpc.Metadata() }));
        return;
      }
      let call: grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>;
      if (known.requestStream) {
        const duplex = client.makeBidiStreamRequest(method, id, id);
        duplex.write(input);
        duplex.end();
        call = duplex;
      } else {
        call = client.makeServerStreamRequest(method, id, id, input);
      }
      call.on('data', () => {});
      call.on('error', () => {});
      call.on('status', resolve);
      setTimeout(() => call.cancel(), 25_000);
    });
    console.log(`${method} with ${input.length} bytes from ${file}: ${grpc.status[status.code]} ${JSON.stringify(status.details)}`);
    for (const l of agent.logs()) console.log(`agent: ${JSON.stringify(l).slice(0, 600)}`);
  } finally {
    client.close();
    await agent.stop();
  }
}

async function main(): Promise<void> {
  if (values.replay) {
    if (positionals.length !== 1) throw new Error('--replay METHOD_PATH FILE');
    return replay({ method: values.replay, file: positionals[0]! });
  }
  if (values.input !== undefined) {
    if (values.seed === undefined) throw new Error('--input N needs the --seed of the run');
    return replay({ seed: Number(values.seed) >>> 0, index: int('input', values.input, 0) });
  }
  const inputs = int('inputs', values.inputs, 1);
  const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : crypto.randomBytes(4).readUInt32LE();
  const channels = int('channels', values.channels, 1);
  const concurrency = int('concurrency', values.concurrency, 1);
  console.log(`fuzzing the bundled agent: ${inputs} inputs, seed ${seed} (rerun with --seed ${seed}), ${channels} channels x ${concurrency} in flight; node ${process.version}, ${os.cpus().length} CPUs`);
  console.log(`methods: ${servedMethods().length} (${[...new Set(servedMethods().map((m) => m.service))].join(', ')})`);
  console.log(`generators: ${GENERATORS.map((g) => `${g.name} (${g.weight})`).join(', ')}`);
  const t0 = performance.now();
  const session = await fuzzSession({
    inputs, seed, channels, concurrency, bundle: values.bundle && path.resolve(values.bundle),
    progressEvery: Math.max(1000, Math.round(inputs / 20)),
    onProgress: (done, ms, codes, agent) =>
      console.error(
        `  ${done} inputs, ${(ms / 1000).toFixed(0)} s, ${Math.round(done / (ms / 1000))}/s; INTERNAL ${codes['INTERNAL'] ?? 0}, UNKNOWN ${codes['UNKNOWN'] ?? 0}` +
          (agent ? `; agent ${agent.fds} fds, VmRSS ${(agent.vmRssKiB / 1024).toFixed(0)} MiB, RssAnon ${(agent.rssAnonKiB / 1024).toFixed(0)} MiB` : ''),
      ),
  });
  console.log('');
  console.log(formatFuzzReport(session, { channels, concurrency }));
  if (session.result.failures.length) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `fuzz-failures-${seed}-`));
    for (const f of session.result.failures) fs.writeFileSync(path.join(dir, `${f.index}-${f.path.replace(/^\//, '').replace(/\//g, '.')}.bin`), f.input);
    console.log(`\nthe failing inputs, whole, are in ${dir}; replay one with: node --import tsx bench/fuzz.ts --replay /SERVICE/METHOD FILE`);
  }
  console.log(`\nwall time with agent start and settling: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exitCode = 1;
});
