// GetGuestDetails: what the runtime needs to know before hot-plugging memory,
// and who this agent is.
import fs from 'node:fs/promises';
import path from 'node:path';
import { isGuestInit } from '../machine';
import { AGENT_VERSION } from '../version';
import type { DriverRegistry } from './drivers';

export interface GuestDetailsRequest {
  memBlockSize: boolean;
  memHotplugProbe: boolean;
}

export interface GuestDetails {
  /** Size of one hot-pluggable memory block; 0 if not asked or the kernel has no memory hotplug. */
  memBlockSizeBytes: number;
  /** The kernel takes hot-added memory through the `probe` file (false if not asked). */
  supportMemHotplugProbe: boolean;
  agent: { version: string; initDaemon: boolean; storageHandlers: string[]; deviceHandlers: string[] };
}

export async function guestDetails(req: GuestDetailsRequest, drivers: DriverRegistry, sysRoot = '/sys'): Promise<GuestDetails> {
  const memoryDir = path.join(sysRoot, 'devices', 'system', 'memory');
  return {
    memBlockSizeBytes: req.memBlockSize ? await memBlockSizeBytes(memoryDir) : 0,
    supportMemHotplugProbe: req.memHotplugProbe ? await exists(path.join(memoryDir, 'probe')) : false,
    agent: {
      version: AGENT_VERSION,
      initDaemon: isGuestInit(),
      storageHandlers: drivers.storageHandlers(),
      deviceHandlers: drivers.deviceHandlers(),
    },
  };
}

/** block_size_bytes holds the size in hex without a prefix ("8000000" = 128 MiB). */
async function memBlockSizeBytes(memoryDir: string): Promise<number> {
  let text: string;
  try {
    text = await fs.readFile(path.join(memoryDir, 'block_size_bytes'), 'utf8');
  } catch {
    return 0; // a kernel without CONFIG_MEMORY_HOTPLUG
  }
  const trimmed = text.trim();
  if (!/^(0x)?[0-9a-fA-F]+$/.test(trimmed)) throw new Error(`block_size_bytes holds ${JSON.stringify(trimmed)}, not a hex number`);
  return Number.parseInt(trimmed.replace(/^0x/, ''), 16);
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}
