// The parts of a container spec that reach past the container into the
// guest kernel the agent shares: capabilities, devices, the device cgroup,
// sysctls, /proc paths, cgroup placement and mount propagation. Each is
// decided here, with the reason beside it; what is privileged is allowed
// only when the policy says so (containers.privileged).
//
// Allowed without asking, on purpose:
// - no seccomp profile: the VM is the sandbox's boundary, as in Kata (whose
//   runtime disables guest seccomp by default); a profile given is passed on;
// - rlimits, oomScoreAdj, noNewPrivileges false, uid 0: they act inside the
//   container's own limits (the kernel never OOM-kills init, the agent);
// - user and time namespaces, id mappings: more isolation, not less.
import fs from 'node:fs';
import path from 'node:path';
import { excerpt, invalidArgument } from '../errors';
import type { Policy } from '../policy/policy';
import { checkPrivileged } from '../policy/rules';

/**
 * Capabilities that reach the guest as a whole (kernel modules, raw devices,
 * the clock, every process via ptrace, mounts and namespaces of the agent's
 * views, BPF, the audit and LSM configuration, the kernel log).
 */
export const PRIVILEGED_CAPABILITIES: ReadonlySet<string> = new Set([
  'CAP_SYS_ADMIN', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_PTRACE', 'CAP_SYS_BOOT', 'CAP_SYS_TIME', 'CAP_SYS_PACCT',
  'CAP_MAC_ADMIN', 'CAP_MAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_BPF', 'CAP_PERFMON', 'CAP_SYSLOG', 'CAP_LINUX_IMMUTABLE',
  'CAP_AUDIT_CONTROL', 'CAP_AUDIT_READ', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_CHECKPOINT_RESTORE', 'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE', 'CAP_SYS_TTY_CONFIG',
]);

/** Character devices a container may have without privileges: null, zero, full, random, urandom, tty, ptmx, tun, fuse. */
const HARMLESS_DEVICES: ReadonlySet<string> = new Set(['c:1:3', 'c:1:5', 'c:1:7', 'c:1:8', 'c:1:9', 'c:5:0', 'c:5:1', 'c:5:2', 'c:10:200', 'c:10:229']);

/** /proc and /sys paths runtimes mask or make read-only: a spec that drops them is privileged, so they are put back. */
const DEFAULT_MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',
  '/proc/sched_debug', '/proc/scsi', '/sys/firmware',
];
const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

const CAPABILITY_SETS = ['bounding', 'effective', 'inheritable', 'permitted', 'ambient'] as const;

export interface PrivilegeContext {
  containerId: string;
  policy: Policy;
  /** Namespace types the spec has of its own (sysctls are judged by them). */
  ownNamespaces: ReadonlySet<string>;
  /** The agent's own cgroup (from /proc/self/cgroup); a seam for tests. */
  agentCgroup?: string;
}

