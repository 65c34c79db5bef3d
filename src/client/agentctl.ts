// agentctl: call the agent from a shell. Commands are the RPC names (v1's or
// v2's, whichever the negotiated version has), plus `watch` (v2 events) and
// `attach` (a process's output, raw); arguments are key=value pairs (field
// names as in the protos, or camelCase, values parsed as JSON when they
// parse, `@FILE` reads a file) or one JSON object.
//   agentctl --addr unix:///run/agent.sock CreateContainer container_id=c1 oci_spec_json=@config.json
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { AgentV1Service, AgentV2Service } from '../protocol';
import { AgentCallError, AgentClient, type AgentEvent, type V1Method, type V2StreamMethod, type V2UnaryMethod } from './client';
import type { ProtocolVersion } from './errors';
import type { ExitStatus } from './exit-status';

const USAGE = `usage: agentctl [--addr ADDR] [--protocol 1|2] [--json] COMMAND [key=value ... | JSON]

  --addr ADDR     agent address: unix:///PATH, tcp://HOST:PORT or vsock://CID:PORT (env AGENTCTL_ADDR)
  --protocol N    speak protocol vN only (1 or 2); default: the highest both sides speak (v2, else v1)
  --require CAP   fail unless the agent reports capability CAP, e.g. feature:tty (repeatable)
  --json          print the raw response as JSON (streams and watch: one JSON object a line)
  --vm            boot the guest image (dist/guest/) in QEMU, run the command against the agent
                  inside over its channel, then stop the VM (agent-ctl convention)
  --vm-shared DIR   with --vm: share DIR with the guest over 9p (tag kataShared)

Commands:
  Negotiate       what the agent serves, and the version chosen
  RPC             any agent.v1 or agent.v2 RPC name (case-insensitive), e.g. CreateContainer,
                  ExecProcess, WaitProcess, ListInterfaces. A name both versions have is called in
                  the negotiated version (v2's WaitProcess answers status {code, signal, ...}, and
                  v2 names a container's init by its exec id). v1-only names (ReadStdout,
                  ReadStderr, WriteStdin, CloseStdin, GetOOMEvent) call v1 unless --protocol 2;
                  v2-only names (ReadOutput, WatchEvents, ListContainers, GetContainer,
                  ReleaseProcess) need v2. A stream prints one line per message.
  watch [--after SEQ] [--from-now] [--count N]
                  v2 WatchEvents, following: one line per event, until interrupted (or N events)
  attach CONTAINER [EXEC] [--stream stdout|stderr] [--offset N]
                  the process's output (the init's without EXEC) from offset N (default 0),
                  following it to the end, as raw bytes on stdout. v2: ReadOutput; v1: ReadStdout
                  or ReadStderr polls (v1 reads consume: no going back)
  upgrade --binary PATH [--sha256 HEX | --local FILE] [--timeout S]
  upgrade --upload FILE [--timeout S]
                  v2 UpgradeAgent: the agent checks and pre-flights PATH (as it sees it, inside its
                  shared directory), answers, and execs it in place; then this waits for the new
                  image (Discovery's image.upgrade_id) and prints each step and the blackout. The
                  sha256 is --sha256, or that of --local FILE (the same file as seen here), or of PATH.
                  With --upload, FILE (here) is first streamed to the agent (UploadAgentBinary):
                  for a guest that shares no directory
  list            every command, and the versions that have it

agentctl prints the protocol in use on stderr. Values: numbers, booleans, arrays and objects are
parsed as JSON; @FILE reads a file; bytes fields (data) take text.`;

/** Field names as the protos spell them; camelCase is accepted too. */
const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export function parseArgs(words: readonly string[]): Record<string, unknown> {
  if (words.length === 1 && words[0]!.trim().startsWith('{')) {
    return Object.fromEntries(Object.entries(JSON.parse(words[0]!) as object).map(([k, v]) => [snake(k), v]));
  }
  const out: Record<string, unknown> = {};
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`argument ${JSON.stringify(w)} is not key=value`);
    const key = snake(w.slice(0, eq));
    let raw = w.slice(eq + 1);
    if (raw.startsWith('@')) raw = fs.readFileSync(raw.slice(1), 'utf8');
    let value: unknown = raw;
    if (!key.endsWith('_json')) {
      try {
        value = JSON.parse(raw);
      } catch {
        value = raw;
      }
    }
    out[key] = value;
  }
  return out;
}

