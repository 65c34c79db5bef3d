// The VM the guest benches run against: the image's single executable as
// PID 1 (allow-all policy), a sandbox whose 9p share holds a busybox rootfs,
// and the agent's JSON log lines read back from the console.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SHARE_TAG, startVm, type Vm, type VmOptions } from '../build/vm';
import { AgentClient } from '../src/client/client';
import { makeBusyboxRootfs } from '../test/helpers/rootfs';

/** One sample's value from GetMetrics' Prometheus text (the first, whatever its labels); NaN when absent. */
export function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

export interface BenchGuest {
  vm: Vm;
  addr: string;
  /** The host directory shared with the guest (holds busybox/). */
  shared: string;
  /** The agent's JSON log lines so far, from the console. */
  logs(): Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startBenchGuest(name: string, options: Pick<VmOptions, 'memoryMiB' | 'cpus'> & { kernelArgs?: string[]; prepare?: (shared: string) => void } = {}): Promise<BenchGuest> {
  const shared = fs.mkdtempSync(path.join(os.tmpdir(), `bench-${name}-`));
  makeBusyboxRootfs(path.join(shared, 'busybox'));
  options.prepare?.(shared);
  const vm = await startVm({
    sharedDir: shared, kernelArgs: ['agent.policy=/etc/agent/policy-allow-all.json', ...(options.kernelArgs ?? [])], onAccel: () => {},
    ...(options.memoryMiB ? { memoryMiB: options.memoryMiB } : {}), ...(options.cpus ? { cpus: options.cpus } : {}),
  });
  try {
    await vm.waitForConsole(/"msg":"announce"/, 120_000);
    const c = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60, protocols: ['v2'] });
    await c.createSandbox({ hostname: 'bench', storages: [{ driver: '9p', source: SHARE_TAG, fstype: '9p', mountPoint: '/run/kata-containers/shared/containers' }] });
    c.close();
  } catch (err) {
    await vm.stop();
    throw err;
  }
  const logs = () => vm.console().split('\n').flatMap((l) => {
    const i = l.indexOf('{"level"');
    if (i < 0) return [];
    try {
      return [JSON.parse(l.slice(i)) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
  return {
    vm, addr: vm.agentAddr, shared, logs,
    stop: async () => {
      await vm.stop();
      fs.rmSync(shared, { recursive: true, force: true });
    },
  };
}
