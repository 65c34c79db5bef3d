// The mounts of a container spec, checked before crun sees them. crun mounts
// them inside the container's own mount namespace, but every path of the
// guest that a mount names — a bind source, an overlay's layers — is opened
// by crun in the agent's view of the file system: those must stay inside the
// roots the agent allows (the shared dir and the storages it mounted). File
// systems that reach a device, the host or the guest kernel's own controls
// come only through storages, which have their own checks (storage/).
//
// Each mount type is a row of MOUNT_TYPES, and each option is either a known
// flag or a data key that row allows: anything else is refused, so a new
// path-bearing option can never slip through unchecked.
import { excerpt, invalidArgument } from '../errors';
import { FLAG_OPTIONS } from '../storage/options';

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  [key: string]: unknown;
}

/** What the checks need to know of the sandbox. */
export interface MountContext {
  /**
   * Resolves a guest path a mount names inside the allowed roots (no "..",
   * no symlink out) or throws INVALID_ARGUMENT naming `what`.
   */
  resolveSource(path: string, what: string): string;
  /** A bind of one of the agent's own files (the sandbox resolv.conf): allowed as it is. */
  agentBind?(source: string, destination: string): boolean;
  /** The policy allows privileged containers (writable sysfs and cgroupfs). */
  privileged: boolean;
}

interface MountRule {
  /** Data keys (key=value or bare) this type takes besides the flags. */
  dataKeys: readonly string[];
  /** Data keys whose value names guest paths (overlay's layers): resolved inside the roots. */
  pathKeys?: readonly string[];
  /** Read-only unless the policy allows privileged containers: a writable one changes the whole guest. */
  readOnlyUnlessPrivileged?: string;
}

/**
 * Every mount type a container spec may use. Missing on purpose: block file
 * systems (ext4, xfs, ...: a device of the guest; storages mount them),
 * 9p/virtiofs/nfs (the host's shares; storages again), debugfs, tracefs,
 * securityfs, bpf, configfs, efivarfs, pstore, binfmt_misc and fusectl (the
 * guest kernel's own controls, shared with the agent).
 */
