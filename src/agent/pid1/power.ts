// Ending the machine from PID 1: PID 1 must never exit (the kernel would
// panic), so the only way out is a power-off after everything is on disk.
import type { Logger } from '../log';
import { constants, native } from '../../native/native';

export function powerOff(log: Logger, reason: string): void {
  log.info({ reason }, 'powering off');
  native.sync();
  native.reboot(constants.RB_POWER_OFF);
}