const v1Methods = () => Object.keys(AgentV1Service.service);
const v2Methods = () => Object.keys(AgentV2Service.service);
const V2_STREAMS = new Set(['ReadOutput', 'WatchEvents']);

/** Bytes fields arrive as text from the shell and leave as text when printable. */
function toWire(req: Record<string, unknown>): Record<string, unknown> {
  if (typeof req.data === 'string') return { ...req, data: Buffer.from(req.data) };
  return req;
}

function readable(res: unknown): unknown {
  return JSON.parse(JSON.stringify(res, (_k, v: unknown) => {
    if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') {
      return Buffer.from((v as { data: number[] }).data).toString('utf8');
    }
    return v;
  }));
}

/**
 * Which version's RPC a command name calls once `protocol` is negotiated: the
 * negotiated version's when it has the name; else v1's, unless v2 was forced;
 * a v2-only name stays v2 (the client then says it needs v2). An error message when none can.
 */
export function route(command: string, protocol: ProtocolVersion, forced: boolean): { version: ProtocolVersion; method: string } | { error: string } {
  const find = (names: string[]) => names.find((m) => m.toLowerCase() === command.toLowerCase());
  const v1 = find(v1Methods());
  const v2 = find(v2Methods());
  if (protocol === 'v2' && v2) return { version: 'v2', method: v2 };
  if (v1 && (protocol === 'v1' || !forced)) return { version: 'v1', method: v1 };
  if (v1) return { error: `${v1} is a v1 RPC and --protocol 2 was given` };
  if (v2) return { version: 'v2', method: v2 };
  return { error: `unknown command ${command}; "agentctl list" shows them` };
}

/** A VM booted for --vm: where its agent answers, and how to stop it. */
export interface BootedVm {
  agentAddr: string;
  stop(): Promise<void>;
}

export interface RunHooks {
  /**
   * Boots the guest for --vm. Only the host's agentctl has it (build/agentctl-host.ts):
   * the QEMU launcher never goes into the guest binary, whose `agent ctl` has no --vm.
   */
  bootVm?: (sharedDir: string | undefined) => Promise<BootedVm>;
  /** Diagnostics (the protocol in use, fallbacks): default stderr. */
  err?: (line: string) => void;
  /** Raw bytes (attach): default stdout. */
  stdout?: (bytes: Uint8Array) => void;
}

/** A command's own flags, taken out of its words. */
function takeFlags(words: string[], names: { value: string[]; bool: string[] }): { flags: Record<string, string | true>; rest: string[] } {
  const flags: Record<string, string | true> = {};
  const rest: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const [name, inline] = w.startsWith('--') ? (w.includes('=') ? [w.slice(2, w.indexOf('=')), w.slice(w.indexOf('=') + 1)] : [w.slice(2), undefined]) : [null, undefined];
    if (name !== null && names.value.includes(name)) {
      const v = inline ?? words[++i];
      if (v === undefined) throw new Error(`--${name} needs a value`);
      flags[name] = v;
    } else if (name !== null && names.bool.includes(name)) flags[name] = true;
    else if (name !== null) throw new Error(`unknown option --${name}`);
    else rest.push(w);
  }
  return { flags, rest };
}

function count(v: string | true | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new Error(`${what} takes a non-negative integer, not ${JSON.stringify(v)}`);
  return Number(v);
}

function describeStatus(s: ExitStatus | null): string {
  if (!s) return 'status=?';
  const how = s.signal !== null ? `signal=${s.signal}` : `code=${s.code}`;
  return [how, s.coreDumped ? 'core-dumped' : '', s.oomKilled ? 'oom-killed' : ''].filter(Boolean).join(' ');
}

