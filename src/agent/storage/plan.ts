// Validation of a storage request against the driver table, producing a
// MountPlan: exactly what mount(2) will be called with. Planning looks at the
// file system (symlinks on the way to a path) but changes nothing.
//
// Where storages live (the "storage roots"):
// - mount points must be inside the shared dir (config shared_dir, Kata's
//   /run/kata-containers/shared/containers), where OCI specs can then use
//   them as the root file system or a bind-mount source, or inside
//   <state dir>/storage, for storages only other storages use (an overlay's
//   upper layer on a tmpfs). The rest of the state dir (bundles, the runtime's
//   state, the agent's own files) is never a mount point. A relative mount
//   point is taken relative to the shared dir. The shared dir itself may be
//   one: Kata mounts the host share (9p/virtio-fs tag "kataShared") exactly
//   there, and the containers' root file systems then come from it.
// - bind sources must be inside the shared dir;
// - overlay lowerdir/upperdir/workdir must be inside either root;
// - a "local" storage's directory is <state dir>/local/<hash of its mount point>,
//   bind-mounted onto the mount point, so its data stays in the guest.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { excerpt, invalidArgument } from '../errors';
import { constants } from '../../native/native';
import { isWithin, resolveWithin } from '../validate';
import { parseBlockSource, type BlockDeviceRef } from './block';
import { findDriver, STORAGE_DRIVER_NAMES, type StorageDriver } from './drivers';
import { flagValue, formatData, parseMountOptions, type DataOption } from './options';

/** A storage as the core sees it (the version-free form of agent.v1.Storage). */
export interface StorageSpec {
  driver: string;
  driverOptions: string[];
  source: string;
  fstype: string;
  options: string[];
  mountPoint: string;
}

export interface StorageRoots {
  sharedDir: string;
  /** <state dir>/storage: mount points for storages that only other storages use. */
  storageDir: string;
  /** <state dir>/local: the directories of "local" storages. */
  localDir: string;
}

export function storageRoots(sharedDir: string, stateDir: string): StorageRoots {
  return { sharedDir, storageDir: path.join(stateDir, 'storage'), localDir: path.join(stateDir, 'local') };
}

/** What to mount, fully resolved except a block device's node (looked up when mounting). */
export interface MountPlan {
  driver: string;
  /** Absolute, symlink-free. */
  mountPoint: string;
  /** mount(2)'s source; for virtio-blk filled in from `device` at mount time, for local from `local.dir`. */
  source: string;
  fstype: string;
  flags: number;
  data: string;
  /** For bind mounts with flags (ro, nosuid, ...): MS_REMOUNT|MS_BIND|flags, a second call; 0 for none. */
  remountFlags: number;
  /** MS_SHARED/MS_PRIVATE/... (| MS_REC), a last call; 0 for none. */
  propagation: number;
  device?: BlockDeviceRef;
  local?: { dir: string; mode: number };
}

const TAG_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,35}$/;
const LABEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const FSTYPE_PATTERN = /^[a-z0-9][a-z0-9_.]{0,31}$/;
const MODE_PATTERN = /^0?[0-7]{3,4}$/;

/** Validates every storage of one request; mount points must be distinct. */
export function planStorages(specs: readonly StorageSpec[], roots: StorageRoots, what = 'storages'): MountPlan[] {
  const plans = specs.map((s, i) => planStorage(s, roots, `${what}[${i}]`));
  const seen = new Map<string, number>();
  for (const [i, p] of plans.entries()) {
    const first = seen.get(p.mountPoint);
    if (first !== undefined) throw invalidArgument(`${what}[${i}].mount_point ${p.mountPoint} is also ${what}[${first}].mount_point`);
    seen.set(p.mountPoint, i);
  }
  return plans;
}

export function planStorage(spec: StorageSpec, roots: StorageRoots, what = 'storage'): MountPlan {
  const driver = findDriver(spec.driver);
  if (!driver) {
    throw invalidArgument(
      `${what}.driver ${excerpt(spec.driver)} is unknown; this agent knows ${STORAGE_DRIVER_NAMES.join(', ')}`,
    );
  }
  if (spec.driverOptions.length > 0) {
    throw invalidArgument(
      `${what}.driver_options ${excerpt(spec.driverOptions)} are not supported by driver ${driver.name} (refused rather than ignored)`,
    );
  }
  const mountRoots = [roots.sharedDir, roots.storageDir];
  const mountPoint = resolveInRoots(mountRoots, spec.mountPoint, `${what}.mount_point`, { allowRoot: true });
  const fstype = checkFstype(driver, spec.fstype, what);

  const parsed = parseMountOptions([...driver.defaultOptions, ...spec.options], `${what}.options`);
  const bindLike = driver.fstype === '';
  const bindFlags = flagValue('MS_BIND') | flagValue('MS_REC');
  if (!bindLike && parsed.flags & flagValue('MS_BIND')) {
    throw invalidArgument(`${what}.options: bind/rbind is only for the bind and local drivers, not ${driver.name}`);
  }
  let data = checkData(driver, parsed.data, mountRoots, what);

  const plan: MountPlan = {
    driver: driver.name,
    mountPoint,
    source: '',
    fstype,
    flags: bindLike ? parsed.flags & bindFlags : parsed.flags,
    data: '',
    remountFlags: 0,
    propagation: parsed.propagation,
  };
  if (bindLike) {
    // A bind mount ignores every flag but MS_BIND|MS_REC: the others need a remount.
    const rest = parsed.flags & ~bindFlags;
    if (rest !== 0) plan.remountFlags = constants.MS_REMOUNT | flagValue('MS_BIND') | rest;
  }

  switch (driver.source) {
    case 'tag':
      if (!TAG_PATTERN.test(spec.source)) {
        throw invalidArgument(`${what}.source ${excerpt(spec.source)} is not a ${driver.name} mount tag (1-36 characters of [A-Za-z0-9_.-])`);
      }
      plan.source = spec.source;
      break;
    case 'block-device':
      plan.device = parseBlockSource(spec.source, `${what}.source`);
      break;
    case 'label':
      if (spec.source !== '' && !LABEL_PATTERN.test(spec.source)) {
        throw invalidArgument(`${what}.source ${excerpt(spec.source)} is not a label (the ${driver.name} driver mounts no path or device)`);
      }
      plan.source = spec.source || driver.name;
      break;
    case 'shared-path':
      plan.source = resolveInRoots([roots.sharedDir], spec.source, `${what}.source`, { allowRoot: true });
      break;
    case 'local': {
      if (spec.source !== '' && spec.source !== 'local') {
        throw invalidArgument(`${what}.source ${excerpt(spec.source)} must be empty or "local": the agent creates the directory`);
      }
      const modeText = data.find((d) => d.key === 'mode')?.value ?? '';
      if (!MODE_PATTERN.test(modeText)) throw invalidArgument(`${what}.options: mode=${excerpt(modeText)} is not an octal mode such as 0755`);
      data = data.filter((d) => d.key !== 'mode');
      const hash = crypto.createHash('sha256').update(mountPoint).digest('hex').slice(0, 16);
      plan.local = { dir: path.join(roots.localDir, hash), mode: Number.parseInt(modeText, 8) };
      plan.source = plan.local.dir;
      break;
    }
  }
  plan.data = formatData(data);
  return plan;
}

