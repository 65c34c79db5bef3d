// The version matrix (docs/compatibility.md, "Release archives and the
// version matrix"), for every archived release in test/fixtures/releases/:
//
// - today's client (the typed API) against the release's agent: it negotiates
//   the newest version both speak (0.1.0 serves only v1), and a client forced
//   to each version they share runs a whole lifecycle; a recording proxy
//   between them (test/helpers/grpc-recorder.ts) shows the old agent never
//   received a call it cannot serve (grpc-js answers those UNIMPLEMENTED before
//   any handler could log them), and the old agent's log has no UNIMPLEMENTED
//   and no failure the test did not provoke;
// - the release's agentctl against today's agent, for every version that
//   agentctl speaks (0.1.0's only v1; later ones with --protocol N): the same
//   script of calls runs against the release's own agent and against today's,
//   and the answers must be the same, apart from what is expected to differ
//   (versions, builds, times, pids; capabilities and limits may only grow).
//
// Needs root, crun, busybox-static, unshare and `npm run build`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { fullName, loadProtos } from '../../build/golden.mjs';
import { AgentCallError, AgentClient, CLIENT_PROTOCOLS, ProtocolVersionError, type AgentEvent, type OutputChunk, type ProcessRef, type ProtocolVersion } from '../../src/client/client';
import { startAgent, type TestAgent } from '../helpers/agent-process';
import { startGrpcRecorder, type GrpcRecorder } from '../helpers/grpc-recorder';
import { releases, type Release } from '../helpers/releases';
import { containerSpec } from '../helpers/spec';
import { AgentV2Service } from '../../src/protocol';

const spec = (args: string[]) => containerSpec({ rootPath: 'busybox', args });
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });
const rank = (v: string) => Number(v.slice(1));

/** "/package.Service/Method" of every call the release's agent serves: Discovery and the services of its protocol versions. */
function servedPaths(r: Release): Set<string> {
  const root = loadProtos(path.join(r.dir, 'proto'));
  const services = ['agent.Discovery', ...r.info.protocols.map((p) => `agent.${p}.AgentService`)];
  const out = new Set<string>();
  for (const name of services) {
    const s = root.lookupService(name) as protobuf.Service;
    for (const m of s.methodsArray) out.add(`/${fullName(s)}/${m.name}`);
  }
  return out;
}

async function collect(gen: AsyncGenerator<OutputChunk>): Promise<{ text: string; chunks: OutputChunk[] }> {
  const chunks: OutputChunk[] = [];
  for await (const c of gen) chunks.push(c);
  return { text: Buffer.concat(chunks.map((c) => c.data)).toString(), chunks };
}

