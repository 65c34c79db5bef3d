// The duties of the guest's init: first-boot set-up, signals, and the end.
import type { Logger } from '../log';
import { requireNamespace } from '../machine';
import { native } from '../../native/native';
import { mountInitFileSystems } from './init-mounts';
import { KernelModules } from './kernel-modules';
import { powerOff } from './power';

export { KernelModules } from './kernel-modules';
export { powerOff } from './power';

/**
 * The kernel starts init with almost no environment. Programs the agent runs
 * (crun, ip) are found through PATH, and iproute2's ip in /usr/sbin must win
 * over busybox's in /bin.
 */
const INIT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The boot modules a listener needs before it can open; the others can wait until the agent has answered. */
const LISTENER_MODULES = { serial: ['virtio_console'], vsock: ['vsock', 'vmw_vsock_virtio_transport'] } as const;

/**
 * Splits the boot list (config kernelModules, in its order) into what must be
 * loaded before the listeners open and what can follow the announce: each
 * module costs tens of ms under TCG, and only the transports' are on the way
 * to the first answer.
 */
export function splitBootModules(modules: readonly string[], listeners: { serial: boolean; vsock: boolean }): { now: string[]; later: string[] } {
  const key = (name: string) => name.replace(/-/g, '_');
  const needed = new Set<string>([...(listeners.serial ? LISTENER_MODULES.serial : []), ...(listeners.vsock ? LISTENER_MODULES.vsock : [])]);
  return { now: modules.filter((m) => needed.has(key(m))), later: modules.filter((m) => !needed.has(key(m))) };
}

// A missing module costs a feature, not the guest: keep booting.
const notLoaded = (log: Logger, name: string, err: unknown) => log.error({ err, module: name }, 'kernel module not loaded');

/** First-boot work before the listeners: environment, mounts, then the kernel modules they need. */
export function bootGuest(log: Logger, modules: readonly string[], kernelModules: KernelModules): void {
  process.env.PATH = INIT_PATH;
  mountInitFileSystems(log);
  for (const name of modules) {
    try {
      kernelModules.load([{ name, parameters: [] }]);
    } catch (err) {
      notLoaded(log, name, err);
    }
  }
}

/**
 * First-boot work after the announce: the other boot modules, loaded on a
 * worker thread (finit_module is one blocking syscall of tens of ms under
 * TCG), so that calls are answered meanwhile; those that may need the
 * modules wait for AgentCore.booted. Settles when all are tried.
 */
export async function finishBoot(log: Logger, modules: readonly string[], kernelModules: KernelModules): Promise<void> {
  const started = performance.now();
  for (const name of modules) {
    try {
      await kernelModules.loadOffThread([{ name, parameters: [] }]);
    } catch (err) {
      notLoaded(log, name, err);
    }
  }
  log.info({ modules, ms: Math.round(performance.now() - started) }, 'first-boot work done');
}

/**
 * The loopback link is down in a fresh guest; processes expect 127.0.0.1 and
 * ::1, which the kernel adds itself when the link comes up. One ioctl, not
 * iproute2: each `ip` run costs tens of ms under TCG, on the way to the first answer.
 */
export function bringUpLoopback(log: Logger): void {
  try {
    requireNamespace('net', 'bringing up the loopback interface');
    native.linkUp('lo');
    log.info({ interface: 'lo', up: true }, 'loopback up');
  } catch (err) {
    log.error({ err }, 'cannot bring up the loopback interface');
  }
}

/**
 * PID 1 gets no default action for signals: without handlers SIGTERM and
 * friends are ignored. The guest's init treats them as a request to power off.
 */
export function handleInitSignals(log: Logger, shutdown: (reason: string) => Promise<void>): void {
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGPWR'] as const) {
    process.on(sig, () => {
      void shutdown(`signal ${sig}`).finally(() => powerOff(log, `signal ${sig}`));
    });
  }
  // Nothing may stop PID 1: a terminal's SIGHUP or a stray SIGPIPE is logged only.
  for (const sig of ['SIGHUP', 'SIGPIPE', 'SIGUSR1', 'SIGUSR2'] as const) {
    process.on(sig, () => log.info({ signal: sig }, 'signal ignored by init'));
  }
}
