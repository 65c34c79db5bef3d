// Storages: file systems the runtime asks the agent to mount for the sandbox
// and its containers (agent.v1.Storage). The driver table is drivers.ts,
// request validation plan.ts, option parsing options.ts, virtio-blk lookup
// block.ts, mounting and reference counting manager.ts.
export { STORAGE_DRIVERS, STORAGE_DRIVER_NAMES, findDriver, type StorageDriver } from './drivers';
export { parseMountOptions, FLAG_OPTIONS, type ParsedOptions } from './options';
export { planStorage, planStorages, resolveInRoots, storageRoots, type MountPlan, type StorageRoots, type StorageSpec } from './plan';
export { parseBlockSource, resolveBlockDevice, blockNameForPci, blockDeviceForStorage, blockStoragesAllowed, type BlockDeviceRef, type BlockLookup } from './block';
export { StorageManager, nativeMounter, type Mounter, type MountedStorage, type StorageManagerOptions } from './manager';