/** One event as one line: "seq=7 at=2026-...Z process_exited container=c1 exec=e1 pid=42 code=0". */
export function formatEvent(e: AgentEvent): string {
  const head = `seq=${e.seq} at=${new Date(e.atMs).toISOString()} ${e.type}`;
  switch (e.type) {
    case 'process_started':
      return `${head} container=${e.containerId} exec=${e.execId} pid=${e.pid}`;
    case 'process_exited':
      return `${head} container=${e.containerId} exec=${e.execId} pid=${e.pid} ${describeStatus(e.status)}`;
    case 'container_state':
      return `${head} container=${e.containerId} state=${e.state}`;
    case 'oom_killed':
      return `${head} container=${e.containerId}`;
    default:
      return head;
  }
}

export async function run(argv: readonly string[], out: (s: string) => void, hooks: RunHooks = {}): Promise<number> {
  const err = hooks.err ?? ((line: string) => process.stderr.write(line.endsWith('\n') ? line : `${line}\n`));
  const rawOut = hooks.stdout ?? ((b: Uint8Array) => process.stdout.write(b));
  let addr = process.env.AGENTCTL_ADDR ?? 'unix:///run/agent/agent.sock';
  let json = false;
  let vm = false;
  let vmShared: string | undefined;
  let protocol: ProtocolVersion | undefined;
  const require: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    // agentctl's options anywhere (as always); anything else (a command's own --options too) is the command's.
    if (a === '--addr') addr = argv[++i] ?? '';
    else if (a.startsWith('--addr=')) addr = a.slice(7);
    else if (a === '--json') json = true;
    else if (a === '--vm') vm = true;
    else if (a === '--vm-shared') vmShared = argv[++i];
    else if (a === '--require') require.push(argv[++i] ?? '');
    else if (a.startsWith('--require=')) require.push(a.slice(10));
    else if (a === '--protocol' || a.startsWith('--protocol=')) {
      const v = a === '--protocol' ? argv[++i] : a.slice(11);
      const m = /^v?([12])$/.exec(v ?? '');
      if (!m) {
        out(`agentctl: --protocol takes 1 or 2 (or v1, v2), not ${JSON.stringify(v ?? '')}`);
        return 2;
      }
      protocol = `v${m[1]}` as ProtocolVersion;
    } else if (a === '--help' || a === '-h') {
      out(USAGE);
      return 0;
    } else rest.push(a);
  }
  const [command, ...words] = rest;
  if (!command) {
    out(USAGE);
    return 2;
  }
  if (command === 'list') {
    const v1 = new Set(v1Methods());
    const v2 = new Set(v2Methods());
    const rpcs = [...new Set([...v1, ...v2])].sort();
    out(['Negotiate', 'watch\tv2', 'attach\tv1 v2', 'upgrade\tv2', ...rpcs.map((m) => `${m}\t${[v1.has(m) ? 'v1' : '', v2.has(m) ? 'v2' : ''].filter(Boolean).join(' ')}`)].join('\n'));
    return 0;
  }
  const lower = command.toLowerCase();
  const special = lower === 'negotiate' || lower === 'watch' || lower === 'attach' || lower === 'upgrade';
  if (!special && 'error' in route(command, 'v2', false)) {
    out(`agentctl: unknown command ${command}; "agentctl list" shows them`);
    return 2;
  }
  // The command's own flags, checked before anything is booted or dialled.
  let cmdFlags: Record<string, string | true> = {};
  let args = words;
  try {
    if (lower === 'watch') ({ flags: cmdFlags, rest: args } = takeFlags(words, { value: ['after', 'count'], bool: ['from-now'] }));
    if (lower === 'attach') ({ flags: cmdFlags, rest: args } = takeFlags(words, { value: ['stream', 'offset'], bool: [] }));
    if (lower === 'upgrade') {
      ({ flags: cmdFlags, rest: args } = takeFlags(words, { value: ['binary', 'sha256', 'local', 'timeout', 'upload'], bool: [] }));
      const withBinary = typeof cmdFlags.binary === 'string';
      const withUpload = typeof cmdFlags.upload === 'string' && cmdFlags.sha256 === undefined && cmdFlags.local === undefined;
      if (withBinary === withUpload || args.length > 0) {
        out('agentctl: usage: upgrade --binary PATH [--sha256 HEX | --local FILE] [--timeout S] | upgrade --upload FILE [--timeout S]');
        return 2;
      }
      count(cmdFlags.timeout, '--timeout');
    }
    if ((lower === 'watch' && args.length > 0) || (lower === 'attach' && (args.length < 1 || args.length > 2))) {
      out(`agentctl: usage: ${lower === 'watch' ? 'watch [--after SEQ] [--from-now] [--count N]' : 'attach CONTAINER [EXEC] [--stream stdout|stderr] [--offset N]'}`);
      return 2;
    }
    if (cmdFlags.stream !== undefined && cmdFlags.stream !== 'stdout' && cmdFlags.stream !== 'stderr') throw new Error(`--stream takes stdout or stderr, not ${JSON.stringify(cmdFlags.stream)}`);
    count(cmdFlags.after, '--after');
    count(cmdFlags.count, '--count');
    count(cmdFlags.offset, '--offset');
  } catch (e) {
    out(`agentctl: ${(e as Error).message}`);
    return 2;
  }
  if (vm && !hooks.bootVm) {
    out('agentctl: --vm boots QEMU on the host and is not part of the guest binary; use dist/agentctl.cjs on the host');
    return 2;
  }
  const booted = vm ? await hooks.bootVm!(vmShared) : null;
  if (booted) addr = booted.agentAddr;
  let client: AgentClient;
  try {
    client = await AgentClient.connect(addr, {
      connectTimeout: booted ? 60 : 10,
      ...(protocol ? { protocols: [protocol] } : {}),
      require,
      log: (level, message) => {
        if (level === 'warn') err(`agentctl: ${message}`);
      },
    });
  } catch (e) {
    await booted?.stop();
    throw e;
  }
  err(`agentctl: protocol ${client.protocol} with agent ${client.agent.agent_version} at ${addr}${client.negotiated.fallback ? ` (fallback: ${client.negotiated.fallback})` : ''}`);
  let what = command;
  try {
    if (lower === 'negotiate') {
      const shown = readable(client.agent);
      out(json ? JSON.stringify(shown) : `${formatHuman('Negotiate', shown)}\nprotocol in use: ${client.protocol}`);
      return 0;
    }
    if (lower === 'watch') {
      what = 'watch';
      const limit = count(cmdFlags.count, '--count');
      const afterSeq = count(cmdFlags.after, '--after');
      if (limit === 0) return 0;
      let n = 0;
      for await (const e of client.watchEvents({ ...(afterSeq !== undefined ? { afterSeq } : {}), fromNow: cmdFlags['from-now'] === true })) {
        out(json ? JSON.stringify(e) : formatEvent(e));
        if (limit !== undefined && ++n >= limit) break;
      }
      return 0;
    }
    if (lower === 'attach') {
      what = 'attach';
      const [containerId, execId] = args as [string, string | undefined];
      const stream = (cmdFlags.stream as 'stdout' | 'stderr' | undefined) ?? 'stdout';
      let end = 0;
      for await (const c of client.readOutput({ containerId, ...(execId ? { execId } : {}), stream, offset: count(cmdFlags.offset, '--offset') ?? 0 })) {
        if (c.data.length > 0) rawOut(c.data);
        end = c.offset + c.data.length;
      }
      err(`agentctl: end of ${stream} at offset ${end}`);
      return 0;
    }
    if (lower === 'upgrade') {
      what = 'upgrade';
      return await upgrade(client, addr, cmdFlags, { out, err, json });
    }
    const r = route(command, client.protocol, protocol !== undefined);
    if ('error' in r) {
      out(`agentctl: ${r.error}`);
      return 2;
    }
    what = r.method;
    const request = toWire(parseArgs(args));
    if (r.version === 'v2' && V2_STREAMS.has(r.method)) {
      for await (const msg of client.v2Stream(r.method as V2StreamMethod, request as never)) {
        const shown = readable(msg);
        out(json ? JSON.stringify(shown) : JSON.stringify(shown));
      }
      return 0;
    }
    const res = r.version === 'v2'
      ? await client.v2(r.method as V2UnaryMethod, request as never)
      : await client.v1(r.method as V1Method, request as never);
    const shown = readable(res);
    if (json) out(JSON.stringify(shown));
    else out(formatHuman(r.method, shown));
    return 0;
  } catch (e) {
    if (e instanceof AgentCallError) out(`agentctl: ${what} failed: ${e.codeName}: ${e.details}${e.reason ? ` [${e.reason}]` : ''}`);
    else {
      const se = e as grpc.ServiceError;
      out(`agentctl: ${what} failed: ${se.code !== undefined ? grpc.status[se.code] + ': ' : ''}${se.details ?? se.message}`);
    }
    return 1;
  } finally {
    client.close();
    await booted?.stop();
  }
}