/** Events from a cursor until `done` says enough; fails after `ms`. */
async function eventsUntil(client: AgentClient, afterSeq: number, done: (seen: AgentEvent[]) => boolean, ms = 15000): Promise<AgentEvent[]> {
  const seen: AgentEvent[] = [];
  let timer: NodeJS.Timeout | undefined;
  const read = (async () => {
    for await (const e of client.watchEvents({ afterSeq })) {
      seen.push(e);
      if (done(seen)) break;
    }
    return seen;
  })();
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`events after ${afterSeq}: not there within ${ms} ms; seen ${JSON.stringify(seen)}`)), ms);
  });
  try {
    return await Promise.race([read, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A container's whole life through the typed API, the same calls on either
 * version: sandbox, init with stdin/stdout/stderr, an exec's output and code, a
 * signal, removal, an error. Returns the failures it provoked (for the log check).
 */
async function typedLifecycle(client: AgentClient, p: string): Promise<Array<{ rpc: string; container: string }>> {
  const v = client.protocol;
  await client.createSandbox({ hostname: `matrix-${p}`, dns: ['nameserver 10.0.2.3'] });
  const c = `${p}-life`;
  await client.createContainer({ containerId: c, ociSpec: spec(['sh', '-c', 'echo hello; read line; echo got:$line; echo oops >&2; exit 3']) });
  await client.startContainer({ containerId: c });
  const out = collect(client.readOutput({ containerId: c }));
  const err = collect(client.readOutput({ containerId: c, stream: 'stderr' }));
  assert.deepEqual(await client.writeInput({ containerId: c, data: 'line\n' }), { offset: 5 });
  await client.closeInput({ containerId: c });
  const stdout = await out;
  assert.equal(stdout.text, 'hello\ngot:line\n');
  assert.equal(stdout.chunks[0]!.offset, 0);
  assert.deepEqual(stdout.chunks.at(-1), { offset: 15, data: Buffer.alloc(0), eof: true });
  assert.equal((await err).text, 'oops\n');
  const status = await client.wait({ containerId: c });
  assert.deepEqual([status.code, status.signal, status.shellStatus, status.source, status.ambiguous], [3, null, 3, v, false]);

  const box = `${p}-box`;
  await client.createContainer({ containerId: box, execId: `${box}-init`, ociSpec: spec(['sleep', '1000']) });
  await client.startContainer({ containerId: box });
  await client.exec({ containerId: box, execId: 'e1', process: proc(['sh', '-c', 'echo exec-out; echo exec-err >&2; exit 5']) });
  assert.equal((await client.wait({ containerId: box, execId: 'e1' })).code, 5);
  assert.equal((await collect(client.readOutput({ containerId: box, execId: 'e1' }))).text, 'exec-out\n');
  assert.equal((await collect(client.readOutput({ containerId: box, execId: 'e1', stream: 'stderr' }))).text, 'exec-err\n');
  if (v === 'v2') {
    // v2 keeps output until the process is released: read again from an offset.
    const again = await collect(client.readOutput({ containerId: box, execId: 'e1', offset: 2 }));
    assert.equal(again.text, 'ec-out\n');
    assert.equal(again.chunks[0]!.offset, 2);
  }
  await client.exec({ containerId: box, execId: 'e2', process: proc(['sleep', '100']) });
  await client.signal({ containerId: box, execId: 'e2', signal: 'SIGTERM' });
  const term = await client.wait({ containerId: box, execId: 'e2' });
  assert.deepEqual([term.code, term.signal, term.shellStatus, term.ambiguous], [null, 15, 143, v === 'v1']);
  if (v === 'v2') {
    await collect(client.readOutput({ containerId: box, execId: 'e2' }));
    await client.releaseProcess({ containerId: box, execId: 'e1' });
    await client.releaseProcess({ containerId: box, execId: 'e2' });
  }
  await client.removeContainer({ containerId: box });
  await client.removeContainer({ containerId: c });
  await assert.rejects(client.startContainer({ containerId: c }), (e: unknown) => e instanceof AgentCallError && e.codeName === 'NOT_FOUND');
  return [{ rpc: 'StartContainer', container: c }];
}

/** v2 only: listing, one container's snapshot, events from a cursor with structured exit statuses. */
async function typedV2(client: AgentClient, p: string): Promise<void> {
  const c = `${p}-v2`;
  await client.createContainer({ containerId: c, ociSpec: spec(['sleep', '1000']) });
  await client.startContainer({ containerId: c });
  await client.exec({ containerId: c, execId: 'x', process: proc(['sh', '-c', 'exit 7']) });
  const isExit = (e: AgentEvent) => e.type === 'process_exited' && e.containerId === c && e.execId === 'x';
  const events = await eventsUntil(client, 0, (seen) => seen.some(isExit));
  const exited = events.find(isExit);
  assert.ok(exited && exited.type === 'process_exited' && exited.status?.code === 7 && exited.status.signal === null, JSON.stringify(events));
  assert.ok(events.some((e) => e.type === 'process_started' && e.containerId === c && e.execId === 'x' && e.seq < exited.seq));
  for (let i = 1; i < events.length; i++) assert.ok(events[i]!.seq > events[i - 1]!.seq, 'seqs increase');
  // From a cursor: the events after it, the first one the next.
  const resumed = await eventsUntil(client, exited.seq - 1, () => true);
  assert.equal(resumed[0]!.seq, exited.seq);
  assert.deepEqual(resumed[0], exited);
  const listed = (await client.listContainers()).find((x) => x.containerId === c);
  assert.equal(listed?.state, 'running');
  assert.equal(listed?.init?.execId, c);
  const info = await client.getContainer(c);
  assert.deepEqual(info.execs.map((e) => [e.execId, e.exitStatus?.code]), [['x', 7]]);
  await client.releaseProcess({ containerId: c, execId: 'x' });
  await client.removeContainer({ containerId: c });
}

// ---- agentctl transcripts ----

interface Step {
  /** What the transcript calls this step. */
  name: string;
  /** The step's answer as compared: JSON, or { failed: CODE }. */
  result: unknown;
}

/** Runs agentctl to its end, or kills it (by its pid, SIGTERM) after `timeoutMs`: stdout/stderr so far either way. */
function agentctl(ctl: string, addr: string, protocolFlag: string[], args: string[], timeoutMs = 60_000): Promise<{ exit: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [ctl, '--addr', addr, ...protocolFlag, '--json', ...args], { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
      const exit = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ exit, stdout, stderr });
    });
  });
}

