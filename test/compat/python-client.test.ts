// Compatibility: an independent Python client (Debian's python3-grpcio and
// python3-protobuf, stubs generated from proto/ by protoc at test time) drives
// the bundled agent through a container's life cycle. Missing Python modules
// or protoc plugins fail the test with the Debian package to install.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { REPO, startAgent, type TestAgent } from '../helpers/agent-process';
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
