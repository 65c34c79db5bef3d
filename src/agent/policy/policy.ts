// The operator's policy: a file in the guest image (agent.policy= names
// another) saying which RPCs of which protocol version are allowed, and
// argument rules for the dangerous ones — where CopyFile may write, which
// storages may be mounted where, whether processes may be exec'd into
// containers, and which container spec features (namespaces shared with the
// guest, privileged settings) are allowed. It sits on top of the agent's own
// checks, which hold with or without a policy. A denial is PERMISSION_DENIED
// naming the rule. Like qemu-ga's allow/block lists and Kata's agent policy,
// but data only: no policy language to run.
//
// The file is JSON, strictly read: an unknown key or a wrong type is an error
// naming the key, so a typo never silently widens or narrows what is allowed.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { AgentError } from '../errors';

/**
 * Namespaces a container spec may leave out, sharing the guest's (the
 * agent's) own. A container without a user or time namespace is the common
 * case and shares nothing of the agent's that these guard; without a mount
 * namespace it would change the agent's own mounts, which no policy allows.
 */
export const SHAREABLE_NAMESPACES = ['network', 'cgroup', 'pid', 'ipc', 'uts'] as const;
export type ShareableNamespace = (typeof SHAREABLE_NAMESPACES)[number];

export interface RpcRule {
  /** Protocol versions ("v1") or ["*"]. "stable" is agent.Discovery. */
  protocols: string[];
  /** Method names ("CopyFile") or ["*"]. */
  methods: string[];
  action: 'allow' | 'deny';
  /** Why, for the denial message. */
  why?: string;
}

export interface Policy {
  /** Where it came from: a file path, or "none". */
  source: string;
  /** sha256 of the file's bytes ("sha256:HEX"); empty without a policy. */
  digest: string;
  loaded: boolean;
  /** Why the configured policy could not be used; the policy then denies all it governs. */
  error?: string;
  rpcs: { default: 'allow' | 'deny'; rules: RpcRule[] };
  /** Absolute path prefixes CopyFile may write under (inside the shared dir); null: anywhere the agent allows. */
  copyFilePaths: string[] | null;
  /** Storage drivers allowed; null: every driver. */
  storageDrivers: string[] | null;
  /** Absolute path prefixes storages may be mounted under; null: anywhere the agent allows. */
  storageMountPoints: string[] | null;
  /** Whether ExecProcess may start processes in containers, and which programs (args[0], exact); null: any. */
  exec: { allowed: boolean; commands: string[] | null };
  containers: {
    /** Namespaces a spec may share with the guest by leaving them out. */
    hostNamespaces: readonly ShareableNamespace[];
    /**
     * Privileged containers: capabilities that reach the guest kernel
     * (CAP_SYS_ADMIN, CAP_SYS_MODULE, ...), writable sysfs and cgroupfs,
     * devices beyond the harmless ones, the device cgroup's allow-all, and
     * specs that drop the default masked and read-only /proc paths.
     */
    privileged: boolean;
  };
}

/** No policy file: the agent's own checks only. */
export const NO_POLICY: Policy = {
  source: 'none',
  digest: '',
  loaded: false,
  rpcs: { default: 'allow', rules: [] },
  copyFilePaths: null,
  storageDrivers: null,
  storageMountPoints: null,
  exec: { allowed: true, commands: null },
  containers: { hostNamespaces: SHAREABLE_NAMESPACES, privileged: true },
};

/**
 * A configured policy that cannot be read: fail closed. Every RPC a policy
 * governs is denied (Discovery and health still answer, and say why), so an
 * operator's broken file never turns into "everything allowed".
 */
export function unusablePolicy(source: string, error: string): Policy {
  return {
    source,
    digest: '',
    loaded: false,
    error,
    rpcs: { default: 'deny', rules: [] },
    copyFilePaths: [],
    storageDrivers: [],
    storageMountPoints: [],
    exec: { allowed: false, commands: [] },
    containers: { hostNamespaces: [], privileged: false },
  };
}

/**
 * The policy for configured `file`: loaded; none when the file is the
 * default one and absent (a development host); fail-closed when it cannot be
 * used. `explicit` says whether someone named the file.
 */
export function choosePolicy(file: string, explicit: boolean): Policy {
  if (!explicit && !fs.existsSync(file)) return NO_POLICY;
  try {
    return loadPolicy(file);
  } catch (err) {
    return unusablePolicy(file, (err as Error).message);
  }
}

/** A policy file that cannot be used: what and where. */
export class PolicyError extends Error {}

/** The error every denial is: PERMISSION_DENIED at the RPC boundary, naming the rule. */
export function denied(policy: Policy, rule: string, what: string): AgentError {
  if (policy.error) {
    return new AgentError('permission-denied', `${what} is denied: the agent policy ${policy.source} could not be used (${policy.error}); fix the file and restart the agent`,
      { reason: 'POLICY_UNUSABLE', metadata: { policy: policy.source } });
  }
  return new AgentError('permission-denied', `${what} is denied by the agent policy (${policy.source}, rule ${rule})`,
    { reason: 'POLICY_DENIED', metadata: { policy: policy.source, rule: rule.split(':')[0]!, digest: policy.digest } });
}

