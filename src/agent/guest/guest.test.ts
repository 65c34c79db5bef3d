// Tests of the guest module (src/agent/guest), the core of the guest RPCs, on
// temporary trees: CopyFile, GetMetrics (with a stand-in for the RPC
// boundary's counters), the OOM event queue and watcher (on a fake /proc and
// cgroup tree, following containers on the core's event bus), guest details, clock and hot-plug (only shown to be refused on
// this host; the sysfs walkers run on a fake tree) and entropy (a plain file
// as the device). Nothing here changes the machine. The RPCs end to end are in
// test/integration/guest-rpcs.test.ts.
// Needs root (CopyFile sets owners); no build.
// Run: node --import tsx --test src/agent/guest/guest.test.ts
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { EventQueue } from '../core/event-queue';
import { EventBus, type CoreEvent } from '../core/events';
import { isKind } from '../errors.testing';
import { silentLogger } from '../log';
import { STORAGE_DRIVER_NAMES } from '../storage/drivers';
import { AGENT_VERSION } from '../version';
import { onlineCpus, onlineMemory } from './hotplug';
import { Guest, type ContainerView, type CopyFileRequest, type OomEvent } from './index';
import type { MetricsText } from './metrics';
import { MAX_RESEED_BYTES } from './random';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'guest-test-'));
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let counter = 0;
const freshDir = (name: string) => {
  const d = path.join(tmpRoot, `${name}-${++counter}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
};

function guestFor(sharedDir: string, containers: ContainerView[] = [], extra: Partial<ConstructorParameters<typeof Guest>[0]> = {}) {
  return new Guest({ sharedDir, containers: () => containers, log: silentLogger, ...extra });
}

const chunk = (p: string, data: string, offset: number, fileSize: number, more: Partial<CopyFileRequest> = {}): CopyFileRequest => ({
  path: p, fileSize, fileMode: 0o100644, dirMode: 0o755, uid: 0, gid: 0, offset, data: Buffer.from(data), ...more,
});

describe('CopyFile (core)', () => {
  it('writes chunks in order into a temporary file and renames it into place with the last one', async () => {
    const root = freshDir('shared');
    const guest = guestFor(root);
    const dest = path.join(root, 'pod', 'cfg', 'app.conf');
    const text = 'first-second-third';
    await guest.copyFile(chunk(dest, 'first-', 0, text.length, { fileMode: 0o100640, dirMode: 0o750, uid: 1234, gid: 5678 }));
    assert.equal(fs.existsSync(dest), false, 'no half file visible after chunk 1');
    await guest.copyFile(chunk(dest, 'second-', 6, text.length, { fileMode: 0o100640, dirMode: 0o750, uid: 1234, gid: 5678 }));
    assert.equal(fs.existsSync(dest), false, 'no half file visible after chunk 2');
    await guest.copyFile(chunk(dest, 'third', 13, text.length, { fileMode: 0o100640, dirMode: 0o750, uid: 1234, gid: 5678 }));
    assert.equal(fs.readFileSync(dest, 'utf8'), text);
    const st = fs.statSync(dest);
    assert.equal(st.mode & 0o7777, 0o640);
    assert.equal(st.uid, 1234);
    assert.equal(st.gid, 5678);
    for (const dir of [path.join(root, 'pod'), path.join(root, 'pod', 'cfg')]) {
      const d = fs.statSync(dir);
      assert.equal(d.mode & 0o7777, 0o750, `${dir} has dir_mode`);
      assert.equal(d.uid, 1234);
    }
    assert.deepEqual(fs.readdirSync(path.dirname(dest)), ['app.conf'], 'the temporary file is gone');
  });

  it('replaces an existing file atomically and accepts a relative path and an empty file', async () => {
    const root = freshDir('shared');
    const guest = guestFor(root);
    fs.writeFileSync(path.join(root, 'hosts'), 'old contents');
    await guest.copyFile(chunk('hosts', 'new', 0, 6));
    assert.equal(fs.readFileSync(path.join(root, 'hosts'), 'utf8'), 'old contents', 'old file until the transfer completes');
    await guest.copyFile(chunk('hosts', 'new', 3, 6));
    assert.equal(fs.readFileSync(path.join(root, 'hosts'), 'utf8'), 'newnew');
    await guest.copyFile(chunk('empty', '', 0, 0));
    assert.equal(fs.readFileSync(path.join(root, 'empty'), 'utf8'), '');
  });

  it('refuses a chunk that skips ahead, and one with no transfer in progress', async () => {
    const root = freshDir('shared');
    const guest = guestFor(root);
    await assert.rejects(guest.copyFile(chunk('f', 'xyz', 5, 10)), isKind('invalid-argument', /skips ahead.*no transfer/));
    await guest.copyFile(chunk('f', 'abcde', 0, 20));
    await assert.rejects(guest.copyFile(chunk('f', 'xyz', 10, 20)), isKind('invalid-argument', /offset 10 skips ahead: 5 bytes/));
    // A resend of the chunk just written is fine, and the transfer goes on.
    await guest.copyFile(chunk('f', 'abcde', 0, 20));
    await guest.copyFile(chunk('f', 'fghij', 5, 20));
    await guest.copyFile(chunk('f', 'klmnopqrst', 10, 20));
    assert.equal(fs.readFileSync(path.join(root, 'f'), 'utf8'), 'abcdefghijklmnopqrst');
  });

  it('refuses negative sizes and offsets and data beyond file_size', async () => {
    const guest = guestFor(freshDir('shared'));
    await assert.rejects(guest.copyFile(chunk('f', '', 0, -1)), isKind('invalid-argument', /file_size -1/));
    await assert.rejects(guest.copyFile(chunk('f', 'a', -1, 5)), isKind('invalid-argument', /offset -1/));
    await assert.rejects(guest.copyFile(chunk('f', 'abcdef', 0, 5)), isKind('invalid-argument', /ends at byte 6, beyond file_size 5/));
    await assert.rejects(guest.copyFile(chunk('f', 'x', 0, 1, { fileMode: 0o010644 })), isKind('invalid-argument', /only regular files/));
  });

  it('refuses `..`, paths outside the root and symlinks that lead out, and writes nothing outside', async () => {
    const root = freshDir('shared');
    const outside = freshDir('outside');
    fs.writeFileSync(path.join(outside, 'victim'), 'untouched');
    fs.symlinkSync(outside, path.join(root, 'escape-dir'));
    fs.symlinkSync(path.join(outside, 'victim'), path.join(root, 'escape-file'));
    const guest = guestFor(root);
    await assert.rejects(guest.copyFile(chunk('../outside/x', 'x', 0, 1)), isKind('invalid-argument', /contains "\.\."/));
    await assert.rejects(guest.copyFile(chunk(`${root}/a/../../x`, 'x', 0, 1)), isKind('invalid-argument', /\.\./));
    await assert.rejects(guest.copyFile(chunk(path.join(outside, 'victim'), 'x', 0, 1)), isKind('invalid-argument', /outside the allowed root/));
    await assert.rejects(guest.copyFile(chunk('escape-dir/victim', 'pwned', 0, 5)), isKind('invalid-argument', /through a symlink/));
    await assert.rejects(guest.copyFile(chunk('escape-dir/new/file', 'pwned', 0, 5)), isKind('invalid-argument', /through a symlink/));
    await assert.rejects(guest.copyFile(chunk('escape-file', 'pwned', 0, 5)), isKind('invalid-argument', /through a symlink/));
    await assert.rejects(guest.copyFile(chunk('link', '/etc/passwd', 0, 11, { fileMode: 0o120777 })), isKind('invalid-argument', /points outside/));
    await assert.rejects(guest.copyFile(chunk('link', '../../x', 0, 7, { fileMode: 0o120777 })), isKind('invalid-argument', /points outside/));
    assert.deepEqual(fs.readdirSync(outside), ['victim']);
    assert.equal(fs.readFileSync(path.join(outside, 'victim'), 'utf8'), 'untouched');
    assert.deepEqual(fs.readdirSync(root).sort(), ['escape-dir', 'escape-file']);
  });

  it('creates directories and in-root symlinks (a ConfigMap layout with ..data)', async () => {
    const root = freshDir('shared');
    const guest = guestFor(root);
    await guest.copyFile(chunk('cm/..2024_01_01', '', 0, 0, { fileMode: 0o040711 }));
    assert.equal(fs.statSync(path.join(root, 'cm', '..2024_01_01')).mode & 0o7777, 0o711);
    await guest.copyFile(chunk('cm/..2024_01_01/key', 'value', 0, 5));
    await guest.copyFile(chunk('cm/..data', '..2024_01_01', 0, 12, { fileMode: 0o120777 }));
    await guest.copyFile(chunk('cm/key', '..data/key', 0, 10, { fileMode: 0o120777 }));
    assert.equal(fs.readlinkSync(path.join(root, 'cm', 'key')), '..data/key');
    assert.equal(fs.readFileSync(path.join(root, 'cm', 'key'), 'utf8'), 'value');
  });
});

describe('GetMetrics (core)', () => {
  it('renders the RPC counters, process, guest and container figures as Prometheus text', async () => {
    // The RPC boundary's counters (server/RpcMetrics, which the core may not import) as they render:
    // the core shows any MetricsText as it is.
    const rpc: MetricsText = {
      render: () => [
        '# HELP agent_rpc_calls_total gRPC calls handled, by protocol version, method and status code.',
        '# TYPE agent_rpc_calls_total counter',
        'agent_rpc_calls_total{version="v1",method="CopyFile",code="OK"} 2',
        'agent_rpc_calls_total{version="v1",method="StartContainer",code="NOT_FOUND"} 1',
      ].join('\n') + '\n',
    };
    const containers: ContainerView[] = [
      { id: 'a', state: 'running' },
      { id: 'b', state: 'stopped' },
      { id: 'c', state: 'running' },
    ];
    const text = await guestFor(freshDir('shared'), containers).metrics(rpc);
    assert.match(text, /^agent_rpc_calls_total\{version="v1",method="CopyFile",code="OK"\} 2$/m);
    assert.match(text, /^agent_rpc_calls_total\{version="v1",method="StartContainer",code="NOT_FOUND"\} 1$/m);
    assert.match(text, /^agent_containers\{state="running"\} 2$/m);
    assert.match(text, /^agent_containers\{state="stopped"\} 1$/m);
    assert.match(text, /^agent_containers\{state="paused"\} 0$/m);
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.ok(value('agent_process_resident_memory_bytes') > 1e6);
    assert.ok(value('agent_process_open_fds') > 2);
    const anon = value('agent_process_resident_anon_bytes');
    assert.ok(anon > 1e6 && anon < value('agent_process_resident_memory_bytes'), `RssAnon ${anon}`);
    assert.ok(value('agent_process_uptime_seconds') > 0);
    const memTotal = Number(/^MemTotal:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
    assert.equal(value('guest_memory_total_bytes'), memTotal);
    assert.ok(value('guest_memory_available_bytes') > 0);
    assert.match(text, /^guest_load_average\{window="15m"\} [\d.]+$/m);
    // Well-formed exposition: every family has HELP and TYPE, every sample line parses.
    for (const line of text.trimEnd().split('\n')) {
      assert.match(line, /^(# (HELP|TYPE) \w+ .+|\w+(\{\w+="[^"]*"(,\w+="[^"]*")*\})? -?[\d.e+]+)$/, line);
    }
    const families = new Set([...text.matchAll(/^(\w+)(?:\{| )/gm)].map((m) => m[1]));
    for (const f of families) assert.match(text, new RegExp(`^# TYPE ${f} (counter|gauge)$`, 'm'), `TYPE of ${f}`);
  });
});

