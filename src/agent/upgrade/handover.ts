// Descriptors crossing an exec in place. The old image names the fds the new
// one must take over (listening sockets, the agent-side ends of containers'
// stdio pipes, pty masters), clears their FD_CLOEXEC, and records each with
// what it is (type, device, inode); every other fd of the old image is
// close-on-exec and goes with the exec, and any that is not (one a library
// opened without O_CLOEXEC) is listed as surviving. The new image checks
// each named fd against the record before using it (a number reused for
// another file is refused, never adopted), and closes every surviving fd
// nobody claimed.
import fs from 'node:fs';
import { native } from '../../native/native';

export type FdKind = 'socket' | 'fifo' | 'char' | 'file' | 'dir' | 'other';

/**
 * What this image can take over besides listening sockets and stdio, as its
 * pre-flight report says (`adopts`): the image before it hands only that over.
 * Releases before 0.5.0 report none: a serial port handed to them open would
 * stay open unclaimed, and their own open of it would fail (one opener at a time).
 */
export const ADOPTS = ['serial-port'] as const;

export interface HandedFd {
  name: string;
  fd: number;
  kind: FdKind;
  dev: number;
  ino: number;
}

export interface HandoverRecord {
  fds: HandedFd[];
  /** Fds above 2 that cross the exec without being named: the new image closes them. */
  unnamed: number[];
}

function kindOf(st: fs.Stats): FdKind {
  if (st.isSocket()) return 'socket';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  return 'other';
}

/** What `fd` is now; null when it is not open. */
export function describeFd(fd: number): Omit<HandedFd, 'name' | 'fd'> | null {
  try {
    const st = fs.fstatSync(fd);
    return { kind: kindOf(st), dev: st.dev, ino: st.ino };
  } catch {
    return null;
  }
}

/** This process's open fds above 2, from /proc/self/fd (the directory's own fd excluded). */
function openFds(): number[] {
  // readdirSync opens the directory itself: its fd shows in the listing and is closed again.
  const listed = fs.readdirSync('/proc/self/fd').map(Number).filter((fd) => fd > 2);
  return listed.filter((fd) => describeFd(fd) !== null);
}

/**
 * Makes the named fds survive the next execve and records them. Throws,
 * naming the fd, when one is not open: the caller must not exec then.
 */
export function prepareHandover(named: ReadonlyArray<{ name: string; fd: number }>): HandoverRecord {
  const fds = named.map(({ name, fd }) => {
    const what = describeFd(fd);
    if (!what) throw new Error(`cannot hand over ${name}: fd ${fd} is not open`);
    return { name, fd, ...what };
  });
  for (const { fd } of fds) native.clearCloexec(fd);
  const kept = new Set(fds.map((f) => f.fd));
  const unnamed = openFds().filter((fd) => !kept.has(fd) && !native.getCloexec(fd));
  return { fds, unnamed };
}

export interface Adopted {
  /** name → fd, for each named fd that is what the record says. */
  fds: Map<string, number>;
  /** Named fds refused: not open, or another file now (with why). */
  refused: Array<{ name: string; fd: number; why: string }>;
  /** Fds closed: surviving, but nobody's. */
  closed: number[];
}

/**
 * The new image's side: checks every named fd against the record, marks the
 * adopted ones close-on-exec again (until the next handover), and closes the
 * unnamed survivors and the refused fds that are open.
 */
export function adoptHandover(record: HandoverRecord): Adopted {
  const fds = new Map<string, number>();
  const refused: Adopted['refused'] = [];
  const closed: number[] = [];
  const close = (fd: number) => {
    try {
      native.closeFd(fd);
      closed.push(fd);
    } catch {
      // Not open: nothing to close.
    }
  };
  for (const h of record.fds) {
    const now = describeFd(h.fd);
    if (!now) refused.push({ name: h.name, fd: h.fd, why: 'not open' });
    else if (now.kind !== h.kind || now.dev !== h.dev || now.ino !== h.ino) {
      refused.push({ name: h.name, fd: h.fd, why: `is a ${now.kind} (dev ${now.dev}, inode ${now.ino}), not the ${h.kind} handed over (dev ${h.dev}, inode ${h.ino})` });
      // Not ours to close: the number belongs to some other file of this process now.
    } else {
      fds.set(h.name, h.fd);
      // Close-on-exec again: it must not leak into the runtimes and helpers the agent spawns.
      native.setCloexec(h.fd);
    }
  }
  for (const fd of record.unnamed) if (fd > 2 && ![...fds.values()].includes(fd)) close(fd);
  return { fds, refused, closed };
}
