// Messages every protocol version so far carries in the same shape (besides
// the network ones, network-wire.ts): Storage, the container statistics,
// the guest details and CopyFile's chunk. Conversions between those wire
// shapes and the core's types, typed structurally so that each version's
// generated types fit; a version whose shapes differ gets conversions of its own.
import type { CgroupStats } from '../agent/core/cgroup-stats';
import type { CopyFileRequest, GuestDetails } from '../agent/guest';
import type { StorageSpec } from '../agent/storage';

interface WireStorage { driver: string; driver_options: string[]; source: string; fstype: string; options: string[]; mount_point: string }
interface WireCopyFile { path: string; file_size: number; file_mode: number; dir_mode: number; uid: number; gid: number; offset: number; data: Uint8Array }

/** A Storage message → the core's StorageSpec (CreateSandbox and CreateContainer). */
export function storageFromWire(s: WireStorage): StorageSpec {
  return {
    driver: s.driver,
    driverOptions: s.driver_options,
    source: s.source,
    fstype: s.fstype,
    options: s.options,
    mountPoint: s.mount_point,
  };
}

/** The core's cgroup statistics → StatsContainerResponse. */
export function statsToWire(s: CgroupStats) {
  return {
    cpu: { usage_usec: s.cpu.usageUsec, user_usec: s.cpu.userUsec, system_usec: s.cpu.systemUsec },
    memory: { usage_bytes: s.memory.usageBytes, limit_bytes: s.memory.limitBytes },
    pids: s.pids,
    cgroup_path: s.cgroupPath,
  };
}

/** The guest module's details → GetGuestDetailsResponse. */
export function guestDetailsToWire(d: GuestDetails) {
  return {
    mem_block_size_bytes: d.memBlockSizeBytes,
    support_mem_hotplug_probe: d.supportMemHotplugProbe,
    agent_details: {
      version: d.agent.version,
      init_daemon: d.agent.initDaemon,
      storage_handlers: d.agent.storageHandlers,
      device_handlers: d.agent.deviceHandlers,
    },
  };
}

/** A CopyFileRequest chunk → the guest module's request. */
export function copyFileFromWire(req: WireCopyFile): CopyFileRequest {
  return {
    path: req.path, fileSize: req.file_size, fileMode: req.file_mode, dirMode: req.dir_mode,
    uid: req.uid, gid: req.gid, offset: req.offset, data: req.data,
  };
}
