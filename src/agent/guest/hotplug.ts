// OnlineCPUMem: after the host hot-plugs CPUs or memory into the VM, the guest
// must bring them online through sysfs. Changes the whole machine: only the
// guest's init may do it (online() checks; the sysfs walkers below take a
// root so tests can run them on a fake tree).
import fs from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition } from '../errors';
import type { Logger } from '../log';
import { requireGuestInit } from '../machine';

export interface OnlineRequest {
  /** Answer only when done; otherwise answer at once and online in the background. */
  wait: boolean;
  /** How many offline CPUs to bring online (the host just added that many). */
  nbCpus: number;
  /** Leave memory blocks alone. */
  cpuOnly: boolean;
}

export interface OnlineOptions {
  sysRoot?: string;
  /** Hot-added CPUs appear asynchronously (ACPI); look again this often, this many times. */
  retryMs?: number;
  retries?: number;
  signal?: AbortSignal;
}

export async function onlineCpuMem(req: OnlineRequest, log: Logger, options: OnlineOptions = {}): Promise<void> {
  requireGuestInit('OnlineCPUMem');
  // In the background the call is over: its cancellation must not stop the work.
  const opts = req.wait ? options : { ...options, signal: undefined };
  const work = async () => {
    const cpus = await onlineCpus(req.nbCpus, opts);
    const memory = req.cpuOnly ? 0 : await onlineMemory(opts.sysRoot);
    log.info({ cpus, memoryBlocks: memory }, 'onlined hot-plugged resources');
  };
  if (req.wait) return work();
  work().catch((err: unknown) => log.error({ err }, 'onlining hot-plugged resources failed'));
}

/** Writes 1 to the `online` file of up to `count` offline CPUs; returns how many it onlined. */
export async function onlineCpus(count: number, options: OnlineOptions = {}): Promise<number> {
  const dir = path.join(options.sysRoot ?? '/sys', 'devices', 'system', 'cpu');
  const retries = options.retries ?? 50;
  let onlined = 0;
  for (let attempt = 0; onlined < count; attempt++) {
    for (const online of await offline(dir, /^cpu\d+$/)) {
      if (onlined >= count) break;
      await fs.writeFile(online, '1');
      onlined++;
    }
    if (onlined >= count) break;
    if (attempt >= retries) {
      throw failedPrecondition(`onlined ${onlined} of ${count} CPUs: no further offline CPU appeared in ${dir}`);
    }
    await sleep(options.retryMs ?? 100, options.signal);
  }
  return onlined;
}

/** Writes 1 to the `online` file of every offline memory block; returns how many. */
export async function onlineMemory(sysRoot = '/sys'): Promise<number> {
  const dir = path.join(sysRoot, 'devices', 'system', 'memory');
  const blocks = await offline(dir, /^memory\d+$/);
  const failures: string[] = [];
  for (const online of blocks) {
    try {
      await fs.writeFile(online, '1');
    } catch (err) {
      failures.push(`${path.basename(path.dirname(online))}: ${(err as Error).message}`);
    }
  }
  if (failures.length > 0) {
    throw failedPrecondition(`could not online ${failures.length} of ${blocks.length} memory blocks: ${failures.join('; ')}`);
  }
  return blocks.length;
}

/** The `online` files under dir/<name> that read "0", in numeric order. */
async function offline(dir: string, name: RegExp): Promise<string[]> {
  const entries = await fs.readdir(dir).catch(() => [] as string[]);
  const files = entries
    .filter((e) => name.test(e))
    .sort((a, b) => Number(a.replace(/\D/g, '')) - Number(b.replace(/\D/g, '')))
    .map((e) => path.join(dir, e, 'online'));
  const states = await Promise.all(files.map((f) => fs.readFile(f, 'utf8').catch(() => '')));
  // No `online` file (cpu0 on most machines) means it cannot be offline.
  return files.filter((_, i) => states[i]!.trim() === '0');
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(failedPrecondition('OnlineCPUMem was cancelled'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(failedPrecondition('OnlineCPUMem was cancelled'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
