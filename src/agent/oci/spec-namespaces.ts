// linux.namespaces of a container spec. A namespace given by path is joined
// by crun before the container starts, so a path is a way into whatever
// namespace it names: only the namespaces of the sandbox's own containers
// may be joined (a shared pid or network namespace between a pod's
// containers), never the agent's own — joining the agent's pid namespace
// shows the container every process of the guest, joining its mount
// namespace lets crun change the agent's mounts. Leaving a namespace out
// shares the guest's: the policy decides which (policy/rules.ts), and the
// mount namespace is always required.
import fs from 'node:fs';
import { excerpt, invalidArgument } from '../errors';
import type { Policy, ShareableNamespace } from '../policy/policy';
import { SHAREABLE_NAMESPACES } from '../policy/policy';
import { checkHostNamespace } from '../policy/rules';

/** OCI namespace type -> the name of its file under /proc/PID/ns. */
const NS_FILES: Readonly<Record<string, string>> = {
  pid: 'pid', network: 'net', mount: 'mnt', ipc: 'ipc', uts: 'uts', user: 'user', cgroup: 'cgroup', time: 'time',
};

export interface OciNamespace {
  type: string;
  path?: string;
}

export interface NamespaceContext {
  containerId: string;
  policy: Policy;
  /** Pids of the sandbox's running container processes: the namespaces a spec may join are theirs. */
  joinablePids(): readonly number[];
  /** The inode of /proc/PID/ns/NAME (null if unreadable); a seam for tests. */
  nsInode?(pid: number | 'self', name: string): number | null;
}

const statInode = (pid: number | 'self', name: string): number | null => {
  try {
    return fs.statSync(`/proc/${pid}/ns/${name}`).ino;
  } catch {
    return null;
  }
};

export function checkNamespaces(value: unknown, ctx: NamespaceContext): OciNamespace[] {
  if (!Array.isArray(value)) throw invalidArgument('oci_spec_json.linux.namespaces must be an array');
  const inode = ctx.nsInode ?? statInode;
  const seen = new Set<string>();
  const out = value.map((n, i): OciNamespace => {
    const what = `oci_spec_json.linux.namespaces[${i}]`;
    if (typeof n !== 'object' || n === null || Array.isArray(n)) throw invalidArgument(`${what} must be an object`);
    const { type, path, ...rest } = n as Record<string, unknown>;
    if (Object.keys(rest).length > 0) throw invalidArgument(`${what} has unknown fields ${excerpt(Object.keys(rest))}`);
    if (typeof type !== 'string' || !Object.hasOwn(NS_FILES, type)) {
      throw invalidArgument(`${what}.type ${excerpt(type)} is not one of ${Object.keys(NS_FILES).join(', ')}`);
    }
    if (seen.has(type)) throw invalidArgument(`${what}: the ${type} namespace is listed twice`);
    seen.add(type);
    if (path === undefined || path === '') return { type };
    if (typeof path !== 'string') throw invalidArgument(`${what}.path must be a string`);
    const name = NS_FILES[type]!;
    const m = /^\/proc\/(\d{1,10})\/ns\/([a-z]+)$/.exec(path);
    if (!m || m[2] !== name) {
      throw invalidArgument(`${what}.path ${excerpt(path)} must be /proc/PID/ns/${name} of one of the sandbox's containers`);
    }
    const pid = Number(m[1]);
    if (!ctx.joinablePids().includes(pid)) {
      throw invalidArgument(`${what}.path ${excerpt(path)}: process ${pid} is not a container of this sandbox; only their namespaces may be joined`);
    }
    // That container may itself share the guest's namespace: joining it would be joining the agent's.
    const target = inode(pid, name);
    if (target === null) throw invalidArgument(`${what}.path ${excerpt(path)}: the namespace is gone (the process exited)`);
    if (target === inode('self', name)) {
      throw invalidArgument(`${what}.path ${excerpt(path)} is the agent's own ${type} namespace (the container there shares it); it may not be joined`);
    }
    return { type, path };
  });
  if (!seen.has('mount')) {
    throw invalidArgument("oci_spec_json.linux.namespaces has no mount namespace: a container in the agent's mount namespace would change the agent's own mounts");
  }
  for (const ns of SHAREABLE_NAMESPACES) if (!seen.has(ns)) checkHostNamespace(ctx.policy, ns as ShareableNamespace, ctx.containerId);
  return out;
}