/**
 * agentctl upgrade: UpgradeAgent, then Negotiate on fresh connections until
 * the image that answers is the one this upgrade started (or one that counts
 * it as failed). The blackout is from the answer to the first call the new
 * image answered.
 */
async function upgrade(client: AgentClient, addr: string, flags: Record<string, string | true>, io: { out: (s: string) => void; err: (s: string) => void; json: boolean }): Promise<number> {
  let request: { binary_path: string; sha256: string; uploaded?: boolean };
  if (typeof flags.upload === 'string') {
    const t = performance.now();
    const sent = await client.uploadAgentBinary(flags.upload);
    io.err(`agentctl: uploaded ${flags.upload} (${sent.size} bytes, sha256 ${sent.sha256}) in ${(performance.now() - t).toFixed(0)} ms`);
    request = { binary_path: '', sha256: sent.sha256, uploaded: true };
  } else {
    const binary = flags.binary as string;
    const sha256 = typeof flags.sha256 === 'string'
      ? flags.sha256
      : createHash('sha256').update(fs.readFileSync(typeof flags.local === 'string' ? flags.local : binary)).digest('hex');
    request = { binary_path: binary, sha256 };
  }
  const failedBefore = client.agent.image?.failed_upgrades ?? 0;
  const t0 = performance.now();
  const plan = await client.v2('UpgradeAgent', request, { retry: true });
  const answered = performance.now();
  io.err(`agentctl: upgrade ${plan.upgrade_id}: ${plan.from_version} -> ${plan.to_version} (state format ${plan.state_format}), checked and pre-flighted in ${(answered - t0).toFixed(0)} ms; the agent drains and execs`);
  client.close();
  const deadline = Date.now() + (count(flags.timeout, '--timeout') ?? 60) * 1000;
  for (;;) {
    if (Date.now() > deadline) {
      io.out(`agentctl: upgrade failed: no agent answered as the new image within ${flags.timeout ?? 60} s`);
      return 1;
    }
    let c: AgentClient | null = null;
    try {
      c = await AgentClient.connect(addr, { connectTimeout: 2, protocols: ['v2', 'v1'] });
      const image = c.agent.image;
      if (image?.upgrade_id === plan.upgrade_id) {
        const blackout = performance.now() - answered;
        const result = { upgrade_id: plan.upgrade_id, from_version: plan.from_version, version: c.agent.agent_version, upgrades: image.upgrades, blackout_ms: Math.round(blackout) };
        io.out(io.json ? JSON.stringify(result) : `upgraded: agent ${c.agent.agent_version} serving (upgrade ${image.upgrades} of this agent process); blackout ${blackout.toFixed(0)} ms (answer to the first call answered by the new image)`);
        return 0;
      }
      if ((image?.failed_upgrades ?? 0) > failedBefore) {
        io.out(`agentctl: upgrade failed: the agent ${c.agent.agent_version} took its own state back (failed upgrades: ${image!.failed_upgrades}); its log says why`);
        return 1;
      }
    } catch {
      // Not serving yet: the exec is under way.
    } finally {
      c?.close();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function formatHuman(method: string, res: unknown): string {
  const entries = Object.entries(res as Record<string, unknown>);
  if (entries.length === 0) return `${method}: ok`;
  // Output of a process is shown as it is.
  if ((method === 'ReadStdout' || method === 'ReadStderr') && typeof (res as { data?: unknown }).data === 'string') {
    return (res as { data: string }).data;
  }
  return entries.map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n');
}
