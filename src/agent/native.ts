// Typed loader for the agent_native N-API addon (build/native/agent_native.c):
// the Linux syscalls Node does not expose. The addon is loaded lazily on first
// use, so importing this module never fails on a machine without it.
//
// Search order: $AGENT_NATIVE_ADDON, then agent_native.node next to this file
// (next to the esbuild bundle in dist/), then build/native/agent_native.node
// in each ancestor directory (the repo, when running from source with tsx).
// Loaded with process.dlopen, which esbuild leaves alone (it would try to
// bundle a static require of a .node file).

import fs from 'node:fs';
import path from 'node:path';

const ADDON_FILE = 'agent_native.node';

const CONSTANT_NAMES = [
  'MS_RDONLY',
  'MS_NOSUID',
  'MS_NODEV',
  'MS_NOEXEC',
  'MS_REMOUNT',
  'MS_BIND',
  'MS_REC',
  'MS_PRIVATE',
  'MS_SLAVE',
  'MS_SHARED',
  'MS_MOVE',
  'MS_STRICTATIME',
  'MS_RELATIME',
  'MNT_DETACH',
  'MNT_FORCE',
  'RB_POWER_OFF',
  'RB_AUTOBOOT',
  'RB_HALT_SYSTEM',
] as const;

/** Mount/umount flags and reboot commands, with the values of the system headers. */
export type NativeConstants = Readonly<Record<(typeof CONSTANT_NAMES)[number], number>>;

/** A reaped child. Exactly one of exitCode and signal is non-null. */
export interface WaitStatus {
  pid: number;
  exitCode: number | null;
  signal: number | null;
  coreDumped: boolean;
}

/**
 * What a failed syscall throws: message `<syscall> <args>: <strerror>`, code the
 * errno name ('EPERM'), errno the positive number (== os.constants.errno[code]).
 */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

export interface NativeAddon {
  /** prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to us. */
  setChildSubreaper(): void;
  isChildSubreaper(): boolean;
  /**
   * waitpid(pid, WNOHANG) for one pid > 0 (TypeError otherwise: reaping any
   * child would steal statuses child_process waits for). null while running.
   */
  waitpid(pid: number): WaitStatus | null;
  getCloexec(fd: number): boolean;
  /** Let fd survive execve. */
  clearCloexec(fd: number): void;
  /** mount(2). Empty source/data become NULL; fstype is NULL if empty or for bind/remount/move/propagation. */
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  /** umount2(2). */
  umount(target: string, flags: number): void;
  sethostname(name: string): void;
  /** sync() then reboot(cmd). Does not return for RB_POWER_OFF/RB_AUTOBOOT/RB_HALT_SYSTEM. */
  reboot(cmd: number): void;
  sync(): void;
  /** finit_module(2) on the .ko at path; already loaded (EEXIST) is success. */
  finitModule(path: string, params: string): void;
  getpid(): number;
  getppid(): number;
  /**
   * clock_settime(CLOCK_REALTIME, {sec, nsec}): sets the machine's wall clock.
   * TypeError unless 0 <= sec <= 2^53-1 and 0 <= nsec <= 999999999 (checked before the syscall).
   */
  clockSettime(sec: number, nsec: number): void;
  readonly constants: NativeConstants;
}

/** Every path load() tries, in order. */
function candidates(): string[] {
  const paths: string[] = [];
  const fromEnv = process.env['AGENT_NATIVE_ADDON'];
  if (fromEnv) paths.push(path.resolve(fromEnv));
  paths.push(path.join(__dirname, ADDON_FILE));
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    paths.push(path.join(dir, 'build', 'native', ADDON_FILE));
    if (path.dirname(dir) === dir) break;
  }
  return [...new Set(paths)];
}

let addon: NativeAddon | undefined;

function load(): NativeAddon {
  if (addon) return addon;
  const tried = candidates();
  const file = tried.find((p) => fs.existsSync(p));
  if (!file) {
    throw new Error(
      `native addon ${ADDON_FILE} not found (build it with: node build/native/build.mjs); tried: ${tried.join(', ')}`,
    );
  }
  const mod = { exports: {} as NativeAddon };
  try {
    process.dlopen(mod, file);
  } catch (err) {
    throw new Error(`cannot load native addon ${file}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  return (addon = mod.exports);
}

/** The addon's constants; each read loads the addon on first use. */
export const constants: NativeConstants = Object.freeze(
  Object.defineProperties(
    {},
    Object.fromEntries(
      CONSTANT_NAMES.map((name) => [name, { enumerable: true, get: () => load().constants[name] }]),
    ),
  ) as NativeConstants,
);

/** The addon, loaded on the first call. Errors thrown are NativeError (or TypeError for bad arguments). */
export const native: NativeAddon = {
  setChildSubreaper: () => load().setChildSubreaper(),
  isChildSubreaper: () => load().isChildSubreaper(),
  waitpid: (pid) => load().waitpid(pid),
  getCloexec: (fd) => load().getCloexec(fd),
  clearCloexec: (fd) => load().clearCloexec(fd),
  mount: (source, target, fstype, flags, data) => load().mount(source, target, fstype, flags, data),
  umount: (target, flags) => load().umount(target, flags),
  sethostname: (name) => load().sethostname(name),
  reboot: (cmd) => load().reboot(cmd),
  sync: () => load().sync(),
  finitModule: (p, params) => load().finitModule(p, params),
  getpid: () => load().getpid(),
  getppid: () => load().getppid(),
  clockSettime: (sec, nsec) => load().clockSettime(sec, nsec),
  constants,
};
