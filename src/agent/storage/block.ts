// virtio-blk sources: a device node (/dev/vdb, /dev/vdb1) or the PCI address
// of the virtio device (0000:00:05.0), which the agent resolves through sysfs:
//   /sys/bus/pci/devices/<addr>/virtio<N>/block/<name>  ->  /dev/<name>
// A hot-plugged disk shows up a little after the runtime plugs it, so both
// forms are waited for, up to a deadline. Only the QEMU guest has such disks;
// the sysfs walk is unit-tested on a fake tree.
//
// Which devices may be mounted at all (blockDeviceForStorage):
// - only as the guest's init, or on a test's fake device tree (BlockLookup
//   devRoot): on a development host no disk of the machine is ever mounted;
// - only a block device (stat, following symlinks);
// - never the disk of a file system the agent itself sees mounted (its root
//   first: the guest's /dev/vda), nor a partition of that disk or the disk of
//   that partition, and never a device mounted in another mount namespace
//   (a container's), unless the agent's storage manager mounted it. Devices
//   are compared by number (st_rdev against mountinfo's major:minor and the
//   mount sources' st_rdev), so another name for the same disk is no way round.
import fs from 'node:fs/promises';
import path from 'node:path';
import { excerpt, failedPrecondition, invalidArgument } from '../errors';
import { isGuestInit } from '../machine';

export type BlockDeviceRef = { kind: 'node'; name: string } | { kind: 'pci'; address: string };