export function loadPolicy(file: string): Policy {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new PolicyError(`cannot read the policy file ${file}: ${(err as Error).message}`);
  }
  return parsePolicy(bytes, file);
}

export function parsePolicy(bytes: Buffer, source: string): Policy {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new PolicyError(`policy ${source} is not valid JSON: ${(err as Error).message}`);
  }
  const r = new Reader(source);
  const top = r.object(raw, '', ['format', 'description', 'rpcs', 'copy_file', 'storages', 'exec', 'containers']);
  if (top.format !== 1) throw new PolicyError(`policy ${source}: "format" must be 1 (the only policy format this agent reads)`);
  if (top.description !== undefined) r.string(top.description, 'description');

  const rpcs = top.rpcs === undefined ? {} : r.object(top.rpcs, 'rpcs', ['default', 'rules']);
  const rules = rpcs.rules === undefined ? [] : r.array(rpcs.rules, 'rpcs.rules').map((x, i): RpcRule => {
    const key = `rpcs.rules[${i}]`;
    const rule = r.object(x, key, ['protocols', 'methods', 'action', 'why']);
    return {
      protocols: r.strings(rule.protocols, `${key}.protocols`, /^(\*|stable|v\d+)$/),
      methods: r.strings(rule.methods, `${key}.methods`, /^(\*|[A-Z][A-Za-z0-9]*)$/),
      action: r.choice(rule.action, `${key}.action`, ['allow', 'deny'] as const),
      ...(rule.why !== undefined ? { why: r.string(rule.why, `${key}.why`) } : {}),
    };
  });

  const copy = top.copy_file === undefined ? {} : r.object(top.copy_file, 'copy_file', ['paths']);
  const storages = top.storages === undefined ? {} : r.object(top.storages, 'storages', ['drivers', 'mount_points']);
  const exec = top.exec === undefined ? {} : r.object(top.exec, 'exec', ['allowed', 'commands']);
  const containers = top.containers === undefined ? {} : r.object(top.containers, 'containers', ['host_namespaces', 'privileged']);
  const hostNamespaces = containers.host_namespaces === undefined
    ? []
    : r.strings(containers.host_namespaces, 'containers.host_namespaces', /^[a-z]+$/).map((ns) => {
      if (ns === 'mount') {
        throw new PolicyError(`policy ${source}: containers.host_namespaces may not name "mount": a container in the agent's mount namespace would change the agent's own mounts`);
      }
      if (!(SHAREABLE_NAMESPACES as readonly string[]).includes(ns)) {
        throw new PolicyError(`policy ${source}: containers.host_namespaces: "${ns}" is not one of ${SHAREABLE_NAMESPACES.join(', ')}`);
      }
      return ns as ShareableNamespace;
    });

  return {
    source,
    digest: `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`,
    loaded: true,
    rpcs: { default: rpcs.default === undefined ? 'allow' : r.choice(rpcs.default, 'rpcs.default', ['allow', 'deny'] as const), rules },
    copyFilePaths: copy.paths === undefined ? null : r.strings(copy.paths, 'copy_file.paths', /^\//),
    storageDrivers: storages.drivers === undefined ? null : r.strings(storages.drivers, 'storages.drivers', /^[a-z0-9-]+$/),
    storageMountPoints: storages.mount_points === undefined ? null : r.strings(storages.mount_points, 'storages.mount_points', /^\//),
    exec: {
      allowed: exec.allowed === undefined ? true : r.boolean(exec.allowed, 'exec.allowed'),
      commands: exec.commands === undefined ? null : r.strings(exec.commands, 'exec.commands', /^\S+$/),
    },
    containers: {
      hostNamespaces,
      privileged: containers.privileged === undefined ? false : r.boolean(containers.privileged, 'containers.privileged'),
    },
  };
}

/** Typed reads of the JSON, each error naming the key. */
class Reader {
  constructor(private readonly source: string) {}

  private fail(key: string, what: string): never {
    throw new PolicyError(`policy ${this.source}: ${key || 'the top level'} ${what}`);
  }

  object(v: unknown, key: string, allowed: readonly string[]): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(key, 'must be an object');
    const o = v as Record<string, unknown>;
    const unknown = Object.keys(o).filter((k) => !allowed.includes(k));
    if (unknown.length > 0) this.fail(key, `has unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (known: ${allowed.join(', ')})`);
    return o;
  }

  array(v: unknown, key: string): unknown[] {
    if (!Array.isArray(v)) this.fail(key, 'must be an array');
    return v;
  }

  string(v: unknown, key: string): string {
    if (typeof v !== 'string') this.fail(key, 'must be a string');
    return v;
  }

  strings(v: unknown, key: string, pattern: RegExp): string[] {
    return this.array(v, key).map((x, i) => {
      const s = this.string(x, `${key}[${i}]`);
      if (!pattern.test(s)) this.fail(`${key}[${i}]`, `${JSON.stringify(s.slice(0, 80))} does not match ${pattern}`);
      return s;
    });
  }

  boolean(v: unknown, key: string): boolean {
    if (typeof v !== 'boolean') this.fail(key, 'must be true or false');
    return v;
  }

  choice<T extends string>(v: unknown, key: string, choices: readonly T[]): T {
    if (!choices.includes(v as T)) this.fail(key, `must be one of ${choices.join(', ')}`);
    return v as T;
  }
}