/** Keys whose values are expected to differ between two agents (and runs): versions, builds, times, pids. */
const VARYING = /^(agent_version|agent_build|version|build|pid|started_at_unix_ms|exited_at_unix_ms|created_at_unix_ms|at_unix_ms|atMs|startedAtMs|exitedAtMs|seq)$/;

function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([k]) => !VARYING.test(k)).map(([k, x]) => [k, normalize(x)]));
  }
  return v;
}

/**
 * A ReadOutput stream's messages as what they carry: how the bytes were cut
 * into messages depends on timing, so the first offset, the bytes, the final
 * offset and the end; null when `v` is not such a stream.
 */
function outputOf(v: unknown): unknown {
  const msgs = Array.isArray(v) ? v : [v];
  const isChunk = (m: unknown) => !!m && typeof m === 'object' && 'offset' in m && 'data' in m && 'eof' in m;
  if (msgs.length === 0 || !msgs.every(isChunk)) return null;
  const chunks = msgs as Array<{ offset: number; data: string; eof: boolean }>;
  const last = chunks.at(-1)!;
  for (let i = 1; i < chunks.length; i++) {
    if (chunks[i]!.offset !== chunks[i - 1]!.offset + Buffer.byteLength(chunks[i - 1]!.data)) return { gap: chunks };
  }
  return { from: chunks[0]!.offset, text: chunks.map((c) => c.data).join(''), end: last.offset + Buffer.byteLength(last.data), eof: last.eof };
}

/**
 * An ExecProcess answer for a process that may end before the answer is
 * made: its snapshot without what that race decides (running, exit status,
 * how much output there was yet).
 */
function racingExit(v: unknown): unknown {
  const p = (v as { process?: Record<string, unknown> }).process;
  if (!p) return v;
  const { running: _r, exit_status: _e, stdout: _o, stderr: _s, ...settled } = p;
  return { ...(v as object), process: settled };
}

/** What can only grow from a release to today: capabilities, limits, storage drivers. Checked, then left out of the comparison. */
interface Grown {
  what: string;
  values: string[];
}

class Transcript {
  readonly steps: Step[] = [];
  readonly grown: Grown[] = [];
  constructor(
    private readonly ctl: string,
    private readonly addr: string,
    private readonly protocolFlag: string[],
  ) {}

  async raw(args: string[], timeoutMs?: number): Promise<{ exit: number; stdout: string; stderr: string }> {
    return agentctl(this.ctl, this.addr, this.protocolFlag, args, timeoutMs);
  }

  /** Runs one agentctl call; records its JSON answer (one object a line for a stream) or its failure code. */
  /** One agentctl call and its answer, normalized; `settle` keeps only what does not depend on timing. */
  async call(name: string, args: string[], settle: (result: unknown) => unknown = (x) => x): Promise<unknown> {
    const r = await this.raw(args);
    const failed = /agentctl: \S+ failed: ([A-Z_]+)/.exec(r.stdout + r.stderr);
    if (r.exit !== 0 || failed) {
      const result = { failed: failed?.[1] ?? `exit ${r.exit}: ${(r.stdout + r.stderr).trim().slice(0, 300)}` };
      this.steps.push({ name, result });
      return result;
    }
    const lines = r.stdout.split('\n').filter((l) => l.trim().startsWith('{') || l.trim().startsWith('['));
    const parsed = lines.map((l) => JSON.parse(l) as unknown);
    const result = parsed.length === 1 ? parsed[0] : parsed;
    this.steps.push({ name, result: settle(normalize(outputOf(result) ?? result)) });
    return result;
  }