/** /dev/vd<letters>[partition number]: the names the virtio_blk driver gives. */
const NODE_PATTERN = /^\/dev\/(vd[a-z]{1,3}[0-9]{0,3})$/;
/** domain:bus:device.function, device 00-1f, function 0-7. */
const PCI_PATTERN = /^([0-9a-f]{4}):([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$/;

/** Checks a virtio-blk source and says what it names; nothing is looked up yet. */
export function parseBlockSource(source: string, what = 'source'): BlockDeviceRef {
  const node = NODE_PATTERN.exec(source);
  if (node) return { kind: 'node', name: node[1]! };
  const address = source.toLowerCase();
  if (PCI_PATTERN.test(address)) return { kind: 'pci', address };
  throw invalidArgument(
    `${what} ${excerpt(source)} is neither a virtio block device node (/dev/vdX, /dev/vdXN) ` +
      `nor a PCI address (domain:bus:device.function, e.g. 0000:00:05.0)`,
  );
}

export interface BlockLookup {
  sysRoot?: string;
  /**
   * Where device nodes are looked up. Setting it to anything but /dev is the
   * test seam: block storages are then served outside the guest too (on the
   * test's fake tree, with a stand-in mounter).
   */
  devRoot?: string;
  /** Where self/mountinfo, <pid>/mountinfo and <pid>/ns/mnt are read; /proc by default. */
  procRoot?: string;
  /** How long to wait for a hot-plugged device to appear. */
  timeoutMs?: number;
  pollMs?: number;
}

/** The block device's name under /sys/bus/pci/devices/<addr>/virtio*\/block/, or null while it is not there. */
export async function blockNameForPci(address: string, sysRoot = '/sys'): Promise<string | null> {
  const device = path.join(sysRoot, 'bus', 'pci', 'devices', address);
  const entries = await fs.readdir(device).catch(() => [] as string[]);
  const names: string[] = [];
  for (const virtio of entries.filter((e) => /^virtio[0-9]+$/.test(e))) {
    names.push(...(await fs.readdir(path.join(device, virtio, 'block')).catch(() => [] as string[])));
  }
  if (names.length > 1) {
    throw failedPrecondition(`PCI device ${address} has several block devices (${names.join(', ')}); name the device node instead`);
  }
  return names[0] ?? null;
}

/** Resolves a virtio-blk source to its /dev node, waiting up to the deadline for it to appear. */
export async function resolveBlockDevice(ref: BlockDeviceRef, lookup: BlockLookup = {}): Promise<string> {
  const devRoot = lookup.devRoot ?? '/dev';
  const timeoutMs = lookup.timeoutMs ?? 3000;
  const pollMs = lookup.pollMs ?? 50;
  const what = describeRef(ref);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const name = ref.kind === 'node' ? ref.name : await blockNameForPci(ref.address, lookup.sysRoot);
    if (name !== null) {
      const node = path.join(devRoot, name);
      const st = await fs.stat(node).catch(() => null);
      if (st?.isBlockDevice()) return node;
      if (st) throw failedPrecondition(`${node} (for ${what}) exists but is not a block device`);
    }
    if (Date.now() >= deadline) {
      throw failedPrecondition(
        ref.kind === 'pci' && name === null
          ? `no virtio block device appeared under ${path.join(lookup.sysRoot ?? '/sys', 'bus/pci/devices', ref.address)} within ${timeoutMs} ms`
          : `block device ${path.join(devRoot, name!)} (for ${what}) did not appear within ${timeoutMs} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

function describeRef(ref: BlockDeviceRef): string {
  return ref.kind === 'pci' ? `PCI device ${ref.address}` : `/dev/${ref.name}`;
}

/** True when block storages may be mounted: as the guest's init, or on a test's own device tree (devRoot other than /dev). */
export function blockStoragesAllowed(lookup: BlockLookup = {}): boolean {
  if (lookup.devRoot !== undefined && path.resolve(lookup.devRoot) !== '/dev') return true;
  return isGuestInit();
}

/**
 * The device node to mount for a virtio-blk storage: resolved (waiting for a
 * hot-plug), a block device, and no disk in use (see the header). Throws
 * FAILED_PRECONDITION otherwise. `ownMountPoints` are the storage manager's
 * own mounts, whose devices may be mounted again.
 */
export async function blockDeviceForStorage(ref: BlockDeviceRef, lookup: BlockLookup, ownMountPoints: ReadonlySet<string>): Promise<string> {
  if (!blockStoragesAllowed(lookup)) await refuseBlockStorage(ref, lookup, ownMountPoints);
  const node = await resolveBlockDevice(ref, lookup);
  const views: DeviceView[] = [{ devRoot: lookup.devRoot ?? '/dev', sysRoot: lookup.sysRoot ?? '/sys', procRoot: lookup.procRoot ?? '/proc', foreign: true }];
  // On a test's fake tree outside the guest, the machine's real mounts are checked too.
  if (!isGuestInit() && views[0]!.procRoot !== '/proc') views.push({ devRoot: '/dev', sysRoot: '/sys', procRoot: '/proc', foreign: false });
  for (const view of views) await checkDeviceFree(node, view, ownMountPoints);
  return node;
}

/**
 * Always throws: block storages are not served here (outside the guest
 * without a test device tree). When the device is there now, says first
 * whether it is a disk the agent uses (the machine's own root disk, say).
 */
export async function refuseBlockStorage(ref: BlockDeviceRef, lookup: BlockLookup, ownMountPoints: ReadonlySet<string>): Promise<never> {
  const node = await resolveBlockDevice(ref, { ...lookup, timeoutMs: 0 }).catch(() => null);
  if (node) await checkDeviceFree(node, { devRoot: lookup.devRoot ?? '/dev', sysRoot: lookup.sysRoot ?? '/sys', procRoot: lookup.procRoot ?? '/proc', foreign: false }, ownMountPoints);
  throw failedPrecondition(
    `virtio-blk storage ${describeRef(ref)} refused: the agent is not the guest's init, and outside the VM no disk of ` +
      `this machine may be mounted (block storages are served only in the guest)`,
  );
}

interface DeviceView {
  devRoot: string;
  sysRoot: string;
  procRoot: string;
  /** Also look at the mount namespaces of other processes. */
  foreign: boolean;
}

/** A device number, "major:minor". */
type DevNo = string;

/** Linux's encoding of dev_t (new_encode_dev / MAJOR / MINOR). */
export function devNo(rdev: bigint): DevNo {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

/** A disk and its partitions, by number, with their names; from /sys/dev/block. */
interface DiskFamily {
  device: DevNo;
  /** The whole disk: the device itself, or its parent when it is a partition. */
  disk: DevNo;
  names: Map<DevNo, string>;
}

export async function diskFamily(device: DevNo, sysRoot: string): Promise<DiskFamily> {
  const family: DiskFamily = { device, disk: device, names: new Map() };
  const readDev = (dir: string) => fs.readFile(path.join(dir, 'dev'), 'utf8').then((s) => s.trim(), () => null);
  const isPartition = (dir: string) => fs.access(path.join(dir, 'partition')).then(() => true, () => false);
  let dir: string;
  try {
    dir = await fs.realpath(path.join(sysRoot, 'dev', 'block', device));
  } catch {
    return family; // no sysfs entry: the device alone
  }
  family.names.set(device, path.basename(dir));
  const diskDir = (await isPartition(dir)) ? path.dirname(dir) : dir;
  const disk = await readDev(diskDir);
  if (disk === null) return family;
  family.disk = disk;
  family.names.set(disk, path.basename(diskDir));
  for (const entry of await fs.readdir(diskDir).catch(() => [] as string[])) {
    const part = path.join(diskDir, entry);
    if (!(await isPartition(part))) continue;
    const n = await readDev(part);
    if (n !== null) family.names.set(n, entry);
  }
  return family;
}

export interface MountEntry {
  /** major:minor of the mounted file system (st_dev). */
  dev: DevNo;
  mountPoint: string;
  fstype: string;
  source: string;
}

/** Parses /proc/<pid>/mountinfo (proc(5)); octal escapes in paths decoded. */
export function parseMountinfo(text: string): MountEntry[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const head = line.slice(0, sep).split(' ');
    const tail = line.slice(sep + 3).split(' ');
    if (head.length < 6 || tail.length < 2) continue;
    out.push({ dev: head[2]!, mountPoint: unescape(head[4]!), fstype: unescape(tail[0]!), source: unescape(tail[1]!) });
  }
  return out;
}

/** The device numbers a mount stands on: its st_dev, and its source's st_rdev when that is a block device node. */
async function mountDevices(m: MountEntry, devRoot: string): Promise<DevNo[]> {
  const devs = [m.dev];
  if (m.source.startsWith('/dev/')) {
    const node = path.join(devRoot, m.source.slice('/dev/'.length));
    const st = await fs.stat(node, { bigint: true }).catch(() => null);
    if (st?.isBlockDevice()) devs.push(devNo(st.rdev));
  }
  return devs;
}

async function checkDeviceFree(node: string, view: DeviceView, own: ReadonlySet<string>): Promise<void> {
  const st = await fs.stat(node, { bigint: true });
  if (!st.isBlockDevice()) throw failedPrecondition(`${node} is not a block device`);
  const family = await diskFamily(devNo(st.rdev), view.sysRoot);
  const name = (d: DevNo) => family.names.get(d) ?? d;
  /** How a mounted device relates to the requested one, or null when it is not of its disk. */
  const relation = (d: DevNo): string | null => {
    if (d === family.device) return 'is the device of';
    if (!family.names.has(d)) return null;
    if (d === family.disk) return `is a partition of ${name(d)}, the disk of`;
    if (family.device === family.disk) return `is the disk of its partition ${name(d)}, the device of`;
    return `shares the disk ${name(family.disk)} with ${name(d)}, the device of`;
  };
  const refuse = (rel: string, what: string, tail: string) => failedPrecondition(`${node} (${family.device}) ${rel} ${what}; ${tail}`);
  const ATTACHED = 'only disks attached for the sandbox may be mounted';

  const mine = parseMountinfo(await fs.readFile(path.join(view.procRoot, 'self', 'mountinfo'), 'utf8'));
  let heldByManager = false;
  // The root first: its message is the one that matters most.
  const ordered = [...mine.filter((m) => m.mountPoint === '/'), ...mine.filter((m) => m.mountPoint !== '/')];
  for (const m of ordered) {
    for (const d of await mountDevices(m, view.devRoot)) {
      const rel = relation(d);
      if (rel === null) continue;
      if (own.has(m.mountPoint)) {
        // The storage manager's own mount: the same device again, or a sibling partition, is fine; a disk and its partition are not.
        if (d === family.device || (d !== family.disk && family.device !== family.disk)) {
          heldByManager = true;
          continue;
        }
        throw refuse(rel, `${m.mountPoint}, a storage the agent mounted`, 'a disk and its partition are never mounted together');
      }
      if (m.mountPoint === '/') throw refuse(rel, "the agent's root file system", ATTACHED);
      throw refuse(rel, `${m.mountPoint} (${m.fstype} from ${m.source}), which the agent's storage manager did not mount`, ATTACHED);
    }
  }
  // Other mount namespaces (containers'): what they see of a device the manager holds comes from the manager.
  if (!view.foreign || heldByManager) return;
  const ns = (pid: string) => fs.readlink(path.join(view.procRoot, pid, 'ns', 'mnt')).catch(() => null);
  const seen = new Set([await ns('self')]);
  for (const pid of (await fs.readdir(view.procRoot).catch(() => [] as string[])).filter((p) => /^[0-9]+$/.test(p))) {
    const id = await ns(pid);
    if (id === null || seen.has(id)) continue;
    seen.add(id);
    const text = await fs.readFile(path.join(view.procRoot, pid, 'mountinfo'), 'utf8').catch(() => '');
    for (const m of parseMountinfo(text)) {
      for (const d of await mountDevices(m, view.devRoot)) {
        const rel = relation(d);
        if (rel !== null) throw refuse(rel, `${m.mountPoint} in the mount namespace of process ${pid}`, 'a disk in use elsewhere is not mounted again');
      }
    }
  }
}
