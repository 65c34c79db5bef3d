// Mount options as they arrive in Storage.options ("ro", "nosuid",
// "size=64m", ...) turned into what mount(2) takes: MS_* flags, a
// propagation change (a separate mount(2) call), and the file system's data
// string. The flag options are a table; everything else is file-system data
// and is checked against the driver's list of allowed data keys (drivers.ts).
import { excerpt, invalidArgument } from '../errors';
import { constants } from '../../native/native';

/**
 * Mount flags the addon does not export. These are Linux UAPI values
 * (include/uapi/linux/mount.h), the same on every architecture.
 */
const UAPI_FLAGS = {
  MS_SYNCHRONOUS: 16,
  MS_DIRSYNC: 128,
  MS_NOATIME: 1024,
  MS_NODIRATIME: 2048,
  MS_UNBINDABLE: 1 << 17,
} as const;

type FlagName =
  | 'MS_RDONLY' | 'MS_NOSUID' | 'MS_NODEV' | 'MS_NOEXEC' | 'MS_BIND' | 'MS_REC' | 'MS_RELATIME' | 'MS_STRICTATIME'
  | 'MS_PRIVATE' | 'MS_SLAVE' | 'MS_SHARED' | keyof typeof UAPI_FLAGS;

export function flagValue(name: FlagName): number {
  return name in UAPI_FLAGS ? UAPI_FLAGS[name as keyof typeof UAPI_FLAGS] : constants[name as keyof typeof constants];
}

interface FlagOption {
  /** Flags the option sets. */
  set?: FlagName[];
  /** Flags the option clears ("rw" clears MS_RDONLY). */
  clear?: FlagName[];
  /** A propagation change, applied by a second mount(2) once the file system is mounted. */
  propagation?: FlagName[];
}

/** Every flag-like option a storage may carry, as in mount(8). "remount" and "move" are refused: a storage is a new mount. */
export const FLAG_OPTIONS: Readonly<Record<string, FlagOption>> = {
  defaults: {},
  ro: { set: ['MS_RDONLY'] },
  rw: { clear: ['MS_RDONLY'] },
  nosuid: { set: ['MS_NOSUID'] },
  suid: { clear: ['MS_NOSUID'] },
  nodev: { set: ['MS_NODEV'] },
  dev: { clear: ['MS_NODEV'] },
  noexec: { set: ['MS_NOEXEC'] },
  exec: { clear: ['MS_NOEXEC'] },
  sync: { set: ['MS_SYNCHRONOUS'] },
  async: { clear: ['MS_SYNCHRONOUS'] },
  dirsync: { set: ['MS_DIRSYNC'] },
  noatime: { set: ['MS_NOATIME'] },
  atime: { clear: ['MS_NOATIME'] },
  nodiratime: { set: ['MS_NODIRATIME'] },
  diratime: { clear: ['MS_NODIRATIME'] },
  relatime: { set: ['MS_RELATIME'] },
  norelatime: { clear: ['MS_RELATIME'] },
  strictatime: { set: ['MS_STRICTATIME'] },
  nostrictatime: { clear: ['MS_STRICTATIME'] },
  bind: { set: ['MS_BIND'] },
  rbind: { set: ['MS_BIND', 'MS_REC'] },
  private: { propagation: ['MS_PRIVATE'] },
  rprivate: { propagation: ['MS_PRIVATE', 'MS_REC'] },
  shared: { propagation: ['MS_SHARED'] },
  rshared: { propagation: ['MS_SHARED', 'MS_REC'] },
  slave: { propagation: ['MS_SLAVE'] },
  rslave: { propagation: ['MS_SLAVE', 'MS_REC'] },
  unbindable: { propagation: ['MS_UNBINDABLE'] },
  runbindable: { propagation: ['MS_UNBINDABLE', 'MS_REC'] },
};

const REFUSED_OPTIONS: Readonly<Record<string, string>> = {
  remount: 'a storage is always a new mount',
  move: 'a storage is always a new mount',
  rmove: 'a storage is always a new mount',
};

/** One file-system data option: "size=64m" is key "size", value "64m"; "dax" has value null. */
export interface DataOption {
  key: string;
  value: string | null;
}

export interface ParsedOptions {
  /** MS_* flags for the mount(2) call itself. */
  flags: number;
  /** MS_SHARED/MS_PRIVATE/MS_SLAVE/MS_UNBINDABLE (| MS_REC) for a second call; 0 for none. */
  propagation: number;
  /** Data options in order, later keys replacing earlier ones. */
  data: DataOption[];
}

/**
 * Splits each option on commas ("ro,nosuid" is two options), maps flag
 * options through FLAG_OPTIONS, and keeps the rest as data options. Later
 * options win: ["ro", "rw"] is read-write, ["size=1m", "size=2m"] is 2m.
 */
export function parseMountOptions(options: readonly string[], what = 'options'): ParsedOptions {
  let flags = 0;
  let propagation = 0;
  const data = new Map<string, string | null>();
  for (const [i, raw] of options.entries()) {
    if (raw.includes('\0')) throw invalidArgument(`${what}[${i}] contains NUL`);
    for (const option of raw.split(',')) {
      if (option === '') continue;
      const refused = Object.hasOwn(REFUSED_OPTIONS, option) ? REFUSED_OPTIONS[option] : undefined;
      if (refused) throw invalidArgument(`${what}[${i}]: option "${option}" is not allowed: ${refused}`);
      const flag = Object.hasOwn(FLAG_OPTIONS, option) ? FLAG_OPTIONS[option]! : undefined;
      if (flag) {
        for (const f of flag.set ?? []) flags |= flagValue(f);
        for (const f of flag.clear ?? []) flags &= ~flagValue(f);
        if (flag.propagation) {
          propagation = 0;
          for (const f of flag.propagation) propagation |= flagValue(f);
        }
        continue;
      }
      const eq = option.indexOf('=');
      const key = eq < 0 ? option : option.slice(0, eq);
      if (!/^[A-Za-z0-9_.+-]+$/.test(key)) {
        throw invalidArgument(`${what}[${i}]: ${excerpt(option)} is not a mount option (key=value or a flag)`);
      }
      data.delete(key); // re-insert: a replaced key moves to the end, in the order given
      data.set(key, eq < 0 ? null : option.slice(eq + 1));
    }
  }
  return { flags, propagation, data: [...data].map(([key, value]) => ({ key, value })) };
}

/** Data options as mount(2)'s data string: "key=value,flag,...". */
export function formatData(data: readonly DataOption[]): string {
  return data.map(({ key, value }) => (value === null ? key : `${key}=${value}`)).join(',');
}