  note(name: string, result: unknown): void {
    this.steps.push({ name, result });
  }
}

/** Reads v1 output by polling until the empty read: the text, recorded as one step. */
async function readV1(t: Transcript, name: string, method: 'ReadStdout' | 'ReadStderr', container: string, exec: string): Promise<string> {
  let text = '';
  for (let i = 0; i < 100; i++) {
    const r = await t.raw([method, `container_id=${container}`, `exec_id=${exec}`, 'len=65536']);
    if (r.exit !== 0) {
      t.note(name, { text, failed: /failed: ([A-Z_]+)/.exec(r.stdout)?.[1] ?? r.stdout.trim() });
      return text;
    }
    const data = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { data?: string }).data ?? '';
    if (data === '') break;
    text += data;
  }
  t.note(name, { text });
  return text;
}

function grownField(t: Transcript, what: string, values: unknown): void {
  t.grown.push({ what, values: (values as string[] | undefined) ?? [] });
}

/** The v1 script: a container's life through the RPCs, errors included. */
async function v1Script(t: Transcript, specFile: string): Promise<void> {
  const neg = (await t.call('Negotiate', ['Negotiate'])) as Record<string, unknown>;
  // Expected to differ: the versions served (today's has more); capabilities and limits may only grow.
  t.steps.pop();
  t.note('Negotiate', { selected_version: neg.selected_version });
  grownField(t, 'Negotiate capabilities', neg.capabilities);
  grownField(t, 'Negotiate limits', Object.keys((neg.limits as object) ?? {}));
  const details = (await t.call('GetGuestDetails', ['GetGuestDetails', 'mem_block_size=true', 'mem_hotplug_probe=true'])) as { agent_details?: Record<string, unknown> };
  t.steps.pop();
  const ad = details.agent_details ?? {};
  t.note('GetGuestDetails', { init_daemon: ad.init_daemon, device_handlers: ad.device_handlers });
  grownField(t, 'GetGuestDetails storage_handlers', ad.storage_handlers);
  await t.call('CreateSandbox', ['CreateSandbox', 'hostname=ctl-host', 'dns=["nameserver 10.0.2.3"]']);
  await t.call('CreateContainer c1', ['CreateContainer', 'container_id=c1', 'exec_id=c1', `oci_spec_json=@${specFile}`]);
  await t.call('StartContainer c1', ['StartContainer', 'container_id=c1']);
  const greeting = await t.raw(['ReadStdout', 'container_id=c1', 'exec_id=', 'len=6']);
  t.note('ReadStdout c1 (greeting)', JSON.parse(greeting.stdout.trim()));
  await t.call('WriteStdin c1', ['WriteStdin', 'container_id=c1', 'exec_id=', 'data=line\n']);
  await t.call('CloseStdin c1', ['CloseStdin', 'container_id=c1', 'exec_id=']);
  await readV1(t, 'stdout c1', 'ReadStdout', 'c1', '');
  await readV1(t, 'stderr c1', 'ReadStderr', 'c1', '');
  await t.call('WaitProcess c1', ['WaitProcess', 'container_id=c1', 'exec_id=']);
  await t.call('CreateContainer c2', ['CreateContainer', 'container_id=c2', `oci_spec_json=@${specFile.replace(/\.json$/, '-sleep.json')}`]);
  await t.call('StartContainer c2', ['StartContainer', 'container_id=c2']);
  await t.call('ExecProcess e1', ['ExecProcess', 'container_id=c2', 'exec_id=e1', `oci_process_json=${JSON.stringify(proc(['sh', '-c', 'echo exec-out; echo exec-err >&2; exit 5']))}`]);
  await t.call('WaitProcess e1', ['WaitProcess', 'container_id=c2', 'exec_id=e1']);
  await readV1(t, 'stdout e1', 'ReadStdout', 'c2', 'e1');
  await readV1(t, 'stderr e1', 'ReadStderr', 'c2', 'e1');
  await t.call('ExecProcess e2', ['ExecProcess', 'container_id=c2', 'exec_id=e2', `oci_process_json=${JSON.stringify(proc(['sleep', '100']))}`]);
  await t.call('SignalProcess e2', ['SignalProcess', 'container_id=c2', 'exec_id=e2', 'signal=15']);
  await t.call('WaitProcess e2', ['WaitProcess', 'container_id=c2', 'exec_id=e2']);
  const ps = (await t.call('ListProcesses c2', ['ListProcesses', 'container_id=c2', 'format=json'])) as { process_list?: string };
  t.steps.pop();
  // The process list's pids differ between runs: compare its commands.
  let commands: unknown = ps.process_list;
  try {
    const list = JSON.parse(ps.process_list ?? '') as unknown;
    // v1's json format is a list of pids: compare how many.
    commands = Array.isArray(list) ? list.map((e) => (typeof e === 'number' ? 'pid' : normalize(e))) : normalize(list);
  } catch {
    // Not JSON: keep the text without digits.
    commands = String(ps.process_list ?? '').replace(/\d+/g, 'N');
  }
  t.note('ListProcesses c2', commands);
  await t.call('TtyWinResize e1 (no terminal)', ['TtyWinResize', 'container_id=c2', 'exec_id=e1', 'row=10', 'column=20']);
  await t.call('StartContainer (unknown)', ['StartContainer', 'container_id=no-such']);
  await t.call('WaitProcess (unknown)', ['WaitProcess', 'container_id=no-such', 'exec_id=']);
  await t.call('ExecProcess (bad id)', ['ExecProcess', 'container_id=bad/id', 'exec_id=x', `oci_process_json=${JSON.stringify(proc(['true']))}`]);
  await t.call('SignalProcess (bad signal)', ['SignalProcess', 'container_id=c2', 'exec_id=', 'signal=1000']);
  await t.call('SetGuestDateTime (on a host)', ['SetGuestDateTime', 'sec=1', 'usec=0']);
  await t.call('RemoveContainer c2', ['RemoveContainer', 'container_id=c2']);
  await t.call('RemoveContainer c1', ['RemoveContainer', 'container_id=c1']);
  await t.call('StartContainer c1 (removed)', ['StartContainer', 'container_id=c1']);
  await t.call('DestroySandbox', ['DestroySandbox']);
}

