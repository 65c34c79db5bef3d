// Checks on the OCI spec and process objects a client sends, and the few
// rewrites the agent makes before handing them to the runtime. Every field
// that names a path of the guest, a namespace, a hook or a privilege is
// decided in one of the spec-*.ts modules; this one puts them together.
// Fields not named there are passed to the runtime as they are: they act
// inside the container.
import path from 'node:path';
import { invalidArgument } from '../errors';
import { NO_POLICY, type Policy } from '../policy/policy';
import { checkExec } from '../policy/rules';
import { resolveWithin } from '../validate';
import { guestHooks, refuseSpecHooks, type OciHooks } from './spec-hooks';
import { checkMounts, type OciMount } from './spec-mounts';
import { checkNamespaces } from './spec-namespaces';
import { checkCapabilities, checkLinux } from './spec-privileges';

export type { OciMount } from './spec-mounts';

export interface OciProcess {
  terminal?: boolean;
  args: string[];
  env?: string[];
  cwd?: string;
  user?: { uid: number; gid: number; additionalGids?: number[] };
  consoleSize?: { height: number; width: number };
  [key: string]: unknown;
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  hooks?: OciHooks;
  linux?: Record<string, unknown>;
  [key: string]: unknown;
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

/** What a spec is checked against. */
export interface SpecContext {
  containerId: string;
  /** The root that root.path, bind sources and overlay layers must stay inside. */
  sharedDir: string;
  /** The agent's own files a spec may bind (the sandbox resolv.conf). */
  agentBinds?: readonly AgentBind[];
  policy?: Policy;
  /** Pids of the sandbox's running container processes, whose namespaces a spec may join. */
  joinablePids?: () => readonly number[];
  /** The image's hooks directory (agent.guest_hooks_dir); null for none. */
  guestHooksDir?: string | null;
}

/**
 * Parses a container spec and prepares it for the runtime: paths inside the
 * shared dir (except the agent's own files named in `agentBinds`), no spec
 * hooks (the image's guest hooks instead), namespaces joined only from the
 * sandbox's containers, privileged features only as the policy allows. The
 * terminal is handed over as a pass-through pty, so `terminal` becomes false
 * in the bundle and is returned separately.
 */
export function prepareSpec(raw: unknown, ctx: SpecContext): { spec: OciSpec; terminal: boolean } {
  const policy = ctx.policy ?? NO_POLICY;
  if (!isObject(raw)) throw invalidArgument('oci_spec_json must be a JSON object');
  if (typeof raw.ociVersion !== 'string') throw invalidArgument('oci_spec_json.ociVersion must be a string');
  const process = checkProcess('oci_spec_json.process', raw.process);
  checkCapabilities('oci_spec_json.process', process.capabilities, ctx.containerId, policy);
  if (!isObject(raw.root) || typeof raw.root.path !== 'string') {
    throw invalidArgument('oci_spec_json.root.path must be a string');
  }
  const rootPath = resolveWithin(ctx.sharedDir, raw.root.path, 'oci_spec_json.root.path');
  refuseSpecHooks(raw.hooks);
  const agentBinds = ctx.agentBinds ?? [];
  const mounts = raw.mounts === undefined ? undefined : checkMounts(raw.mounts, {
    privileged: policy.containers.privileged,
    resolveSource: (source, what) => resolveWithin(ctx.sharedDir, source, what),
    agentBind: (source, destination) => agentBinds.some((b) => b.source === source && b.destination === path.posix.normalize(destination)),
  });
  if (raw.linux !== undefined && !isObject(raw.linux)) throw invalidArgument('oci_spec_json.linux must be an object');
  const linuxIn = (raw.linux as Record<string, unknown> | undefined) ?? {};
  const namespaces = checkNamespaces(linuxIn.namespaces ?? [], {
    containerId: ctx.containerId,
    policy,
    joinablePids: ctx.joinablePids ?? (() => []),
  });
  const linux = checkLinux({ ...linuxIn, namespaces }, {
    containerId: ctx.containerId,
    policy,
    ownNamespaces: new Set(namespaces.map((n) => n.type)),
  });
  const hooks = guestHooks(ctx.guestHooksDir ?? null);
  const { hooks: _refused, ...rest } = raw;
  const terminal = process.terminal === true;
  const spec: OciSpec = {
    ...rest,
    ociVersion: raw.ociVersion,
    process: { ...process, terminal: false },
    root: { ...raw.root, path: rootPath },
    ...(mounts ? { mounts } : {}),
    linux,
    ...(hooks ? { hooks } : {}),
  } as OciSpec;
  return { spec, terminal };
}

/** An exec'd process: the same process checks as an init, its capabilities, and the policy's exec rules. */
export function checkExecProcess(
  raw: unknown,
  defaults: { env?: string[] },
  ctx: { containerId: string; policy?: Policy } = { containerId: '' },
): { process: OciProcess; terminal: boolean } {
  const policy = ctx.policy ?? NO_POLICY;
  const process = checkProcess('oci_process_json', raw, defaults);
  checkCapabilities('oci_process_json', process.capabilities, ctx.containerId, policy);
  checkExec(policy, process.args[0]!, ctx.containerId);
  return { process: { ...process, terminal: false }, terminal: process.terminal === true };
}
