// Checks on the OCI spec and process objects a client sends, and the few
// rewrites the agent makes before handing them to the runtime.
import path from 'node:path';
import { invalidArgument } from '../errors';
import { resolveWithin } from '../validate';

export interface OciProcess {
  terminal?: boolean;
  args: string[];
  env?: string[];
  cwd?: string;
  user?: { uid: number; gid: number; additionalGids?: number[] };
  consoleSize?: { height: number; width: number };
  [key: string]: unknown;
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  linux?: Record<string, unknown>;
  [key: string]: unknown;
}

function parseJson(what: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates an OCI process; `what` names it in errors. Fills cwd and user defaults. */
export function checkProcess(what: string, value: unknown, defaults: { env?: string[] } = {}): OciProcess {
  if (!isObject(value)) throw invalidArgument(`${what} must be a JSON object`);
  const args = value.args;
  if (!Array.isArray(args) || args.length === 0 || !args.every((a) => typeof a === 'string')) {
    throw invalidArgument(`${what}.args must be a non-empty array of strings`);
  }
  if (value.env !== undefined && !(Array.isArray(value.env) && value.env.every((e) => typeof e === 'string'))) {
    throw invalidArgument(`${what}.env must be an array of strings`);
  }
  if (value.cwd !== undefined && (typeof value.cwd !== 'string' || !value.cwd.startsWith('/'))) {
    throw invalidArgument(`${what}.cwd must be an absolute path`);
  }
  if (value.terminal !== undefined && typeof value.terminal !== 'boolean') {
    throw invalidArgument(`${what}.terminal must be a boolean`);
  }
  return {
    ...value,
    args: args as string[],
    cwd: (value.cwd as string | undefined) ?? '/',
    user: (value.user as OciProcess['user']) ?? { uid: 0, gid: 0 },
    env: (value.env as string[] | undefined) ?? defaults.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
  };
}

/** A bind mount the agent itself provides: exactly this source at exactly this destination. */
export interface AgentBind {
  source: string;
  destination: string;
}

/**
 * Parses a container spec and prepares it for the runtime: the root file
 * system and bind-mount sources must lie inside `sharedDir`, except the
 * agent's own files named in `agentBinds` (the sandbox resolv.conf); the
 * terminal is handed over as a pass-through pty, so `terminal` becomes false
 * in the bundle and is returned separately.
 */
export function prepareSpec(
  text: string,
  sharedDir: string,
  agentBinds: readonly AgentBind[] = [],
): { spec: OciSpec; terminal: boolean } {
  const raw = parseJson('oci_spec_json', text);
  if (!isObject(raw)) throw invalidArgument('oci_spec_json must be a JSON object');
  if (typeof raw.ociVersion !== 'string') throw invalidArgument('oci_spec_json.ociVersion must be a string');
  const process = checkProcess('oci_spec_json.process', raw.process);
  if (!isObject(raw.root) || typeof raw.root.path !== 'string') {
    throw invalidArgument('oci_spec_json.root.path must be a string');
  }
  const rootPath = resolveWithin(sharedDir, raw.root.path, 'oci_spec_json.root.path');
  const mounts = raw.mounts === undefined ? undefined : checkMounts(raw.mounts, sharedDir, agentBinds);
  const terminal = process.terminal === true;
  const spec: OciSpec = {
    ...raw,
    ociVersion: raw.ociVersion,
    process: { ...process, terminal: false },
    root: { ...raw.root, path: rootPath },
    ...(mounts ? { mounts } : {}),
  } as OciSpec;
  return { spec, terminal };
}

export function parseProcess(text: string, defaults: { env?: string[] }): { process: OciProcess; terminal: boolean } {
  const process = checkProcess('oci_process_json', parseJson('oci_process_json', text), defaults);
  return { process: { ...process, terminal: false }, terminal: process.terminal === true };
}

function checkMounts(value: unknown, sharedDir: string, agentBinds: readonly AgentBind[]): OciMount[] {
  if (!Array.isArray(value)) throw invalidArgument('oci_spec_json.mounts must be an array');
  return value.map((m, i) => {
    const what = `oci_spec_json.mounts[${i}]`;
    if (!isObject(m) || typeof m.destination !== 'string' || !m.destination.startsWith('/')) {
      throw invalidArgument(`${what}.destination must be an absolute path`);
    }
    const options = Array.isArray(m.options) ? (m.options as string[]) : [];
    const isBind = m.type === 'bind' || options.includes('bind') || options.includes('rbind');
    if (!isBind) return m as unknown as OciMount;
    if (typeof m.source !== 'string') throw invalidArgument(`${what}.source is required for a bind mount`);
    const destination = path.posix.normalize(m.destination);
    if (agentBinds.some((b) => b.source === m.source && b.destination === destination)) return m as unknown as OciMount;
    return { ...(m as unknown as OciMount), source: resolveWithin(sharedDir, m.source, `${what}.source`) };
  });
}