/** The v2 script: the same life through v2's RPCs (streams from offsets, structured statuses, events, listing). */
async function v2Script(t: Transcript, specFile: string): Promise<void> {
  const neg = (await t.call('Negotiate', ['Negotiate'])) as Record<string, unknown>;
  t.steps.pop();
  t.note('Negotiate', { selected_version: neg.selected_version });
  grownField(t, 'Negotiate capabilities', neg.capabilities);
  await t.call('CreateSandbox', ['CreateSandbox', 'hostname=ctl-host', 'request_id=sb-1']);
  await t.call('CreateContainer c1', ['CreateContainer', 'container_id=c1', 'exec_id=c1', `oci_spec_json=@${specFile}`, 'request_id=cc-1']);
  await t.call('CreateContainer c1 (retried)', ['CreateContainer', 'container_id=c1', 'exec_id=c1', `oci_spec_json=@${specFile}`, 'request_id=cc-1']);
  await t.call('StartContainer c1', ['StartContainer', 'container_id=c1', 'request_id=sc-1']);
  await t.call('WriteInput c1', ['WriteInput', 'container_id=c1', 'exec_id=c1', 'offset=0', 'data=line\n', 'close=true', 'request_id=wi-1']);
  await t.call('ReadOutput c1 stdout', ['ReadOutput', 'container_id=c1', 'exec_id=c1', 'stream=OUTPUT_STREAM_STDOUT', 'offset=0']);
  await t.call('ReadOutput c1 stderr', ['ReadOutput', 'container_id=c1', 'exec_id=c1', 'stream=OUTPUT_STREAM_STDERR', 'offset=0']);
  await t.call('WaitProcess c1', ['WaitProcess', 'container_id=c1', 'exec_id=c1']);
  await t.call('ReadOutput c1 stdout from 3', ['ReadOutput', 'container_id=c1', 'exec_id=c1', 'stream=OUTPUT_STREAM_STDOUT', 'offset=3']);
  await t.call('GetContainer c1', ['GetContainer', 'container_id=c1']);
  await t.call('ReleaseProcess c1', ['ReleaseProcess', 'container_id=c1', 'exec_id=c1', 'request_id=rp-1']);
  await t.call('CreateContainer c2', ['CreateContainer', 'container_id=c2', `oci_spec_json=@${specFile.replace(/\.json$/, '-sleep.json')}`, 'request_id=cc-2']);
  await t.call('StartContainer c2', ['StartContainer', 'container_id=c2', 'request_id=sc-2']);
  await t.call('ExecProcess e1', ['ExecProcess', 'container_id=c2', 'exec_id=e1', `oci_process_json=${JSON.stringify(proc(['sh', '-c', 'echo exec-out; echo exec-err >&2; exit 5']))}`, 'request_id=ep-1'], racingExit);
  await t.call('WaitProcess e1', ['WaitProcess', 'container_id=c2', 'exec_id=e1']);
  await t.call('ReadOutput e1 stdout', ['ReadOutput', 'container_id=c2', 'exec_id=e1', 'stream=OUTPUT_STREAM_STDOUT', 'offset=0']);
  await t.call('ExecProcess e2', ['ExecProcess', 'container_id=c2', 'exec_id=e2', `oci_process_json=${JSON.stringify(proc(['sleep', '100']))}`, 'request_id=ep-2']);
  await t.call('SignalProcess e2', ['SignalProcess', 'container_id=c2', 'exec_id=e2', 'signal=15', 'request_id=sp-1']);
  await t.call('WaitProcess e2', ['WaitProcess', 'container_id=c2', 'exec_id=e2']);
  await t.call('ListContainers', ['ListContainers']);
  // Every event so far (watch follows for ever: stopped after a moment, the events being in the past).
  const watched = await t.raw(['watch', '--after', '0'], 2000);
  const events = watched.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.stringify(normalize(JSON.parse(l))));
  assert.ok(events.length >= 6, `watch printed ${events.length} events:\n${watched.stdout}${watched.stderr}`);
  // Today's agent may add event kinds; the release's events must all be there, in the same order.
  t.note('events', events);
  await t.call('StartContainer (unknown)', ['StartContainer', 'container_id=no-such', 'request_id=x-1']);
  await t.call('CreateContainer (request id reused)', ['CreateContainer', 'container_id=other', `oci_spec_json=@${specFile}`, 'request_id=cc-1']);
  await t.call('ExecProcess e3', ['ExecProcess', 'container_id=c2', 'exec_id=e3', `oci_process_json=${JSON.stringify(proc(['sleep', '100']))}`, 'request_id=ep-3']);
  await t.call('ReleaseProcess e3 (running)', ['ReleaseProcess', 'container_id=c2', 'exec_id=e3', 'request_id=rp-3']);
  await t.call('RemoveContainer c2', ['RemoveContainer', 'container_id=c2', 'request_id=rc-2']);
  await t.call('RemoveContainer c1', ['RemoveContainer', 'container_id=c1', 'request_id=rc-1']);
  await t.call('GetContainer c1 (removed)', ['GetContainer', 'container_id=c1']);
  await t.call('DestroySandbox', ['DestroySandbox', 'request_id=ds-1']);
}

