// The storage and device handlers this agent offers, as data. GetGuestDetails
// (and later Discovery) report them, so a runtime can tell before it asks
// whether this agent can mount a storage. The storage drivers come from the
// storage module's driver table (storage/drivers.ts): every agent built with
// it implements them all. No device handlers are implemented yet.
import { STORAGE_DRIVER_NAMES } from '../storage/drivers';

export class DriverRegistry {
  private readonly storage: Set<string>;
  private readonly device = new Set<string>();

  /** `storage`: the storage drivers on offer, by default every one in the driver table. */
  constructor(storage: Iterable<string> = STORAGE_DRIVER_NAMES) {
    this.storage = new Set(storage);
  }

  /** A storage driver (Storage.driver value), e.g. "virtio-fs", "local", "ephemeral". */
  addStorageHandler(name: string): void {
    this.storage.add(name);
  }

  /** A device type (Device.type value), e.g. "blk", "vfio". */
  addDeviceHandler(name: string): void {
    this.device.add(name);
  }

  storageHandlers(): string[] {
    return [...this.storage].sort();
  }

  deviceHandlers(): string[] {
    return [...this.device].sort();
  }
}