/** Checks a process's capabilities (a container's init or an exec'd process). */
export function checkCapabilities(what: string, value: unknown, containerId: string, policy: Policy): void {
  if (value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidArgument(`${what}.capabilities must be an object`);
  for (const [set, list] of Object.entries(value as Record<string, unknown>)) {
    if (!(CAPABILITY_SETS as readonly string[]).includes(set)) throw invalidArgument(`${what}.capabilities.${excerpt(set, 40, { quote: false })} is not a capability set`);
    if (!Array.isArray(list)) throw invalidArgument(`${what}.capabilities.${set} must be an array`);
    for (const cap of list) {
      if (typeof cap !== 'string' || !/^CAP_[A-Z_]{1,40}$/.test(cap)) throw invalidArgument(`${what}.capabilities.${set}: ${excerpt(cap)} is not a capability name`);
      if (PRIVILEGED_CAPABILITIES.has(cap)) checkPrivileged(policy, `capability ${cap}`, containerId);
    }
  }
}

/**
 * The linux section's privileged parts. Returns it with the default masked
 * and read-only paths restored when the policy does not allow privileged
 * containers.
 */
export function checkLinux(linux: Record<string, unknown>, ctx: PrivilegeContext): Record<string, unknown> {
  const out = { ...linux };
  const privileged = (what: string) => checkPrivileged(ctx.policy, what, ctx.containerId);

  if (linux.devices !== undefined) {
    if (!Array.isArray(linux.devices)) throw invalidArgument('oci_spec_json.linux.devices must be an array');
    linux.devices.forEach((d, i) => {
      const dev = d as { path?: unknown; type?: unknown; major?: unknown; minor?: unknown };
      if (typeof dev !== 'object' || dev === null || typeof dev.path !== 'string' || !dev.path.startsWith('/') || dev.path.split('/').includes('..')) {
        throw invalidArgument(`oci_spec_json.linux.devices[${i}] needs an absolute path without ".."`);
      }
      const key = `${String(dev.type)}:${String(dev.major)}:${String(dev.minor)}`;
      if (!HARMLESS_DEVICES.has(key)) privileged(`device ${excerpt(dev.path)} (${key})`);
    });
  }

  const resources = linux.resources as { devices?: unknown } | undefined;
  if (resources?.devices !== undefined) {
    if (!Array.isArray(resources.devices)) throw invalidArgument('oci_spec_json.linux.resources.devices must be an array');
    for (const rule of resources.devices as Array<Record<string, unknown>>) {
      if (typeof rule !== 'object' || rule === null || rule.allow !== true) continue;
      const key = `${String(rule.type ?? 'a')}:${String(rule.major ?? '*')}:${String(rule.minor ?? '*')}`;
      if (!HARMLESS_DEVICES.has(key)) privileged(`device cgroup access to ${key}`);
    }
  }

  if (linux.sysctl !== undefined) {
    if (typeof linux.sysctl !== 'object' || linux.sysctl === null || Array.isArray(linux.sysctl)) {
      throw invalidArgument('oci_spec_json.linux.sysctl must be an object');
    }
    for (const key of Object.keys(linux.sysctl)) {
      if (!namespacedSysctl(key, ctx.ownNamespaces)) privileged(`sysctl ${excerpt(key)} (it is not in a namespace of the container's own)`);
    }
  }

  const propagation = linux.rootfsPropagation;
  if (propagation !== undefined && !['private', 'rprivate', 'slave', 'rslave', 'unbindable', 'runbindable', ''].includes(propagation as string)) {
    throw invalidArgument(`oci_spec_json.linux.rootfsPropagation ${excerpt(propagation)} is refused: shared propagation would carry the container's mounts into the agent's`);
  }

  if (linux.cgroupsPath !== undefined) checkCgroupsPath(linux.cgroupsPath, ctx);

  if (!ctx.policy.containers.privileged) {
    out.maskedPaths = union(linux.maskedPaths, DEFAULT_MASKED_PATHS, 'maskedPaths');
    out.readonlyPaths = union(linux.readonlyPaths, DEFAULT_READONLY_PATHS, 'readonlyPaths');
  }
  return out;
}

/** Sysctls that act inside a namespace the container has of its own (the kernel's list of namespaced ones). */
function namespacedSysctl(key: string, own: ReadonlySet<string>): boolean {
  if (/^net\./.test(key)) return own.has('network');
  if (/^(kernel\.(shm(all|max|mni)|shm_rmid_forced|msg(max|mnb|mni)|sem)|fs\.mqueue\.)/.test(key)) return own.has('ipc');
  if (/^kernel\.(hostname|domainname)$/.test(key)) return own.has('uts');
  return false;
}

function checkCgroupsPath(value: unknown, ctx: PrivilegeContext): void {
  if (typeof value !== 'string' || value.includes('\0') || value.split('/').includes('..')) {
    throw invalidArgument(`oci_spec_json.linux.cgroupsPath ${excerpt(value)} must be a path without ".."`);
  }
  // A container placed in the agent's cgroup or above it would set the agent's limits (and freeze it on pause).
  const agent = ctx.agentCgroup ?? ownCgroup();
  const wanted = path.posix.normalize(`/${value}`);
  if (agent !== null && (wanted === agent || agent.startsWith(wanted === '/' ? '/' : `${wanted}/`))) {
    throw invalidArgument(`oci_spec_json.linux.cgroupsPath ${excerpt(value)} is the agent's own cgroup (${agent}) or one above it; use a cgroup of the container's own`);
  }
}

function ownCgroup(): string | null {
  try {
    const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
    return line ? line.slice(3) : null;
  } catch {
    return null;
  }
}

function union(value: unknown, defaults: readonly string[], what: string): string[] {
  if (value !== undefined && !(Array.isArray(value) && value.every((p) => typeof p === 'string'))) {
    throw invalidArgument(`oci_spec_json.linux.${what} must be an array of strings`);
  }
  const given = (value as string[] | undefined) ?? [];
  return [...given, ...defaults.filter((p) => !given.includes(p))];
}