/** Compares a release agent's transcript with today's: the same answers, and what may grow only grew. */
function compareTranscripts(old: Transcript, now: Transcript): void {
  assert.deepEqual(now.steps.map((s) => s.name), old.steps.map((s) => s.name));
  const differences: string[] = [];
  for (const [i, o] of old.steps.entries()) {
    const n = now.steps[i]!;
    if (o.name === 'events') {
      // Old events in order within today's (today may have more kinds).
      const today = n.result as string[];
      let j = 0;
      for (const e of o.result as string[]) {
        while (j < today.length && today[j] !== e) j++;
        if (j === today.length) differences.push(`events: the release's ${e} is missing or out of order today:\n  ${today.join('\n  ')}`);
      }
      continue;
    }
    try {
      assert.deepEqual(n.result, o.result);
    } catch {
      differences.push(`${o.name}: the release's agent answered ${JSON.stringify(o.result)}, today's ${JSON.stringify(n.result)}`);
    }
  }
  for (const [i, g] of old.grown.entries()) {
    const missing = g.values.filter((x) => !now.grown[i]!.values.includes(x));
    if (missing.length) differences.push(`${g.what}: today's lacks ${missing.join(', ')}`);
  }
  assert.deepEqual(differences, [], differences.join('\n'));
}

for (const r of releases) {
  const common = r.info.protocols.filter((p) => (CLIENT_PROTOCOLS as readonly string[]).includes(p)).sort((a, b) => rank(a) - rank(b)) as ProtocolVersion[];
  const newest = common.at(-1);
  const served = servedPaths(r);

  describe(`today's client against release ${r.version}'s agent`, () => {
    it('has a protocol version in common', () => assert.ok(newest, `release ${r.version} serves ${r.info.protocols.join(', ')}, this client speaks ${CLIENT_PROTOCOLS.join(', ')}`));

    for (const forced of [undefined, ...common]) {
      const label = forced ? `forced to ${forced}` : 'offering every version it speaks';
      describe(label, () => {
        let agent: TestAgent;
        let recorder: GrpcRecorder;
        let client: AgentClient;
        const provoked: Array<{ rpc: string; container: string }> = [];
        before(async () => {
          agent = await startAgent({ bundle: r.agent });
          recorder = await startGrpcRecorder(agent.addr.replace(/^unix:\/\//, ''), path.join(agent.dir, 'recorder.sock'));
          client = await AgentClient.connect(recorder.addr, forced ? { protocols: [forced] } : {});
        });
        after(async () => {
          client?.close();
          await recorder?.close();
          await agent?.stop();
        });

        it(`negotiates ${forced ?? newest}${forced ? '' : ', the newest both speak'}`, () => {
          assert.equal(client.protocol, forced ?? newest);
          assert.equal(client.negotiated.fallback, null);
          assert.equal(client.agent.agent_version, r.info.version);
          assert.deepEqual(client.agent.protocol_versions, r.info.protocols);
          assert.equal(client.agent.selected_version, forced ?? newest);
        });

        it('runs a whole lifecycle through the typed API', async () => {
          provoked.push(...(await typedLifecycle(client, forced ?? 'auto')));
        });

        if ((forced ?? newest) === 'v2') {
          it('v2: events from a cursor, listing, a snapshot, structured statuses, release', async () => {
            await typedV2(client, forced ?? 'auto');
          });
        } else {
          it('the v2-only calls are refused by the client, which sends nothing', async () => {
            const before = recorder.calls.length;
            await assert.rejects(client.listContainers(), ProtocolVersionError);
            await assert.rejects(client.getContainer('x'), ProtocolVersionError);
            await assert.rejects(client.releaseProcess({ containerId: 'x', execId: 'y' } as ProcessRef), ProtocolVersionError);
            await assert.rejects(client.watchEvents().next(), ProtocolVersionError);
            assert.equal(recorder.calls.length, before);
          });
        }

        it('destroys the sandbox', async () => {
          await client.destroySandbox();
        });

        it('the agent never received a call it cannot serve (the recorded calls; its log)', async () => {
          await new Promise((res) => setTimeout(res, 200));
          assert.ok(recorder.calls.length > 10, `only ${recorder.calls.length} calls recorded`);
          const unserved = recorder.calls.filter((c) => !served.has(c.path));
          assert.deepEqual(unserved, [], `calls release ${r.version} does not serve`);
          const unimplemented = recorder.calls.filter((c) => c.status === '12');
          assert.deepEqual(unimplemented, []);
          const lines = agent.logs();
          assert.deepEqual(lines.filter((l) => l.code === 'UNIMPLEMENTED' || /unimplemented|unknown (method|service)/i.test(String(l.msg ?? ''))), []);
          const failed = lines.filter((l) => l.msg === 'failed' && !provoked.some((p) => p.rpc === l.rpc && p.container === l.container));
          assert.deepEqual(failed, [], 'failures the test did not provoke');
          assert.ok(agent.alive());
        });

        if (!r.info.protocols.includes('v2')) {
          it('(the check can fail: a v2 call sent anyway is recorded as UNIMPLEMENTED, and the agent logs nothing of it)', async () => {
            const raw = new AgentV2Service(recorder.addr.replace(/^unix:\/\//, 'unix:'), grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Function>;
            try {
              const code = await new Promise<number | undefined>((res) => raw.ListContainers({}, (e: grpc.ServiceError | null) => res(e?.code)));
              assert.equal(code, grpc.status.UNIMPLEMENTED);
            } finally {
              raw.close();
            }
            const last = recorder.calls.at(-1)!;
            assert.deepEqual([last.path, last.status], ['/agent.v2.AgentService/ListContainers', '12']);
            assert.ok(!served.has(last.path));
            assert.ok(!agent.logs().some((l) => l.rpc === 'ListContainers'));
          });
        }
      });
    }
  });

  describe(`release ${r.version}'s agentctl against today's agent`, () => {
    let speaks: ProtocolVersion[] = [];
    let hasProtocolFlag = false;
    const agents: TestAgent[] = [];
    before(async () => {
      const help = await agentctl(r.agentctl, 'unix:///nonexistent', [], ['--help']);
      hasProtocolFlag = /--protocol/.test(help.stdout);
      // An agentctl without --protocol speaks the one version its release served (0.1.0: v1).
      speaks = hasProtocolFlag ? (r.info.protocols as ProtocolVersion[]) : [r.info.protocols.at(-1) as ProtocolVersion];
    });
    after(async () => {
      for (const a of agents) await a.stop();
    });

    for (const p of ['v1', 'v2'] as ProtocolVersion[]) {
      it(`${p}: a whole lifecycle, the same answers as from its own agent`, async (t) => {
        if (!speaks.includes(p)) {
          t.skip(`release ${r.version}'s agentctl does not speak ${p} (it speaks ${speaks.join(', ')})`);
          return;
        }
        const flag = hasProtocolFlag ? ['--protocol', p.slice(1)] : [];
        const run = async (bundle: string | undefined) => {
          const agent = await startAgent(bundle ? { bundle } : {});
          agents.push(agent);
          const specFile = path.join(agent.dir, 'spec.json');
          fs.writeFileSync(specFile, JSON.stringify(spec(['sh', '-c', 'echo hello; read line; echo got:$line; echo oops >&2; exit 3'])));
          fs.writeFileSync(path.join(agent.dir, 'spec-sleep.json'), JSON.stringify(spec(['sleep', '1000'])));
          const transcript = new Transcript(r.agentctl, agent.addr, flag);
          await (p === 'v1' ? v1Script : v2Script)(transcript, specFile);
          assert.ok(agent.alive());
          return transcript;
        };
        const old = await run(r.agent);
        const now = await run(undefined);
        if (process.env.MATRIX_DUMP) console.log(JSON.stringify({ old: old.steps, now: now.steps }, null, 1));
        // Steps named "(...)" are meant to fail; every other step must have worked on the release's own agent.
        const broken = old.steps.filter((s) => !s.name.includes('(') && s.result && typeof s.result === 'object' && 'failed' in (s.result as object));
        assert.deepEqual(broken, [], `steps that failed against release ${r.version}'s own agent`);
        const refused = old.steps.filter((s) => s.name.includes('(') && s.name !== 'ReadStdout c1 (greeting)' && s.name !== 'CreateContainer c1 (retried)');
        assert.ok(refused.every((s) => (s.result as { failed?: string }).failed), `steps meant to fail that did not: ${JSON.stringify(refused)}`);
        // The script itself says what it did: the release's agent must have run the lifecycle.
        const byName = Object.fromEntries(old.steps.map((s) => [s.name, s.result]));
        if (p === 'v1') {
          assert.deepEqual(byName['Negotiate'], { selected_version: 'v1' });
          assert.deepEqual(byName['stdout c1'], { text: 'got:line\n' });
          assert.deepEqual(byName['WaitProcess c1'], { status: 3 });
          assert.deepEqual(byName['WaitProcess e2'], { status: 143 });
        } else {
          assert.deepEqual(byName['Negotiate'], { selected_version: 'v2' });
          assert.equal((byName['WaitProcess c1'] as { status: { code: number } }).status.code, 3);
          assert.equal((byName['WaitProcess e2'] as { status: { signal: number } }).status.signal, 15);
        }
        compareTranscripts(old, now);
      });
    }
  });
}
