// What the agent may change on the machine it runs on. As the guest's init it
// owns the whole (virtual) machine. As an ordinary process on a development
// host it may change only what lives in namespaces of its own: it must never
// set the host's clock, hostname or network, or load modules into its kernel.
import fs from 'node:fs';
import { failedPrecondition } from './errors';

export type Namespace = 'mnt' | 'uts' | 'net';

/** Inode of the initial pid namespace (PROC_PID_INIT_INO in the kernel). */
const INITIAL_PID_NS_INODE = 0xeffffffc;

function nsInode(pid: number | 'self', ns: string): number | null {
  try {
    return fs.statSync(`/proc/${pid}/ns/${ns}`).ino;
  } catch {
    return null;
  }
}

/** True when this process is the init of a whole machine (a VM guest), not of a pid namespace. */
export function isGuestInit(): boolean {
  return process.pid === 1 && nsInode('self', 'pid') === INITIAL_PID_NS_INODE;
}

/**
 * True when the agent may change `ns`: as the guest's init, or when it runs
 * in a namespace its parent does not share (someone unshared it for the
 * agent, as the tests do). The host's init is not a usable reference: in a
 * sandboxed development machine /proc/1/ns is often unreadable.
 */
export function ownsNamespace(ns: Namespace): boolean {
  if (isGuestInit()) return true;
  const mine = nsInode('self', ns);
  const parents = nsInode(process.ppid, ns);
  return mine !== null && parents !== null && mine !== parents;
}

/** Throws a clear error unless the agent may change `ns`. */
export function requireNamespace(ns: Namespace, action: string): void {
  if (!ownsNamespace(ns)) {
    throw failedPrecondition(
      `${action} refused: the agent is not the guest's init and shares its parent's ${ns} namespace; ` +
        `run it in the VM, or in its own namespace (unshare) for tests`,
    );
  }
}

/** Throws unless the agent is the guest's init: for clock, CPUs, memory, kernel modules. */
export function requireGuestInit(action: string): void {
  if (!isGuestInit()) {
    throw failedPrecondition(`${action} refused: it changes the whole machine and runs only when the agent is the guest's init (PID 1 in a VM)`);
  }
}
