// Benchmarks of the guest: boot to a ready agent under QEMU (TCG here), the
// image's size on disk and compressed, memory in the guest, container
// round trips over the virtio-serial channel, and (as bench/stdout.ts on the
// host) stdout throughput and unary latency by protocol version over the
// channel. Prints tables; asserts nothing.
// Run: npm run build:image && node --import tsx bench/guest.ts [--stdout-mib N] [--kernel-arg X]...
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { GUEST_DIR, SHARE_TAG, startVm } from '../build/vm';
import { AgentClient } from '../src/client/client';
import { metric } from './guest-vm';
import { MODES, measureStdout, measureUnary, printTable, type Throughput, throughputRows } from './stdout';
import { makeBusyboxRootfs } from '../test/helpers/rootfs';
import { containerSpec } from '../test/helpers/spec';

const BOOTS = 3;
/** --kernel-arg X (repeatable): added to the guest's command line, e.g. AGENT_V8_OPT=1 (init's environment). */
const KERNEL_ARGS = process.argv.flatMap((a, i) => (a === '--kernel-arg' ? [process.argv[i + 1]!] : []));
const LIFECYCLES = 5;
const EXECS = 10;
/** The VMs' memory (QEMU -m), as the tests boot them. */
const GUEST_MEMORY_MIB = 1024;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mib = (bytes: number) => (bytes / 1048576).toFixed(1);
const rows: string[][] = [['measure', 'n', 'median', 'min', 'max', 'unit', 'notes']];
const timing = (measure: string, xs: number[], notes = '') =>
  rows.push([measure, String(xs.length), median(xs).toFixed(0), Math.min(...xs).toFixed(0), Math.max(...xs).toFixed(0), 'ms', notes]);
