// The storage and device handlers this agent offers, as data: the storage and
// device modules register what they implement at start-up, and GetGuestDetails
// (and later Discovery) report it. Nothing is registered yet.
export class DriverRegistry {
  private readonly storage = new Set<string>();
  private readonly device = new Set<string>();

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