/** Same storage (so a second user may share the mount): every mount(2) argument equal. */
export function samePlan(a: MountPlan, b: MountPlan): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function checkFstype(driver: StorageDriver, fstype: string, what: string): string {
  if (driver.fstype === null) {
    if (!FSTYPE_PATTERN.test(fstype)) {
      throw invalidArgument(`${what}.fstype ${excerpt(fstype)}: driver ${driver.name} needs the file system type (e.g. ext4, xfs)`);
    }
    return fstype;
  }
  if (fstype !== '' && fstype !== driver.fstype && fstype !== driver.name) {
    throw invalidArgument(`${what}.fstype ${excerpt(fstype)} does not match driver ${driver.name} (${driver.fstype || 'a bind mount'})`);
  }
  return driver.fstype;
}

function checkData(driver: StorageDriver, data: DataOption[], roots: string[], what: string): DataOption[] {
  const out: DataOption[] = [];
  for (const option of data) {
    const text = option.value === null ? option.key : `${option.key}=${option.value}`;
    if (driver.dataKeys === 'no-path-values') {
      if (option.value?.includes('/')) throw invalidArgument(`${what}.options: ${excerpt(text)}: driver ${driver.name} takes no path-valued options`);
    } else if (!driver.dataKeys.includes(option.key)) {
      const allowed = driver.dataKeys.length > 0 ? `it takes ${driver.dataKeys.join(', ')} and mount flags` : 'it takes mount flags only';
      throw invalidArgument(`${what}.options: ${excerpt(text)} is not an option of driver ${driver.name}; ${allowed}`);
    }
    if (driver.pathKeys?.includes(option.key)) {
      if (!option.value) throw invalidArgument(`${what}.options: ${option.key} needs a path`);
      const parts = option.key === 'lowerdir' ? option.value.split(':') : [option.value];
      const resolved = parts.map((p, i) => {
        const r = resolveInRoots(roots, p, `${what}.options ${option.key}${parts.length > 1 ? `[${i}]` : ''}`);
        if (/[:,\\]/.test(r)) throw invalidArgument(`${what}.options ${option.key}: ${excerpt(r)} holds ":", "," or "\\", which overlayfs would misread`);
        return r;
      });
      out.push({ key: option.key, value: resolved.join(':') });
      continue;
    }
    out.push(option);
  }
  if (driver.name === 'overlay') {
    const has = (k: string) => out.some((o) => o.key === k);
    if (!has('lowerdir')) throw invalidArgument(`${what}.options: overlay needs lowerdir=DIR[:DIR...]`);
    if (has('upperdir') !== has('workdir')) throw invalidArgument(`${what}.options: overlay needs both upperdir and workdir, or neither`);
  }
  return out;
}

/**
 * Resolves `userPath` inside whichever of `roots` holds it (resolveWithin:
 * no "..", no symlink out). A relative path is taken relative to the first
 * root. Unless allowRoot, a root itself is refused.
 */
export function resolveInRoots(roots: readonly string[], userPath: string, what: string, opts: { allowRoot?: boolean } = {}): string {
  if (userPath === '' || userPath.includes('\0')) throw invalidArgument(`${what} ${excerpt(userPath)} is empty or contains NUL`);
  if (userPath.split(/[\\/]+/).includes('..')) {
    throw invalidArgument(`${what} ${excerpt(userPath)} contains "..": paths may not climb out of ${roots.join(' or ')}`);
  }
  const candidate = path.isAbsolute(userPath) ? path.normalize(userPath) : path.join(roots[0]!, userPath);
  for (const root of roots) {
    let rootReal: string;
    try {
      rootReal = fs.realpathSync(root);
    } catch {
      continue; // not created yet: nothing can be inside it
    }
    if (!isWithin(path.resolve(root), candidate) && !isWithin(rootReal, candidate)) continue;
    const resolved = resolveWithin(root, candidate, what);
    if (!opts.allowRoot && resolved === rootReal) throw invalidArgument(`${what} ${excerpt(userPath)} is the root ${root} itself`);
    return resolved;
  }
  throw invalidArgument(`${what} ${excerpt(userPath)} is outside the storage roots (${roots.join(', ')})`);
}