describe('OOM events (core)', () => {
  it('the queue keeps an event for a later reader, and hands a new one to a waiting reader', async () => {
    const q = new EventQueue<string>(8);
    q.push('early');
    assert.equal(q.pending, 1);
    assert.equal(await q.take(), 'early');
    assert.equal(q.pending, 0);
    const waiting = q.take();
    let settled = false;
    void waiting.then(() => (settled = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(settled, false, 'waits while the queue is empty');
    q.push('late');
    assert.equal(await waiting, 'late');
    assert.equal(q.pending, 0, 'delivered exactly once');
  });

  it('an aborted wait rejects and does not swallow the next event', async () => {
    const q = new EventQueue<string>(8);
    const ac = new AbortController();
    const aborted = q.take(ac.signal);
    ac.abort();
    await assert.rejects(aborted, isKind('failed-precondition', /cancelled/));
    await assert.rejects(q.take(AbortSignal.abort()), isKind('failed-precondition', /cancelled/));
    q.push('kept');
    assert.equal(await q.take(), 'kept');
    // An event taken as its caller went away is given back to the next taker.
    const e1 = { id: 'x' };
    const objects = new EventQueue<{ id: string }>(8);
    objects.push(e1);
    assert.equal(await objects.take(), e1);
    assert.equal(objects.untake({ id: 'x' }), false, 'only the very event taken');
    assert.equal(objects.untake(e1), true);
    assert.equal(objects.pending, 1);
    assert.equal(await objects.take(), e1);
  });

  it('bounds memory, counts what it drops, and lets cursor readers see every event', async () => {
    const q = new EventQueue<number>(3);
    for (let i = 1; i <= 5; i++) q.push(i);
    assert.equal(q.droppedUntaken, 2);
    assert.equal(await q.take(), 3);
    const all = await q.read(0);
    assert.deepEqual(all.events.map((e) => e.event), [3, 4, 5]);
    assert.equal(all.missed, 2);
    const later = q.read(q.head);
    q.push(6);
    assert.deepEqual((await later).events.map((e) => [e.seq, e.event]), [[6, 6]]);
  });

  /** A fake /proc and cgroup tree: container a has a cgroup of its own (pid 100), b sits in the agent's (200), c in the root (300). */
  function oomTree() {
    const base = freshDir('oom');
    const proc = path.join(base, 'proc');
    const cgroup = path.join(base, 'cgroup');
    const put = (file: string, text: string) => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
    };
    put(path.join(proc, 'self', 'cgroup'), '0::/agent\n');
    put(path.join(proc, '100', 'cgroup'), '0::/pods/ctr-a\n'); // a cgroup of its own
    put(path.join(proc, '200', 'cgroup'), '0::/agent\n'); // the agent's (cgroups disabled)
    put(path.join(proc, '300', 'cgroup'), '0::/\n'); // the root
    const events = path.join(cgroup, 'pods', 'ctr-a', 'memory.events');
    put(events, 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n');
    put(path.join(cgroup, 'agent', 'memory.events'), 'oom_kill 0\n');
    return { proc, cgroup, events };
  }

  /** What Container.create publishes: the init's process-started, then container-state created. */
  function created(bus: EventBus, containerId: string, pid: number): void {
    bus.publish({ type: 'process-started', containerId, execId: containerId, pid, at: Date.now() });
    bus.publish({ type: 'container-state', containerId, state: 'created', at: Date.now() });
  }

  it('the watcher follows containers on the bus, reports an oom_kill increase in a container cgroup, and skips containers without one', async () => {
    const { proc, cgroup, events } = oomTree();
    const bus = new EventBus();
    const guest = guestFor(freshDir('shared'), [], { procRoot: proc, cgroupRoot: cgroup, oomPollMs: 50, events: bus });
    guest.start();
    // The watcher's watches do not hold the event loop open (the agent's server does): hold it here.
    const keepAlive = setInterval(() => {}, 1000);
    try {
      created(bus, 'a', 100);
      created(bus, 'b', 200);
      created(bus, 'c', 300);
      await guest.oomWatcher.settled();
      assert.deepEqual(guest.oomWatcher.watched(), ['a']);
      // Noise in the agent's own cgroup is not a container's OOM.
      fs.writeFileSync(path.join(cgroup, 'agent', 'memory.events'), 'oom_kill 3\n');
      fs.writeFileSync(events, 'low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n');
      const ev = await guest.nextOomEvent(AbortSignal.timeout(5000));
      assert.equal(ev.containerId, 'a');
      // Nobody waits: the next kill is queued, not lost.
      fs.writeFileSync(events, 'oom 2\noom_kill 2\n');
      const deadline = Date.now() + 5000;
      while (guest.oomEvents.pending === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal((await guest.nextOomEvent()).containerId, 'a');
      assert.equal(guest.oomWatcher.events, 2);
      // Every kill is on the bus too, for cursor readers.
      const kills = (await bus.read(0)).filter((e) => e.event.type === 'oom-kill').map((e) => e.event);
      assert.deepEqual(kills.map((e) => e.containerId), ['a', 'a']);
      // The container goes away: it is no longer watched.
      bus.publish({ type: 'container-state', containerId: 'a', state: 'removed', at: Date.now() });
      assert.deepEqual(guest.oomWatcher.watched(), []);
      await guest.oomWatcher.settled();
      await assert.rejects(guest.nextOomEvent(AbortSignal.timeout(100)), isKind('failed-precondition'));
    } finally {
      clearInterval(keepAlive);
      guest.stop();
    }
  });

  it('the watcher counts OOM kills on demand: fresh from the file, null for a container without a cgroup of its own', async () => {
    const { proc, cgroup, events } = oomTree();
    const bus = new EventBus();
    const guest = guestFor(freshDir('shared'), [], { procRoot: proc, cgroupRoot: cgroup, events: bus });
    guest.start();
    try {
      assert.equal(await guest.oomWatcher.count('a'), null, 'not created yet');
      created(bus, 'a', 100);
      created(bus, 'b', 200);
      // Asked at once: the count waits for the watch being set up.
      assert.equal(await guest.oomWatcher.count('a'), 0);
      assert.equal(await guest.oomWatcher.count('b'), null);
      // The kernel counted a kill; the count reads it at once, whatever inotify has delivered yet, and publishes it.
      fs.writeFileSync(events, 'oom 1\noom_kill 1\n');
      assert.equal(await guest.oomWatcher.count('a'), 1);
      assert.equal(guest.oomEvents.pending, 1);
      await guest.oomWatcher.settled();
      assert.equal(guest.oomWatcher.events, 1, 'one kill is one event, whoever read it first');
      bus.publish({ type: 'container-state', containerId: 'a', state: 'removed', at: Date.now() });
      assert.equal(await guest.oomWatcher.count('a'), null);
      // Stopped: it follows the bus no more.
      guest.stop();
      created(bus, 'a', 100);
      await guest.oomWatcher.settled();
      assert.deepEqual(guest.oomWatcher.watched(), []);
    } finally {
      guest.stop();
    }
  });

  it('GetOOMEvent (Guest.nextOomEvent) cancelled as the event arrives keeps it for the next caller', async () => {
    const bus = new EventBus();
    const guest = guestFor('/nonexistent', [], { events: bus });
    const ac = new AbortController();
    const waiting = guest.nextOomEvent(ac.signal);
    const event: OomEvent = { type: 'oom-kill', containerId: 'c1', at: Date.now() };
    bus.publish(event);
    ac.abort();
    await assert.rejects(waiting, isKind('failed-precondition', /cancelled/));
    assert.equal(guest.oomEvents.pending, 1);
    assert.equal(await guest.nextOomEvent(), event);
  });

  it('an OOM event nobody took outlives the bus window: the take-queue keeps its own, and each goes to one caller', async () => {
    const bus = new EventBus({ capacity: 4 });
    const guest = guestFor('/nonexistent', [], { events: bus });
    bus.publish({ type: 'oom-kill', containerId: 'early', at: 1 });
    const other: CoreEvent = { type: 'container-state', containerId: 'x', state: 'running', at: 2 };
    for (let i = 0; i < 10; i++) bus.publish({ ...other });
    assert.equal(bus.oldestSeq, 8, 'the bus itself dropped it');
    bus.publish({ type: 'oom-kill', containerId: 'late', at: 3 });
    const [first, second] = await Promise.all([guest.nextOomEvent(), guest.nextOomEvent()]);
    assert.deepEqual([first.containerId, second.containerId], ['early', 'late']);
    assert.equal(guest.oomEvents.pending, 0);
    assert.equal(bus.waiting + guest.oomEvents.waiting, 0);
  });
});

describe('details, clock, hot-plug and entropy (core)', () => {
  it('GetGuestDetails reads the memory block size (hex) and the probe file when asked', async () => {
    const sys = freshDir('sys');
    const mem = path.join(sys, 'devices', 'system', 'memory');
    fs.mkdirSync(mem, { recursive: true });
    fs.writeFileSync(path.join(mem, 'block_size_bytes'), '8000000\n');
    fs.writeFileSync(path.join(mem, 'probe'), '');
    const guest = guestFor(freshDir('shared'), [], { sysRoot: sys });
    guest.drivers.addStorageHandler('virtio-fs');
    const d = await guest.details({ memBlockSize: true, memHotplugProbe: true });
    assert.equal(d.memBlockSizeBytes, 128 * 1024 * 1024);
    assert.equal(d.supportMemHotplugProbe, true);
    assert.deepEqual(d.agent, { version: AGENT_VERSION, initDaemon: false, storageHandlers: [...STORAGE_DRIVER_NAMES, 'virtio-fs'].filter((v, i, a) => a.indexOf(v) === i).sort(), deviceHandlers: [] });
    const notAsked = await guest.details({ memBlockSize: false, memHotplugProbe: false });
    assert.equal(notAsked.memBlockSizeBytes, 0);
    assert.equal(notAsked.supportMemHotplugProbe, false);
    fs.rmSync(path.join(mem, 'probe'));
    assert.equal((await guest.details({ memBlockSize: true, memHotplugProbe: true })).supportMemHotplugProbe, false);
  });

  it('SetGuestDateTime and OnlineCPUMem are refused on this host (not the guest init)', async () => {
    // Requests that would change nothing even if the guard were broken: the test then fails, the machine stays.
    const guest = guestFor(freshDir('shared'));
    assert.throws(() => guest.setDateTime(-1, 0), isKind('failed-precondition', /SetGuestDateTime refused/));
    await assert.rejects(guest.onlineCpuMem({ wait: true, nbCpus: 0, cpuOnly: true }), isKind('failed-precondition', /OnlineCPUMem refused/));
    await assert.rejects(guest.onlineCpuMem({ wait: false, nbCpus: 0, cpuOnly: true }), isKind('failed-precondition', /OnlineCPUMem refused/));
  });

  it('the sysfs walkers online offline CPUs (up to nb_cpus) and memory blocks, on a fake tree', async () => {
    const sys = freshDir('sys');
    const cpu = path.join(sys, 'devices', 'system', 'cpu');
    const mem = path.join(sys, 'devices', 'system', 'memory');
    fs.mkdirSync(path.join(cpu, 'cpu0'), { recursive: true }); // no online file, as on real machines
    for (const [n, state] of [[1, '1'], [2, '0'], [10, '0'], [3, '0']] as const) {
      fs.mkdirSync(path.join(cpu, `cpu${n}`));
      fs.writeFileSync(path.join(cpu, `cpu${n}`, 'online'), `${state}\n`);
    }
    for (const [n, state] of [[0, '1'], [7, '0'], [8, '0']] as const) {
      fs.mkdirSync(path.join(mem, `memory${n}`), { recursive: true });
      fs.writeFileSync(path.join(mem, `memory${n}`, 'online'), `${state}\n`);
    }
    const read = (d: string, n: string) => fs.readFileSync(path.join(d, n, 'online'), 'utf8').trim();
    assert.equal(await onlineCpus(2, { sysRoot: sys }), 2);
    assert.deepEqual(['cpu1', 'cpu2', 'cpu3', 'cpu10'].map((n) => read(cpu, n)), ['1', '1', '1', '0'], 'lowest offline CPUs first');
    await assert.rejects(onlineCpus(3, { sysRoot: sys, retries: 2, retryMs: 1 }), isKind('failed-precondition', /onlined 1 of 3 CPUs/));
    assert.equal(await onlineMemory(sys), 2);
    assert.deepEqual(['memory0', 'memory7', 'memory8'].map((n) => read(mem, n)), ['1', '1', '1']);
  });

  it('ReseedRandomDev writes the bytes and refuses empty or oversized data', async () => {
    const device = path.join(freshDir('dev'), 'random');
    fs.writeFileSync(device, '');
    const guest = guestFor(freshDir('shared'), [], { randomDevice: device });
    await guest.reseedRandom(Buffer.from('entropy!'));
    assert.equal(fs.readFileSync(device, 'utf8'), 'entropy!');
    await assert.rejects(guest.reseedRandom(Buffer.alloc(0)), isKind('invalid-argument', /needs data/));
    await assert.rejects(guest.reseedRandom(Buffer.alloc(MAX_RESEED_BYTES + 1)), isKind('invalid-argument', new RegExp(`at most ${MAX_RESEED_BYTES} bytes`)));
    await guest.reseedRandom(Buffer.alloc(MAX_RESEED_BYTES, 1));
  });
});
