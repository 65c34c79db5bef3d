// Benchmarks of the guest: boot to a ready agent under QEMU (TCG here), the
// image's size on disk and compressed, memory in the guest, and container
// round trips over the virtio-serial channel. Prints a table; asserts nothing.
// Run: npm run build:image && node --import tsx bench/guest.ts
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { GUEST_DIR, SHARE_TAG, startVm } from '../build/vm';
import { AgentClient } from '../src/client/client';
import { makeBusyboxRootfs } from '../test/helpers/rootfs';
import { containerSpec } from '../test/helpers/spec';

const BOOTS = 3;
const LIFECYCLES = 5;
const EXECS = 10;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mib = (bytes: number) => (bytes / 1048576).toFixed(1);
const rows: string[][] = [['measure', 'n', 'median', 'min', 'max', 'unit', 'notes']];
const timing = (measure: string, xs: number[], notes = '') =>
  rows.push([measure, String(xs.length), median(xs).toFixed(0), Math.min(...xs).toFixed(0), Math.max(...xs).toFixed(0), 'ms', notes]);
const value = (measure: string, v: string, unit: string, notes = '') => rows.push([measure, '1', v, '-', '-', unit, notes]);

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function main(): Promise<void> {
  for (const f of ['vmlinux', 'initrd.img', 'rootfs.img']) {
    const data = fs.readFileSync(path.join(GUEST_DIR, f));
    const gz = zlib.gzipSync(data, { level: 6 }).length;
    value(`image: ${f}`, mib(data.length), 'MiB', `gzip -6: ${mib(gz)} MiB`);
  }

  const shared = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-guest-'));
  makeBusyboxRootfs(path.join(shared, 'busybox'));
  const announce: number[] = [];
  const firstCall: number[] = [];
  try {
    for (let i = 0; i < BOOTS; i++) {
      const t0 = Date.now();
      const vm = await startVm({ sharedDir: shared });
      try {
        await vm.waitForConsole(/"msg":"announce"/, 120_000);
        announce.push(Date.now() - t0);
        const client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60 });
        firstCall.push(Date.now() - t0);
        if (i === BOOTS - 1) await measureRunningGuest(client);
        client.close();
      } finally {
        await vm.stop();
      }
    }
  } finally {
    fs.rmSync(shared, { recursive: true, force: true });
  }
  timing('boot: QEMU start -> agent announce (console)', announce, 'TCG, 2 vCPU, 1 GiB');
  timing('boot: QEMU start -> first Negotiate answered', firstCall, 'over the virtio-serial channel');
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const [i, r] of rows.entries()) {
    console.log(r.map((cell, c) => (c >= 1 && c <= 4 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd());
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

async function measureRunningGuest(client: AgentClient): Promise<void> {
  const idle = (await client.v1('GetMetrics', {})).metrics;
  value('agent RSS in the guest, idle after boot', mib(metric(idle, 'agent_process_resident_memory_bytes')), 'MiB');
  const used = metric(idle, 'guest_memory_total_bytes') - metric(idle, 'guest_memory_available_bytes');
  value('guest memory in use after boot (total - available)', mib(used), 'MiB', 'root image is page cache, not pinned');

  await client.v1('CreateSandbox', {
    storages: [{ driver: '9p', source: SHARE_TAG, fstype: '9p', options: [], mount_point: '/run/kata-containers/shared/containers' }],
  });
  const lifecycle: number[] = [];
  for (let i = 0; i < LIFECYCLES; i++) {
    const spec = containerSpec({ rootPath: 'busybox', args: ['true'] });
    const t0 = performance.now();
    await client.v1('CreateContainer', { container_id: `c${i}`, oci_spec_json: JSON.stringify(spec) });
    await client.v1('StartContainer', { container_id: `c${i}` });
    await client.v1('WaitProcess', { container_id: `c${i}`, exec_id: '' });
    await client.v1('RemoveContainer', { container_id: `c${i}` });
    lifecycle.push(performance.now() - t0);
  }
  timing('container lifecycle: create+start+wait+remove of `true`', lifecycle, 'busybox rootfs over 9p');

  const spec = containerSpec({ rootPath: 'busybox', args: ['sleep', '1000'] });
  await client.v1('CreateContainer', { container_id: 'box', oci_spec_json: JSON.stringify(spec) });
  await client.v1('StartContainer', { container_id: 'box' });
  const execs: number[] = [];
  for (let i = 0; i < EXECS; i++) {
    const t0 = performance.now();
    await client.v1('ExecProcess', { container_id: 'box', exec_id: `e${i}`, oci_process_json: JSON.stringify({ args: ['true'] }) });
    await client.v1('WaitProcess', { container_id: 'box', exec_id: `e${i}` });
    execs.push(performance.now() - t0);
  }
  timing('ExecProcess+WaitProcess of `true`', execs);
  const unary: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    await client.v1('GetGuestDetails', {});
    unary.push(performance.now() - t0);
  }
  timing('unary round trip (GetGuestDetails), 200 calls', unary, 'serial channel under TCG');
  const busy = (await client.v1('GetMetrics', {})).metrics;
  value('agent RSS in the guest after these calls', mib(metric(busy, 'agent_process_resident_memory_bytes')), 'MiB');
  await client.v1('RemoveContainer', { container_id: 'box' });
}

void main();
