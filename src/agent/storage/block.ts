// virtio-blk sources: a device node (/dev/vdb, /dev/vdb1) or the PCI address
// of the virtio device (0000:00:05.0), which the agent resolves through sysfs:
//   /sys/bus/pci/devices/<addr>/virtio<N>/block/<name>  ->  /dev/<name>
// A hot-plugged disk shows up a little after the runtime plugs it, so both
// forms are waited for, up to a deadline. Only the QEMU guest has such disks;
// the sysfs walk is unit-tested on a fake tree.
import fs from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition, invalidArgument } from '../errors';

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
    `${what} ${JSON.stringify(source)} is neither a virtio block device node (/dev/vdX, /dev/vdXN) ` +
      `nor a PCI address (domain:bus:device.function, e.g. 0000:00:05.0)`,
  );
}

export interface BlockLookup {
  sysRoot?: string;
  devRoot?: string;
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
  const what = ref.kind === 'pci' ? `PCI device ${ref.address}` : `/dev/${ref.name}`;
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
