// SetGuestDateTime: the host sets the guest's wall clock (after a VM resume,
// say). It changes the whole machine, so only the guest's init may do it.
import { invalidArgument } from '../errors';
import { requireGuestInit } from '../machine';
import { native } from '../../native/native';

export function setGuestDateTime(sec: number, usec: number): void {
  requireGuestInit('SetGuestDateTime');
  if (!Number.isSafeInteger(sec) || sec < 0) throw invalidArgument(`sec ${sec} must be a non-negative number of seconds since the epoch`);
  if (!Number.isInteger(usec) || usec < 0 || usec > 999_999) throw invalidArgument(`usec ${usec} must be in [0, 999999]`);
  native.clockSettime(sec, usec * 1000);
}
