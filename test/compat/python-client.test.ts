// Compatibility: an independent Python client (Debian's python3-grpcio and
// python3-protobuf, stubs generated from proto/ by protoc at test time) drives
// the bundled agent through a container's life cycle on v1, then on v2 on the
// same channel (streams from offsets, events from a cursor, structured exit
// statuses, error details decoded by hand from grpc-status-details-bin as
// google.rpc.Status/ErrorInfo). It also reads every golden encoding of the
// newest archived release that has them (another protobuf implementation than
// golden.test.ts's). Missing Python modules or protoc plugins fail the test
// with the Debian package to install.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { REPO, startAgent, type TestAgent } from '../helpers/agent-process';
import { releases } from '../helpers/releases';
import { containerSpec } from '../helpers/spec';

const PYTHON = '/usr/bin/python3';
const PROTOC = '/usr/bin/protoc';
const GRPC_PLUGIN = '/usr/bin/grpc_python_plugin';
const CLIENT = path.join(REPO, 'test', 'compat', 'python', 'client.py');

function requirePrerequisites(): void {
  if (!fs.existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: apt-get install python3`);
  for (const [mod, pkg] of [['grpc', 'python3-grpcio'], ['google.protobuf', 'python3-protobuf']]) {
    const r = spawnSync(PYTHON, ['-c', `import ${mod}`], { encoding: 'utf8' });
    if (r.status !== 0) {
      throw new Error(`${PYTHON} cannot import ${mod}: apt-get install ${pkg} (Debian package; the python3 on PATH may be another Python)\n${r.stderr}`);
    }
  }
  if (!fs.existsSync(PROTOC)) throw new Error(`${PROTOC} is missing: apt-get install protobuf-compiler`);
  if (!fs.existsSync(GRPC_PLUGIN)) throw new Error(`${GRPC_PLUGIN} is missing: apt-get install protobuf-compiler-grpc`);
}

function generateStubs(outDir: string): void {
  const r = spawnSync(
    PROTOC,
    [
      '-I', path.join(REPO, 'proto'),
      `--python_out=${outDir}`,
      `--plugin=protoc-gen-grpc_python=${GRPC_PLUGIN}`,
      `--grpc_python_out=${outDir}`,
      'agent/discovery.proto',
      'agent/v1/agent.proto',
      'agent/v2/agent.proto',
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`protoc failed (${r.status}):\n${r.stderr}`);
}

/** Runs a command to its end; kills it (by its pid) after `timeoutMs`. */
function run(cmd: string, args: string[], timeoutMs: number): Promise<{ status: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // PYTHONDONTWRITEBYTECODE keeps __pycache__ out of the stubs and the repo.
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

let agent: TestAgent | undefined;
let tmp = '';
let summary: Record<string, any> | undefined;

before(async () => {
  requirePrerequisites();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'python-compat-'));
  fs.mkdirSync(path.join(tmp, 'stubs'));
  generateStubs(path.join(tmp, 'stubs'));
});

after(async () => {
  await agent?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('a Python grpcio client drives a container through the agent', async () => {
  agent = await startAgent();
  // Keep the agent's raw output too (a crash prints plain text, not JSON log lines).
  let raw = '';
  let exit = '';
  const keep = (b: Buffer) => (raw = (raw + b.toString()).slice(-8000));
  agent.child.stdout!.on('data', keep);
  agent.child.stderr!.on('data', keep);
  agent.child.once('exit', (code, signal) => (exit = `agent exited: code ${code} signal ${signal}`));
  const specFile = path.join(tmp, 'spec.json');
  fs.writeFileSync(
    specFile,
    JSON.stringify(
      containerSpec({ rootPath: 'busybox', args: ['sh', '-c', 'echo hello-from-python; read line; echo got:$line; exit 4'] }),
    ),
  );

  // Asynchronously, so the agent's output keeps being drained meanwhile.
  const r = await run(PYTHON, [CLIENT, agent.addr, path.join(tmp, 'stubs'), specFile], 90_000);
  const context = () => `python exit ${r.status} signal ${r.signal}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\n${exit || 'agent alive'}; agent output tail:\n${raw.split('\n').slice(-25).join('\n')}`;
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  assert.ok(line, `the Python client printed no JSON\n${context()}`);
  const out = JSON.parse(line) as Record<string, any>;
  summary = out;
  assert.equal(out.ok, true, `the Python client failed at ${out.step}: ${out.error}\n${context()}`);
  assert.equal(r.status, 0, context());

  assert.equal(out.negotiate.selected_version, 'v1');
  assert.ok(out.negotiate.protocol_versions.includes('v1'));
  assert.equal(out.init_stdout, 'hello-from-python\ngot:line-from-python\n');
  assert.equal(out.init_stdout_end, 'empty');
  assert.equal(out.stdin_written, 'line-from-python\n'.length);
  assert.equal(out.init_status, 4);
  assert.equal(out.exec_status, 7);
  assert.equal(out.exec_stdout, 'exec-out\npiped\n');
  assert.equal(out.exec_stderr, 'exec-err\n');
  assert.equal(out.not_found.code, 'NOT_FOUND');
  assert.match(out.not_found.details, /no-such-container/);
  assert.equal(out.removed, true);
  assert.equal(out.after_remove_code, 'NOT_FOUND');
  assert.equal(agent.alive(), true, 'the agent died during the test');
});

// The proto documents an empty read as the end of a stream: the agent must
// keep an exited exec until each stream's end has been delivered, and not
// answer NOT_FOUND to the read that would have returned it.
test('exec output ends with an empty read, as the proto documents', () => {
  assert.ok(summary?.ok, 'the main compatibility test did not get this far');
  assert.equal(summary.exec_stdout_end, 'empty', 'stdout of the exec ended with NOT_FOUND instead of an empty read');
  assert.equal(summary.exec_stderr_end, 'empty', 'stderr of the exec ended with NOT_FOUND instead of an empty read');
});

// An invalid id of 8 KiB and more: grpc C-core (grpcio) accepts at most 8 KiB
// of metadata, so a status that echoed the whole id reached it as
// RESOURCE_EXHAUSTED. The agent echoes a short excerpt; the channel stays usable.
test('an 8 KiB+ invalid id is INVALID_ARGUMENT for grpcio too, and the next call on the channel works', () => {
  assert.ok(summary?.ok, 'the main compatibility test did not get this far');
  assert.equal(summary.long_ids.length, 2);
  for (const entry of summary.long_ids as Array<Record<string, any>>) {
    assert.equal(entry.code, 'INVALID_ARGUMENT', JSON.stringify(entry));
    assert.ok(entry.details_length < 1024, JSON.stringify(entry));
    assert.equal(entry.next_code, 'NOT_FOUND', JSON.stringify(entry));
  }
});

// v2 through an independent stack: what the Python client recorded of its v2 lifecycle.
test('v2 from grpcio: ReadOutput from offsets, WriteInput retried once, events from a cursor, exit status, listing', () => {
  assert.ok(summary?.ok, 'the main compatibility test did not get this far');
  const v2 = summary.v2 as Record<string, any>;
  assert.equal(v2.selected_version, 'v2');
  assert.ok(v2.capabilities.includes('feature:error-details'));
  assert.deepEqual(v2.created, { state: 'CONTAINER_STATE_CREATED', init: 'init2', retry_same: true });
  assert.deepEqual(v2.write_offsets, [8, 8], 'a retried WriteInput (same request id) is applied once');
  const text = 'v2-hello\ngot:line-v2\n';
  assert.deepEqual(v2.stdout, { text, first_offset: 0, final_offset: text.length, eof: true, messages: Math.ceil(text.length / 4) + 1, contiguous: true });
  assert.deepEqual(v2.stdout_from_3, { ...v2.stdout_from_3, text: text.slice(3), first_offset: 3, final_offset: text.length, eof: true, contiguous: true });
  assert.equal(v2.stderr.text, 'v2-err\n');
  assert.deepEqual(v2.status, { code: 6, signal: 0, core_dumped: false, oom_killed: false, times_ordered: true });
  const events = v2.events as Array<Record<string, any>>;
  assert.ok(events.some((e) => e.kind === 'process_started' && e.exec_id === 'init2' && e.pid > 0), JSON.stringify(events));
  assert.ok(events.some((e) => e.kind === 'container_state' && e.container === v2.container_id && e.state === 'CONTAINER_STATE_RUNNING'));
  assert.deepEqual(events.at(-1), { ...events.at(-1), kind: 'process_exited', exec_id: 'init2', code: 6 });
  assert.deepEqual(v2.resumed_first, { seq: events.at(-1)!.seq, kind: 'process_exited' });
  assert.equal(v2.listed, true);
  assert.deepEqual(v2.get, { state: 'CONTAINER_STATE_STOPPED', init_exit_code: 6, stdin_offset: 8, stdout_end: text.length });
  assert.equal(v2.removed, true);
});

test('v2 errors from grpcio: google.rpc.Status in grpc-status-details-bin, decoded by field number, with an ErrorInfo', () => {
  assert.ok(summary?.ok, 'the main compatibility test did not get this far');
  const errors = summary.v2.errors as Record<string, Record<string, any>>;
  const expect = { not_found: ['NOT_FOUND', 'NOT_FOUND'], request_id_reused: ['ALREADY_EXISTS', 'REQUEST_ID_REUSED'], input_gap: ['OUT_OF_RANGE', 'OUT_OF_RANGE'], cursor_ahead: ['OUT_OF_RANGE', 'EVENT_CURSOR_OUT_OF_RANGE'] };
  for (const [name, [code, reason]] of Object.entries(expect)) {
    const e = errors[name]!;
    assert.equal(e.code, code, `${name}: ${JSON.stringify(e)}`);
    assert.ok(e.status_details, `${name}: no grpc-status-details-bin`);
    assert.equal(e.status_details.code, e.grpc_code, `${name}: google.rpc.Status.code is the status code`);
    assert.equal(e.status_details.message, e.details, `${name}: google.rpc.Status.message is the status message`);
    assert.equal(e.status_details.details.length, 1);
    assert.equal(e.status_details.details[0].type_url, 'type.googleapis.com/google.rpc.ErrorInfo');
    assert.equal(e.status_details.details[0].error_info.domain, 'agent');
    assert.equal(e.status_details.details[0].error_info.reason, reason, `${name}: ${JSON.stringify(e)}`);
  }
  assert.equal(errors.input_gap!.status_details.details[0].error_info.metadata.written, '8');
  assert.equal(errors.cursor_ahead!.status_details.details[0].error_info.metadata.oldest_seq, '1');
  // Whether Debian's python3-protobuf has google.rpc (it does not; the decoding above needs none).
  assert.equal(typeof summary.v2.google_rpc_status_pb2, 'boolean');
});

test("the newest archive's golden encodings, read by Python's protobuf: the same bytes and JSON", async (t) => {
  const release = [...releases].reverse().find((r) => fs.existsSync(path.join(r.dir, 'golden', 'index.json')));
  if (!release) {
    t.skip('no archived release has golden encodings yet');
    return;
  }
  const r = await run(PYTHON, [CLIENT, '--golden', path.join(release.dir, 'golden'), path.join(tmp, 'stubs')], 120_000);
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  assert.ok(line, `no JSON from the Python client:\n${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(line) as { ok: boolean; checked: number; problems: string[]; step?: string; error?: string };
  assert.equal(out.ok, true, `${out.step}: ${out.error}`);
  const index = JSON.parse(fs.readFileSync(path.join(release.dir, 'golden', 'index.json'), 'utf8')) as { messages: unknown[] };
  assert.equal(out.checked, index.messages.length);
  assert.deepEqual(out.problems, [], `release ${release.version}:\n${out.problems.join('\n')}`);
});
