// agentctl: call the agent from a shell. Commands are the RPC names;
// arguments are key=value pairs (field names as in the protos, or camelCase, values
// parsed as JSON when they parse, `@FILE` reads a file) or one JSON object.
//   agentctl --addr unix:///run/agent.sock CreateContainer container_id=c1 oci_spec_json=@config.json
import fs from 'node:fs';
import type { ServiceError } from '@grpc/grpc-js';
import * as grpc from '@grpc/grpc-js';
import { AgentV1Service } from '../protocol';
import { AgentClient, type V1Method } from './client';

const USAGE = `usage: agentctl [--addr ADDR] [--json] COMMAND [key=value ... | JSON]

  --addr ADDR   agent address: unix:///PATH, tcp://HOST:PORT or vsock://CID:PORT (env AGENTCTL_ADDR)
  --json        print the raw response as JSON
  --vm          boot the guest image (dist/guest/) in QEMU, run the command against the agent
                inside over its channel, then stop the VM (agent-ctl convention)
  --vm-shared DIR   with --vm: share DIR with the guest over 9p (tag kataShared)
  COMMAND       Negotiate, or any agent.v1 RPC name (case-insensitive), e.g.
                CreateContainer, ExecProcess, ReadStdout, WaitProcess, ListInterfaces
  agentctl list  prints every command

Values: numbers, booleans, arrays and objects are parsed as JSON; @FILE reads a file;
bytes fields (data) take text.`;

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

function v1Methods(): V1Method[] {
  return Object.keys(AgentV1Service.service) as V1Method[];
}

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
}

export async function run(argv: readonly string[], out: (s: string) => void, hooks: RunHooks = {}): Promise<number> {
  let addr = process.env.AGENTCTL_ADDR ?? 'unix:///run/agent/agent.sock';
  let json = false;
  let vm = false;
  let vmShared: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--addr') addr = argv[++i] ?? '';
    else if (a.startsWith('--addr=')) addr = a.slice(7);
    else if (a === '--json') json = true;
    else if (a === '--vm') vm = true;
    else if (a === '--vm-shared') vmShared = argv[++i];
    else if (a === '--help' || a === '-h') {
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
    out(['Negotiate', ...v1Methods()].join('\n'));
    return 0;
  }
  const method = v1Methods().find((m) => m.toLowerCase() === command.toLowerCase());
  if (!method && command.toLowerCase() !== 'negotiate') {
    out(`agentctl: unknown command ${command}; "agentctl list" shows them`);
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
    client = await AgentClient.connect(addr, { connectTimeout: booted ? 60 : 10 });
  } catch (err) {
    await booted?.stop();
    throw err;
  }
  try {
    const res = method ? await client.v1(method, toWire(parseArgs(words)) as never) : client.agent;
    const shown = readable(res);
    if (json) out(JSON.stringify(shown));
    else out(formatHuman(method ?? 'Negotiate', shown));
    return 0;
  } catch (err) {
    const e = err as ServiceError;
    out(`agentctl: ${method} failed: ${e.code !== undefined ? grpc.status[e.code] + ': ' : ''}${e.details ?? e.message}`);
    return 1;
  } finally {
    client.close();
    await booted?.stop();
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