const value = (measure: string, v: string, unit: string, notes = '') => rows.push([measure, '1', v, '-', '-', unit, notes]);

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
  const phases = new Map<string, number[]>();
  try {
    for (let i = 0; i < BOOTS; i++) {
      const t0 = Date.now();
      const vm = await startVm({ sharedDir: shared, kernelArgs: KERNEL_ARGS, memoryMiB: GUEST_MEMORY_MIB });
      try {
        // The console is polled for the host time the initramfs's first line shows (the kernel is quiet).
        let bannerAt = 0;
        const poll = setInterval(() => {
          if (!bannerAt && /initramfs: started at uptime/.test(vm.console())) bannerAt = Date.now();
        }, 10);
        await vm.waitForConsole(/"msg":"announce"/, 120_000).finally(() => clearInterval(poll));
        const announcedAt = Date.now();
        announce.push(announcedAt - t0);
        const client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60 });
        firstCall.push(Date.now() - t0);
        for (const [phase, ms] of bootPhases(vm.console(), bannerAt ? bannerAt - t0 : NaN, Date.now() - announcedAt)) {
          if (!phases.has(phase)) phases.set(phase, []);
          if (Number.isFinite(ms)) phases.get(phase)!.push(ms);
        }
        if (i === BOOTS - 1) await measureRunningGuest(client);
        client.close();
        if (i === BOOTS - 1) await measureStdoutInGuest(vm.agentAddr);
      } finally {
        await vm.stop();
      }
    }
  } finally {
    fs.rmSync(shared, { recursive: true, force: true });
  }
  timing('boot: QEMU start -> agent announce (console)', announce, 'TCG, 2 vCPU, 1 GiB');
  for (const [phase, xs] of phases) if (xs.length) timing(`  ${phase}`, xs, phase.includes('host') ? '' : 'guest clock (uptime)');
  timing('boot: QEMU start -> first Negotiate answered', firstCall, 'over the virtio-serial channel');
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const [i, r] of rows.entries()) {
    console.log(r.map((cell, c) => (c >= 1 && c <= 4 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd());
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  if (stdoutRows.length) {
    console.log('');
    printTable(stdoutRows);
    console.log('');
    printTable(unaryRows);
  }
}

/**
 * Where a boot's time goes, from the console: the initramfs's two lines (the
 * uptime at its start and once the root is mounted), the agent's announce (its
 * uptimeMs and the steps of startupMs) and its first-boot-work line. Host-clock phases say so.
 */
function bootPhases(consoleText: string, bannerMs: number, announceToAnswerMs: number): Array<[string, number]> {
  const initAt = Number(/initramfs: started at uptime (\d+\.\d+) s/.exec(consoleText)?.[1]) * 1000;
  const rootAt = Number(/initramfs: root \S+ mounted at uptime (\d+\.\d+) s/.exec(consoleText)?.[1]) * 1000;
  const json = consoleText.split('\n').flatMap((l) => {
    const i = l.indexOf('{"level"');
    try {
      return i < 0 ? [] : [JSON.parse(l.slice(i)) as { time: string; msg: string; uptimeMs?: number; ms?: number; startupMs?: Record<string, number> }];
    } catch {
      return [];
    }
  });
  const ann = json.find((l) => l.msg === 'announce');
  const s = ann?.startupMs ?? {};
  const at = (k: string) => s[k] ?? NaN;
  const exec = (ann?.uptimeMs ?? NaN) - at('listening');
  return [
    ['QEMU start -> the initramfs\'s first line (host clock: firmware, kernel, /init)', bannerMs],
    ['kernel start -> /init (initramfs)', initAt],
    ['/init -> root image mounted (modules, virtio-blk)', rootAt - initAt],
    ['root mounted -> agent process start (switch_root, exec)', exec - rootAt],
    ['agent process start -> its code runs (Node\'s start, the snapshot read)', at('main')],
    ['  -> configuration read (/proc mounted, command line)', at('config') - at('main')],
    ['  -> runtime ready (policy, logger, mounts, listener modules, loopback)', at('runtime') - at('config')],
    ['  -> core made', at('core') - at('runtime')],
    ['  -> listening: announce (http2 loaded, listeners bound)', at('listening') - at('core')],
    ['announce -> first Negotiate answered (host clock)', announceToAnswerMs],
    ['announce -> first-boot work done (the other modules, after the announce)', json.find((l) => l.msg === 'first-boot work done')?.ms ?? NaN],
  ];
}

const stdoutRows: string[][] = [];
const unaryRows: string[][] = [];

/**
 * Stdout throughput and unary latency by protocol version over the VM's
 * channel, as bench/stdout.ts measures them on the host. The serial port
 * takes one host connection at a time and a client holds one channel, so the
 * v1 client and the v2 client run one after the other, on one container.
 * There is no raw baseline here: nothing but the agent speaks on the channel.
 */
async function measureStdoutInGuest(addr: string): Promise<void> {
  const i = process.argv.indexOf('--stdout-mib');
  const bytes = (i >= 0 ? Number(process.argv[i + 1]) : 8) * 1048576;
  const runs = 2;
  const results = new Map<string, Throughput[]>();
  for (const m of MODES) results.set(m.name, []);
  const unary: string[][] = [['unary round trip (guest channel)', 'p50 ms', 'p99 ms', 'calls/s', 'notes']];
  for (const protocol of ['v1', 'v2'] as const) {
    const client = await AgentClient.connect(addr, { connectTimeout: 60, protocols: [protocol] });
    try {
      if (protocol === 'v1') {
        await client.createContainer({ containerId: 'stdout-box', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '100000'] }) });
        await client.startContainer({ containerId: 'stdout-box' });
      }
      for (let run = 0; run < runs; run++) {
        for (const m of MODES.filter((x) => x.protocol === protocol)) results.get(m.name)!.push(await measureStdout(client, 'stdout-box', bytes, m.chunkBytes, m.acknowledge));
      }
      const details = () => (protocol === 'v1' ? client.v1('GetGuestDetails', { mem_block_size: false, mem_hotplug_probe: false }) : client.v2('GetGuestDetails', { mem_block_size: false, mem_hotplug_probe: false }));
      const r = await measureUnary(details, 200, 20);
      unary.push([`${protocol} GetGuestDetails`, r.p50.toFixed(2), r.p99.toFixed(2), r.perSecond.toFixed(0), '200 sequential calls after 20 warm-up']);
      if (protocol === 'v2') {
        const l = await measureUnary(() => client.listContainers(), 200, 20);
        unary.push(['v2 ListContainers', l.p50.toFixed(2), l.p99.toFixed(2), l.perSecond.toFixed(0), '200 sequential calls after 20 warm-up']);
        await client.removeContainer({ containerId: 'stdout-box' });
      }
    } finally {
      client.close();
    }
  }
  // Negotiate: what every connect does first, on a fresh connection each time (the channel's one at a time).
  const neg: number[] = [];
  for (let n = 0; n < 10; n++) {
    const t0 = performance.now();
    const c = await AgentClient.connect(addr, { connectTimeout: 60, protocols: ['v1'] });
    neg.push(performance.now() - t0);
    c.close();
  }
  neg.sort((a, b) => a - b);
  unary.push(['connect + Negotiate (a new connection)', neg[Math.floor(neg.length / 2)]!.toFixed(2), neg.at(-1)!.toFixed(2), '-', '10 connections, one after another (max as p99)']);
  stdoutRows.push(...throughputRows(results, null, bytes, runs).map((r, k) => (k === 0 ? r.map((c) => (c === 'measure' ? 'stdout over the guest channel' : c)) : r)));
  unaryRows.push(...unary);
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
  await guestMemoryBreakdown(client);
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

