// Typed loader for the agent_native N-API addon (build/native/agent_native.c):
// the Linux syscalls Node does not expose. The addon is loaded lazily on first
// use, so importing this module never fails on a machine without it.
//
// Where it is found ($AGENT_NATIVE_ADDON, the single executable's assets,
// beside the executable or the bundle, the source tree): addon-loader.ts.

import { loadAddon } from './addon-loader';

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
  /** waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT): the pid of one exited child, left unreaped; 0 if none. */
  firstExited(): number;
  /** Raises RLIMIT_NOFILE to at least `limit` as far as allowed; the [soft, hard] limits after (-1: unlimited). */
  raiseFdLimit(limit: number): [number, number];
  /** malloc_trim(0): gives memory malloc holds free back to the kernel; whether any was. */
  trimMemory(): boolean;
  /**
   * posix_spawnp(file, argv, env) in `cwd` ('' for ours) with stdio[i] as its
   * fd i (-1: /dev/null for 0-2, none above; at most 64), signals at their
   * defaults and unblocked; the pid.
   */
  spawn(file: string, argv: readonly string[], env: readonly string[], cwd: string, stdio: readonly number[]): number;
  /** socketpair(AF_UNIX, SOCK_STREAM), both ends close-on-exec. */
  socketpair(): [number, number];
  getCloexec(fd: number): boolean;
  /** Let fd survive execve. */
  clearCloexec(fd: number): void;
  /** Close fd at the next execve again (an fd adopted across one). */
  setCloexec(fd: number): void;
  /** mount(2). Empty source/data become NULL; fstype is NULL if empty or for bind/remount/move/propagation. */
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  /** umount2(2). */
  umount(target: string, flags: number): void;
  sethostname(name: string): void;
  /** Sets IFF_UP on the link `name` (SIOCSIFFLAGS) if it is not up; TypeError unless 1-15 bytes. */
  linkUp(name: string): void;
  /** sync() then reboot(cmd). Does not return for RB_POWER_OFF/RB_AUTOBOOT/RB_HALT_SYSTEM. */
  reboot(cmd: number): void;
  sync(): void;
  /** finit_module(2) on the .ko at path; already loaded (EEXIST) is success. */
  finitModule(path: string, params: string): void;
  /** finitModule on a libuv worker thread: settles when the module is loaded (or was). */
  finitModuleAsync(path: string, params: string): Promise<void>;
  getpid(): number;
  getppid(): number;
  /**
   * clock_settime(CLOCK_REALTIME, {sec, nsec}): sets the machine's wall clock.
   * TypeError unless 0 <= sec <= 2^53-1 and 0 <= nsec <= 999999999 (checked before the syscall).
   */
  clockSettime(sec: number, nsec: number): void;
  /**
   * socket(AF_VSOCK, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK), bind, listen: the
   * listening fd. cid -1 is VMADDR_CID_ANY. Wrap it with fd-socket.ts
   * serverFromListeningFd. Only inside a guest: never on the development host.
   */
  vsockListen(cid: number, port: number, backlog: number): number;
  /**
   * A connected AF_VSOCK fd (close-on-exec, O_NONBLOCK). The connect blocks the
   * thread until the peer answers (at most the kernel's vsock connect timeout, 2 s).
   */
  vsockConnect(cid: number, port: number): number;
  /** The AF_UNIX twin of vsockListen (path must not exist). */
  unixListen(path: string, backlog: number): number;
  /** The AF_UNIX twin of vsockConnect. */
  unixConnect(path: string): number;
  /** fcntl(F_DUPFD_CLOEXEC): another fd (>= 3) for the same open socket. */
  dupFd(fd: number): number;
  /** close(2) an fd this process owns and no Node handle wraps. */
  closeFd(fd: number): void;
  /**
   * execve(2): this process becomes `path` with `argv` and `env` ("KEY=value"
   * strings), keeping its pid, its children and every fd whose FD_CLOEXEC is
   * cleared. Never returns when it works; when it fails it throws (errno:
   * ENOENT, EACCES, ENOEXEC...) and the process goes on as it was. No 'exit'
   * handler runs: flush what must be written first.
   */
  execve(path: string, argv: readonly string[], env: readonly string[]): never;
  readonly constants: NativeConstants;
}

/** Every path load() tries, in order. */
let addon: NativeAddon | undefined;

/** Loads the addon on first use; where it is looked for is in addon-loader.ts. */
function load(): NativeAddon {
  addon ??= loadAddon<NativeAddon>(ADDON_FILE, 'AGENT_NATIVE_ADDON');
  return addon;
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
  firstExited: () => load().firstExited(),
  raiseFdLimit: (limit) => load().raiseFdLimit(limit),
  trimMemory: () => load().trimMemory(),
  spawn: (file, argv, env, cwd, stdio) => load().spawn(file, argv, env, cwd, stdio),
  socketpair: () => load().socketpair(),
  getCloexec: (fd) => load().getCloexec(fd),
  clearCloexec: (fd) => load().clearCloexec(fd),
  setCloexec: (fd) => load().setCloexec(fd),
  mount: (source, target, fstype, flags, data) => load().mount(source, target, fstype, flags, data),
  umount: (target, flags) => load().umount(target, flags),
  sethostname: (name) => load().sethostname(name),
  linkUp: (name) => load().linkUp(name),
  reboot: (cmd) => load().reboot(cmd),
  sync: () => load().sync(),
  finitModule: (p, params) => load().finitModule(p, params),
  finitModuleAsync: (p, params) => load().finitModuleAsync(p, params),
  getpid: () => load().getpid(),
  getppid: () => load().getppid(),
  clockSettime: (sec, nsec) => load().clockSettime(sec, nsec),
  vsockListen: (cid, port, backlog) => load().vsockListen(cid, port, backlog),
  vsockConnect: (cid, port) => load().vsockConnect(cid, port),
  unixListen: (p, backlog) => load().unixListen(p, backlog),
  unixConnect: (p) => load().unixConnect(p),
  dupFd: (fd) => load().dupFd(fd),
  closeFd: (fd) => load().closeFd(fd),
  execve: (p, argv, env) => load().execve(p, argv, env),
  constants,
};
