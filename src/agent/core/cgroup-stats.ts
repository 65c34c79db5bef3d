// Resource figures of a container from its cgroup v2 files.
import fs from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition } from '../errors';

export interface CgroupStats {
  cgroupPath: string;
  cpu: { usageUsec: number; userUsec: number; systemUsec: number };
  memory: { usageBytes: number; limitBytes: number };
  pids: { current: number; limit: number };
}

const CGROUP_ROOT = '/sys/fs/cgroup';

export async function readCgroupStats(containerId: string, pid: number): Promise<CgroupStats> {
  const cgroupPath = await cgroupOf(pid);
  if (cgroupPath === '/') {
    // The root cgroup holds the whole machine: its figures would be wrong, not empty.
    throw failedPrecondition(`container ${containerId} has no cgroup of its own (is the OCI runtime running with cgroups disabled?)`);
  }
  const dir = path.join(CGROUP_ROOT, cgroupPath);
  const read = (file: string) => fs.readFile(path.join(dir, file), 'utf8').catch(() => '');
  const [cpuStat, memCurrent, memMax, pidsCurrent, pidsMax] = await Promise.all(
    ['cpu.stat', 'memory.current', 'memory.max', 'pids.current', 'pids.max'].map(read),
  );
  const cpu = keyValues(cpuStat!);
  return {
    cgroupPath,
    cpu: { usageUsec: cpu.usage_usec ?? 0, userUsec: cpu.user_usec ?? 0, systemUsec: cpu.system_usec ?? 0 },
    memory: { usageBytes: num(memCurrent!), limitBytes: num(memMax!) },
    pids: { current: num(pidsCurrent!), limit: num(pidsMax!) },
  };
}

/** The cgroup v2 path of a process ("0::/path" in /proc/PID/cgroup). */
async function cgroupOf(pid: number): Promise<string> {
  const text = await fs.readFile(`/proc/${pid}/cgroup`, 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  return line ? line.slice(3) : '/';
}

function keyValues(text: string): Record<string, number> {
  return Object.fromEntries(text.split('\n').filter(Boolean).map((l) => {
    const [k, v] = l.split(' ');
    return [k!, Number(v)];
  }));
}

/** A number from a cgroup file; "max" (unlimited) and absent files are 0. */
function num(text: string): number {
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : 0;
}