/**
 * Where the guest's memory in use goes, from its /proc/meminfo (a container
 * sees the guest kernel's own: there is no lxcfs here), read by an exec of
 * `cat` in the running container, after the execs above.
 */
async function guestMemoryBreakdown(client: AgentClient): Promise<void> {
  await client.exec({ containerId: 'box', execId: 'meminfo', process: { args: ['cat', '/proc/meminfo'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false } });
  let text = '';
  for await (const c of client.readOutput({ containerId: 'box', execId: 'meminfo' })) text += c.data.toString();
  await client.wait({ containerId: 'box', execId: 'meminfo' });
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  const inUse = kb('MemTotal') - kb('MemAvailable');
  value('guest memory in use, later (total - available)', mib(inUse), 'MiB', 'after the lifecycles and execs; its parts below');
  // The parts of memory in use that /proc/meminfo names; the rest of it is mostly the kernel's free reserve.
  const inUseParts: Array<[string, number, string]> = [
    ['  anonymous memory (AnonPages)', kb('AnonPages'), 'the agent\'s heap, the container\'s processes'],
    ['  shared memory and tmpfs (Shmem)', kb('Shmem'), 'files in tmpfs mounts'],
    ['  kernel slab, unreclaimable (SUnreclaim)', kb('SUnreclaim'), ''],
    ['  kernel stacks, page tables, per-cpu', kb('KernelStack') + kb('PageTables') + kb('Percpu'), ''],
    ['  vmalloc (VmallocUsed)', kb('VmallocUsed'), 'module text among it'],
  ];
  const named = inUseParts.reduce((sum, [, bytes]) => sum + bytes, 0);
  const parts: Array<[string, number, string]> = [
    ['  RAM the kernel keeps (QEMU -m minus MemTotal)', GUEST_MEMORY_MIB * 1048576 - kb('MemTotal'), 'kernel image, memmap, early reservations'],
    ...inUseParts,
    ['  the rest of in use: free memory the kernel keeps in reserve, mostly', inUse - named,
      'watermarks (vm.min_free_kbytes); half the page cache up to the low one'],
    ['  kernel slab, reclaimable (SReclaimable)', kb('SReclaimable'), 'counted available'],
    ['  page cache (Cached)', kb('Cached'), 'root image and executable; mostly counted available'],
    ['  free (MemFree)', kb('MemFree'), ''],
  ];
  for (const [measure, bytes, notes] of parts) value(measure, mib(bytes), 'MiB', notes);
}

void main();
