// The duties of the guest's init: first-boot set-up, signals, and the end.
import type { Logger } from '../log';
import type { Network } from '../network';
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

/** First-boot work: environment, mounts, then the kernel modules named on the command line. */
export function bootGuest(log: Logger, modules: readonly string[], kernelModules: KernelModules): void {
  process.env.PATH = INIT_PATH;
  mountInitFileSystems(log);
  for (const name of modules) {
    try {
      kernelModules.load([{ name, parameters: [] }]);
    } catch (err) {
      // A missing module costs a feature, not the guest: keep booting.
      log.error({ err, module: name }, 'kernel module not loaded');
    }
  }
}

/** The loopback link is down in a fresh guest; processes expect 127.0.0.1 and ::1. */
export async function bringUpLoopback(network: Network, log: Logger): Promise<void> {
  try {
    await network.updateInterface({
      name: 'lo',
      up: true,
      addresses: [
        { family: 4, address: '127.0.0.1', prefix: 8 },
        { family: 6, address: '::1', prefix: 128 },
      ],
    });
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