export const MOUNT_TYPES: Readonly<Record<string, MountRule>> = {
  bind: { dataKeys: [] },
  proc: { dataKeys: ['hidepid', 'gid', 'subset'] },
  sysfs: { dataKeys: [], readOnlyUnlessPrivileged: 'sysfs reaches the guest kernel\'s settings' },
  tmpfs: { dataKeys: ['size', 'nr_blocks', 'nr_inodes', 'mode', 'uid', 'gid', 'huge', 'mpol', 'noswap', 'inode32', 'inode64'] },
  devpts: { dataKeys: ['newinstance', 'ptmxmode', 'mode', 'gid', 'uid', 'max'] },
  mqueue: { dataKeys: [] },
  cgroup: { dataKeys: ['none', 'name', 'cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'blkio', 'perf_event', 'net_prio', 'hugetlb', 'pids', 'rdma', 'misc'],
    readOnlyUnlessPrivileged: 'a writable cgroup file system changes the guest\'s cgroups' },
  cgroup2: { dataKeys: ['nsdelegate', 'memory_recursiveprot', 'memory_localevents', 'favordynmods'],
    readOnlyUnlessPrivileged: 'a writable cgroup file system changes the guest\'s cgroups' },
  overlay: {
    dataKeys: ['lowerdir', 'upperdir', 'workdir', 'lowerdir+', 'datadir+', 'redirect_dir', 'index', 'xino', 'metacopy', 'volatile', 'userxattr', 'uuid', 'nfs_export'],
    pathKeys: ['lowerdir', 'upperdir', 'workdir', 'lowerdir+', 'datadir+'],
  },
};

/** Options crun takes beyond mount(8)'s flags: recursive flags (mount_setattr), copy-up and lookup behaviour, id maps. */
const CRUN_FLAGS = new Set([
  'rro', 'rrw', 'rnosuid', 'rsuid', 'rnodev', 'rdev', 'rnoexec', 'rexec', 'rnoatime', 'ratime', 'rnodiratime', 'rdiratime',
  'rrelatime', 'rnorelatime', 'rstrictatime', 'rnostrictatime', 'nosymfollow', 'rnosymfollow', 'symfollow', 'rsymfollow',
  'tmpcopyup', 'notmpcopyup', 'copy-symlink', 'src-nofollow', 'dest-nofollow', 'idmap', 'ridmap', 'lazytime', 'nolazytime',
  'mand', 'nomand', 'iversion', 'noiversion',
]);

/**
 * Propagation that would carry the container's mounts back into the agent's
 * own mount namespace (a bind from the shared dir marked shared): refused.
 */
const PROPAGATION_OUT = new Set(['shared', 'rshared']);

export function checkMounts(value: unknown, ctx: MountContext): OciMount[] {
  if (!Array.isArray(value)) throw invalidArgument('oci_spec_json.mounts must be an array');
  if (value.length > 1024) throw invalidArgument(`oci_spec_json.mounts has ${value.length} entries; at most 1024`);
  return value.map((m, i) => checkMount(m, `oci_spec_json.mounts[${i}]`, ctx));
}

function checkMount(m: unknown, what: string, ctx: MountContext): OciMount {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalidArgument(`${what} must be an object`);
  const mount = m as Record<string, unknown>;
  const destination = mount.destination;
  if (typeof destination !== 'string' || !destination.startsWith('/') || destination.includes('\0') || destination.split('/').includes('..')) {
    throw invalidArgument(`${what}.destination ${excerpt(destination)} must be an absolute path without ".."`);
  }
  if (mount.source !== undefined && typeof mount.source !== 'string') throw invalidArgument(`${what}.source must be a string`);
  if (mount.type !== undefined && typeof mount.type !== 'string') throw invalidArgument(`${what}.type must be a string`);
  if (mount.options !== undefined && !(Array.isArray(mount.options) && mount.options.every((o) => typeof o === 'string'))) {
    throw invalidArgument(`${what}.options must be an array of strings`);
  }
  const options = (mount.options as string[] | undefined ?? []).flatMap((o) => o.split(',')).filter((o) => o !== '');
  const isBind = mount.type === 'bind' || options.includes('bind') || options.includes('rbind');
  const type = isBind ? 'bind' : (mount.type as string | undefined) ?? '';
  const rule = Object.hasOwn(MOUNT_TYPES, type) ? MOUNT_TYPES[type]! : undefined;
  if (!rule) {
    throw invalidArgument(
      `${what}.type ${excerpt(mount.type)} is not allowed in a container spec (allowed: ${Object.keys(MOUNT_TYPES).join(', ')}); ` +
        'devices and shared file systems come in through storages',
    );
  }

  const out: OciMount = { ...(mount as OciMount) };
  const newOptions: string[] = [];
  for (const option of options) {
    if (option.includes('\0')) throw invalidArgument(`${what}.options contains NUL`);
    if (PROPAGATION_OUT.has(option)) {
      throw invalidArgument(`${what}.options: "${option}" propagation would carry the container's mounts into the agent's; use private or slave`);
    }
    if (Object.hasOwn(FLAG_OPTIONS, option) || CRUN_FLAGS.has(option)) {
      newOptions.push(option);
      continue;
    }
    const eq = option.indexOf('=');
    const key = eq < 0 ? option : option.slice(0, eq);
    if (!rule.dataKeys.includes(key)) {
      throw invalidArgument(`${what}.options: ${excerpt(option)} is not an option a ${type} mount may take here` +
        (rule.dataKeys.length ? ` (data options: ${rule.dataKeys.join(', ')})` : ''));
    }
    if (rule.pathKeys?.includes(key)) {
      const value = eq < 0 ? '' : option.slice(eq + 1);
      newOptions.push(`${key}=${resolvePathList(key, value, `${what}.options ${key}`, ctx)}`);
      continue;
    }
    newOptions.push(option);
  }

  if (type === 'bind') {
    if (typeof mount.source !== 'string') throw invalidArgument(`${what}.source is required for a bind mount`);
    if (!ctx.agentBind?.(mount.source, destination)) out.source = ctx.resolveSource(mount.source, `${what}.source`);
  }
  if (rule.readOnlyUnlessPrivileged && !ctx.privileged) {
    // Made read-only rather than refused: runtimes add sysfs and cgroup mounts to every spec.
    const last = [...newOptions].reverse().find((o) => o === 'ro' || o === 'rw');
    if (last !== 'ro') newOptions.push('ro');
  }
  if (mount.options !== undefined || newOptions.length > 0) out.options = newOptions;
  return out;
}

/** Overlay layer lists: "a:b:c" (":" escaped as "\:" inside a name), each layer resolved in the roots. */
function resolvePathList(key: string, value: string, what: string, ctx: MountContext): string {
  if (value === '') throw invalidArgument(`${what} names no directory`);
  const layers = key.startsWith('lowerdir') || key === 'datadir+' ? value.split(/(?<!\\):/) : [value];
  return layers.map((layer, i) => {
    const unescaped = layer.replace(/\\:/g, ':');
    const resolved = ctx.resolveSource(unescaped, layers.length > 1 ? `${what}[${i}]` : what);
    return resolved.replace(/:/g, '\\:');
  }).join(':');
}
