// Tests of serial-port.ts: port discovery on a fake sysfs, the session logic
// on an in-memory device, and real grpc-js clients through (a) an emulated
// QEMU chardev + virtio-serial port and (b) the real device code (Pipe handle,
// non-blocking write(2)) over a pair of FIFOs, whose end-of-input is a level
// like the port's. QEMU itself is tested elsewhere.
// Run: node --import tsx --test src/agent/server/serial-port.test.ts
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { silentLogger, type Logger } from '../log';
import { CLIENT_PREFACE, FrameType, encodeFrame } from './http2-frames';
import {
  DevicePortIo,
  HELD_INPUT_MAX,
  findSerialPort,
  serveSerialIo,
  serveSerialPort,
  type PortHandlers,
  type PortIo,
  type SerialTransport,
} from './serial-port';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'serial-port-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let seq = 0;
const tmpPath = (name: string) => path.join(tmp, `${++seq}-${name}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

function captureLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

describe('findSerialPort', () => {
  function fakeSys(): { sys: string; dev: string; addPort(entry: string, name: string, withDev?: boolean): void } {
    const root = tmpPath('root');
    const sys = path.join(root, 'sys');
    const dev = path.join(root, 'dev');
    fs.mkdirSync(dev, { recursive: true });
    return {
      sys,
      dev,
      addPort(entry, name, withDev = true) {
        const d = path.join(sys, 'class', 'virtio-ports', entry);
        fs.mkdirSync(d, { recursive: true });
        fs.writeFileSync(path.join(d, 'name'), `${name}\n`);
        if (withDev) fs.writeFileSync(path.join(dev, entry), '');
      },
    };
  }

  it('returns the device of the port with that name among several', async () => {
    const f = fakeSys();
    f.addPort('vport0p1', 'org.qemu.guest_agent.0');
    f.addPort('vport1p1', 'agent.channel.0');
    f.addPort('vport1p2', '');
    assert.equal(await findSerialPort('agent.channel.0', f.sys, f.dev, 1000), path.join(f.dev, 'vport1p1'));
  });

  it('waits for the port to appear, and for its device node', async () => {
    const f = fakeSys();
    const found = findSerialPort('agent.channel.0', f.sys, f.dev, 3000);
    await sleep(80); // virtio_console not loaded yet: no class dir at all
    f.addPort('vport2p1', 'agent.channel.0', false);
    await sleep(80); // listed in sysfs, devtmpfs node not there yet
    let done = false;
    void found.then(() => (done = true));
    await sleep(30);
    assert.equal(done, false);
    fs.writeFileSync(path.join(f.dev, 'vport2p1'), '');
    assert.equal(await found, path.join(f.dev, 'vport2p1'));
  });

  it('rejects after the timeout, naming the ports it saw', async () => {
    const f = fakeSys();
    f.addPort('vport0p1', 'something.else');
    const t0 = Date.now();
    await assert.rejects(findSerialPort('agent.channel.0', f.sys, f.dev, 150), /agent\.channel\.0.*150 ms.*vport0p1=something\.else/);
    assert.ok(Date.now() - t0 >= 140);
  });
});

/** A device whose every side is under the test's control. */
class MemoryPort implements PortIo {
  handlers!: PortHandlers;
  written: Buffer[] = [];
  accepting = true; // false: write() answers EAGAIN
  maxWrite = Infinity; // per write() call
  budget = Infinity; // in all: EAGAIN once it is used up
  writeCalls = 0;
  rearms = 0;
  paused = false;
  closed = false;
  start(h: PortHandlers): void {
    this.handlers = h;
  }
  rearm(): void {
    this.rearms++;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  write(buf: Buffer): number {
    this.writeCalls++;
    if (!this.accepting) return 0;
    const n = Math.min(buf.length, this.maxWrite, this.budget);
    this.budget -= n;
    this.written.push(Buffer.from(buf.subarray(0, n)));
    return n;
  }
  close(): void {
    this.closed = true;
  }
  released = false;
  unread = Buffer.alloc(0);
  release(): { fd: number; unread: Buffer } {
    this.released = true;
    return { fd: 42, unread: this.unread };
  }
  get out(): Buffer {
    return Buffer.concat(this.written);
  }
}

/** Just what serveSerialIo touches of a grpc.Server; injected connections are collected. */
function fakeServer(): { server: grpc.Server; sessions: Duplex[]; shutdowns: number } {
  const state = { sessions: [] as Duplex[], shutdowns: 0, server: undefined as unknown as grpc.Server };
  state.server = {
    createConnectionInjector: () => ({
      injectConnection: (d: Duplex) => {
        state.sessions.push(d);
        d.on('error', () => {});
      },
      drain: () => {},
      destroy: () => {},
    }),
    tryShutdown: (cb: () => void) => {
      state.shutdowns++;
      cb();
    },
    forceShutdown: () => {
      state.shutdowns++;
    },
  } as unknown as grpc.Server;
  return state;
}

function collect(d: Duplex): { data: () => Buffer; ended: () => boolean } {
  const chunks: Buffer[] = [];
  let ended = false;
  d.on('data', (c: Buffer) => chunks.push(c));
  d.on('end', () => (ended = true));
  return { data: () => Buffer.concat(chunks), ended: () => ended };
}

const settings = encodeFrame(FrameType.SETTINGS, 0, 0);
const ping = encodeFrame(FrameType.PING, 0, 0, Buffer.alloc(8, 1));
const goaway = encodeFrame(FrameType.GOAWAY, 0, 0, Buffer.alloc(8));
const write = (d: Duplex, b: Buffer) => new Promise<void>((resolve, reject) => d.write(b, (err) => (err ? reject(err) : resolve())));

describe('serial sessions on an in-memory port', () => {
  function setup(options = {}) {
    const port = new MemoryPort();
    const fake = fakeServer();
    const { log, lines } = captureLogger();
    const t = serveSerialIo(port, fake.server, log, { rearmMinMs: 1, rearmMaxMs: 4, writeRetryMinMs: 1, writeRetryMaxMs: 4, hangupGraceMs: 0, ...options });
    return { port, fake, t, lines };
  }

  it('starts a session at a preface, feeds it in order, and a preface at a frame boundary replaces it', async () => {
    const { port, fake, t } = setup();
    port.handlers.data(Buffer.from('junk before any host'));
    assert.equal(fake.sessions.length, 0);
    const first = Buffer.concat([CLIENT_PREFACE, settings, ping]);
    port.handlers.data(first.subarray(0, 30));
    assert.equal(fake.sessions.length, 1);
    const s1 = collect(fake.sessions[0]!);
    port.handlers.data(Buffer.concat([first.subarray(30), CLIENT_PREFACE.subarray(0, 5)]));
    port.handlers.data(Buffer.concat([CLIENT_PREFACE.subarray(5), settings]));
    assert.equal(fake.sessions.length, 2);
    const s2 = collect(fake.sessions[1]!);
    await until('first session to end', () => s1.ended());
    assert.equal(s1.data().toString('hex'), first.toString('hex'));
    await sleep(5);
    assert.equal(s2.data().toString('hex'), Buffer.concat([CLIENT_PREFACE, settings]).toString('hex'));
    assert.equal(s2.ended(), false);
    assert.equal(t.sessions, 2);
    assert.equal(t.connected, true);
    assert.equal(t.stats.discardedIn, 'junk before any host'.length);
    t.close();
    assert.equal(port.closed, true);
  });

  it('ends the session on a hangup and polls the port again until a host is back', async () => {
    const { port, fake, t } = setup();
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s1 = collect(fake.sessions[0]!);
    assert.equal(port.rearms, 0);
    port.handlers.hangup();
    assert.equal(t.connected, false);
    await until('first session to end', () => s1.ended());
    // Level: while no host is connected every re-armed read reports a hangup again.
    for (let i = 1; i <= 5; i++) {
      await until(`re-arm ${i}`, () => port.rearms === i, 500);
      port.handlers.hangup();
    }
    await until('re-arm 6', () => port.rearms === 6, 500);
    // The rest of an interrupted connection after a hangup is not a session; a preface is.
    port.handlers.data(Buffer.concat([ping, CLIENT_PREFACE, settings]));
    assert.equal(fake.sessions.length, 2);
    assert.equal(t.stats.discardedIn, ping.length);
    t.close();
  });

  it('a hangup the host did not make (its next bytes continue the connection) keeps the session; a lasting one ends it', async () => {
    const { port, fake, t } = setup({ hangupGraceMs: 200 });
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s1 = collect(fake.sessions[0]!);
    port.handlers.hangup();
    await until('re-arm', () => port.rearms === 1, 500);
    // No preface: the same connection goes on (seen right after the port is opened under TCG).
    port.handlers.data(ping);
    assert.equal(fake.sessions.length, 1);
    assert.equal(t.connected, true);
    await sleep(5);
    assert.equal(s1.data().toString('hex'), Buffer.concat([CLIENT_PREFACE, settings, ping]).toString('hex'));
    assert.equal(s1.ended(), false);
    // A hangup that lasts past the grace: the host is gone.
    port.handlers.hangup();
    for (let i = 2; !s1.ended() && i < 200; i++) {
      await until(`re-arm ${i}`, () => port.rearms === i, 500);
      port.handlers.hangup();
    }
    assert.equal(s1.ended(), true);
    assert.equal(t.connected, false);
    // After a hangup, a preface is a new connection even mid-frame of the old one.
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    assert.equal(fake.sessions.length, 2);
    t.close();
  });

  it('drops what an ended session writes, so the next host never sees it', async () => {
    const { port, fake, t } = setup();
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s1 = fake.sessions[0]!;
    await write(s1, settings);
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s2 = fake.sessions[1]!;
    await write(s1, ping); // late write of the old session: callback called, bytes dropped
    await write(s2, ping);
    assert.equal(port.out.toString('hex'), Buffer.concat([settings, ping]).toString('hex'));
    assert.equal(t.stats.droppedOut, ping.length);
    t.close();
  });

  it("drops the guest's GOAWAY only after the host has sent one", async () => {
    const { port, fake, t } = setup();
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s1 = fake.sessions[0]!;
    await write(s1, Buffer.concat([settings, goaway, ping])); // host said nothing: the guest's GOAWAY goes out
    assert.equal(port.out.toString('hex'), Buffer.concat([settings, goaway, ping]).toString('hex'));
    port.written = [];
    port.handlers.data(goaway); // the host says goodbye
    await write(s1, Buffer.concat([goaway.subarray(0, 4)]));
    await write(s1, Buffer.concat([goaway.subarray(4), ping]));
    assert.equal(port.out.toString('hex'), ping.toString('hex'));
    t.close();
  });

  it('keeps output in order through EAGAIN and partial writes, without blocking the event loop', async () => {
    const { port, fake, t } = setup();
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s1 = fake.sessions[0]!;
    port.accepting = false;
    const big = encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(100_000, 0x5a));
    let done = 0;
    s1.write(settings, () => done++);
    s1.write(big, () => done++);
    s1.write(ping, () => done++);
    const ticks = { n: 0 };
    const ticker = setInterval(() => ticks.n++, 1);
    await sleep(40);
    assert.equal(port.out.length, 0);
    assert.ok(port.writeCalls >= 2, 'retried');
    assert.ok(port.writeCalls < 40, `backs off (${port.writeCalls} write calls in 40 ms)`);
    assert.ok(ticks.n >= 5, 'event loop kept running');
    clearInterval(ticker);
    assert.ok(t.stats.writeBlocked >= 2);
    port.accepting = true;
    port.maxWrite = 777;
    await until('all output', () => done === 3);
    assert.equal(port.out.toString('hex'), Buffer.concat([settings, big, ping]).toString('hex'));
    t.close();
  });

  it('discards output queued by a session that ends before the device takes it', async () => {
    const { port, fake, t } = setup();
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s1 = fake.sessions[0]!;
    port.accepting = false; // no host connected: EAGAIN
    let oldDone = false;
    s1.write(encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(50_000)), () => (oldDone = true));
    await sleep(10);
    port.budget = 5; // the device takes a few bytes of the old frame, then blocks again
    port.accepting = true;
    await until('a partial write', () => port.out.length > 0);
    const leaked = port.out.length;
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings])); // the next host
    await until('old write callback', () => oldDone, 500);
    assert.equal(leaked, 5);
    const s2 = fake.sessions[1]!;
    port.budget = Infinity;
    await write(s2, ping);
    assert.equal(port.out.subarray(leaked).toString('hex'), ping.toString('hex'));
    t.close();
  });

  it('a session whose host hung up and whose output the port no longer takes ends at once: the next host never reads its queue', async () => {
    const { port, fake, t } = setup({ hangupGraceMs: 60_000 });
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s1 = collect(fake.sessions[0]!);
    port.handlers.hangup(); // the host left; within the grace the session is kept
    port.accepting = false; // and no host is connected: EAGAIN
    let oldDone = false;
    fake.sessions[0]!.write(encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(1000)), () => (oldDone = true));
    await until('the old session ends', () => s1.ended(), 500);
    assert.ok(oldDone, 'its write was answered (and dropped)');
    port.accepting = true; // the next host connects
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s2 = fake.sessions[1]!;
    await write(s2, ping);
    assert.equal(port.out.toString('hex'), ping.toString('hex'), 'the next host reads only its own session');
    t.close();
  });

  it('pauses the port while a session does not read, and resumes when it does', async () => {
    const { port, fake, t } = setup();
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s1 = fake.sessions[0]!; // nobody reads it yet
    port.handlers.data(encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(64 * 1024)));
    assert.equal(port.paused, true);
    s1.resume();
    await until('resume', () => !port.paused);
    t.close();
  });

  it('logs session starts and ends at debug level with a session counter', async () => {
    const { port, t, lines } = setup();
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings, CLIENT_PREFACE]));
    port.handlers.hangup();
    const sessionLines = lines.filter((l) => String(l.msg).startsWith('serial session'));
    assert.deepEqual(
      sessionLines.map((l) => [l.level, l.msg, l.session, l.reason]),
      [
        [20, 'serial session started', 1, undefined],
        [20, 'serial session ended', 1, 'new host connection'],
        [20, 'serial session started', 2, undefined],
        [20, 'serial session ended', 2, 'host disconnected'],
      ],
    );
    t.close();
  });

  it('holdInput keeps a new host connection for the next image; handOver gives it up with the port, and the next transport serves it first', async () => {
    const { port, fake, t, lines } = setup();
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    const s1 = collect(fake.sessions[0]!);
    t.holdInput();
    port.handlers.data(ping); // the current session goes on
    const next = Buffer.concat([CLIENT_PREFACE, settings, ping]);
    port.handlers.data(Buffer.concat([settings, next.subarray(0, 20)])); // its last frame, then a new host
    port.handlers.data(next.subarray(20, 40));
    port.unread = next.subarray(40); // read by the device, not yet delivered
    assert.equal(fake.sessions.length, 1, 'no session for the new host in this image');
    const handed = t.handOver();
    assert.equal(handed.fd, 42);
    assert.equal(handed.input.toString('hex'), next.toString('hex'));
    assert.equal(port.released, true);
    assert.equal(port.closed, false, 'the device stays open for the next image');
    await until('the old session to end', () => s1.ended());
    assert.equal(s1.data().toString('hex'), Buffer.concat([CLIENT_PREFACE, settings, ping, settings]).toString('hex'));
    assert.ok(lines.some((l) => l.msg === 'serial port: host connected during the handover; its bytes are kept for the next agent image'));
    assert.throws(() => t.handOver(), /closed/);

    const port2 = new MemoryPort();
    const fake2 = fakeServer();
    serveSerialIo(port2, fake2.server, silentLogger, {}, handed.input);
    assert.equal(fake2.sessions.length, 1);
    const s2 = collect(fake2.sessions[0]!);
    await until('the kept bytes', () => s2.data().length === next.length);
    assert.equal(s2.data().toString('hex'), next.toString('hex'));
  });

  it('holdInput stops reading once HELD_INPUT_MAX bytes are kept', () => {
    const { port, fake, t } = setup();
    t.holdInput();
    port.handlers.data(Buffer.concat([CLIENT_PREFACE, settings]));
    assert.equal(fake.sessions.length, 0);
    assert.equal(port.paused, false);
    port.handlers.data(Buffer.alloc(HELD_INPUT_MAX));
    assert.equal(port.paused, true);
    assert.equal(t.handOver().input.length, CLIENT_PREFACE.length + settings.length + HELD_INPUT_MAX);
  });

  it('serves no new host once the grpc.Server is shut down', () => {
    const { port, fake, t } = setup();
    port.handlers.data(CLIENT_PREFACE);
    fake.server.tryShutdown(() => {});
    port.handlers.data(CLIENT_PREFACE);
    assert.equal(fake.sessions.length, 1);
    assert.equal(fake.shutdowns, 1);
    t.close();
  });
});

// ---- real grpc-js clients

const echoService: grpc.ServiceDefinition = {
  Echo: {
    path: '/test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
    originalName: 'echo',
  },
};

function echoServer(): grpc.Server {
  const server = new grpc.Server();
  server.addService(echoService, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
  });
  return server;
}

function echo(client: grpc.Client, req: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      '/test.Echo/Echo',
      (b: Buffer) => b,
      (b: Buffer) => b,
      req,
      new grpc.Metadata({ waitForReady: true }),
      { deadline: Date.now() + 10_000 },
      (err, res) => (err ? reject(err) : resolve(res!)),
    ),
  );
}

/**
 * A QEMU chardev socket in front of a port: one host connection at a time
 * (later ones wait in the backlog), host bytes become port input, port writes
 * go to the connected host.
 */
abstract class ChardevEmulator {
  readonly events = new EventEmitter();
  host: net.Socket | undefined;
  hostsServed = 0;
  private readonly backlog: net.Socket[] = [];
  private server: net.Server | undefined;

  async listen(sockPath: string): Promise<void> {
    this.server = net.createServer((s) => this.attach(s));
    await new Promise<void>((resolve) => this.server!.listen(sockPath, resolve));
  }

  private attach(s: net.Socket): void {
    s.on('error', () => {});
    if (this.host) {
      s.pause();
      this.backlog.push(s);
      return;
    }
    this.host = s;
    this.hostsServed++;
    this.hostConnected(s);
    s.on('data', (d: Buffer) => this.fromHost(d));
    s.on('close', () => {
      this.host = undefined;
      this.hostGone();
      this.events.emit('host-closed');
      const next = this.backlog.shift();
      if (next) {
        this.attach(next);
        next.resume();
      }
    });
    s.resume();
  }

  protected abstract hostConnected(s: net.Socket): void;
  protected abstract fromHost(d: Buffer): void;
  protected abstract hostGone(): void;

  stop(): Promise<void> {
    this.host?.destroy();
    for (const s of this.backlog) s.destroy();
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * The virtio-serial port in memory: EAGAIN while no host. A host disconnect is
 * seen by the next read (queued behind that host's bytes, so even a quick
 * reconnect shows it) and then as a level while no host is connected; or, with
 * hideHangups, never (the worst case of quick reconnects). inputDelayMs makes
 * the guest slow (as under TCG): it reads a host's last bytes, and answers
 * them, after the next host has connected.
 */
class EmulatedPort extends ChardevEmulator implements PortIo {
  hangupsReported = 0;
  private handlers: PortHandlers | undefined;
  private inbox: Array<Buffer | 'hangup'> = [];
  private reading = false;
  private paused = false;

  constructor(
    private readonly hideHangups: boolean,
    private readonly inputDelayMs = 0,
  ) {
    super();
  }

  private input(item: Buffer | 'hangup'): void {
    const deliver = () => {
      this.inbox.push(item);
      this.pump();
    };
    if (this.inputDelayMs > 0) setTimeout(deliver, this.inputDelayMs);
    else deliver();
  }

  protected hostConnected(): void {}
  protected fromHost(d: Buffer): void {
    this.input(d);
  }
  protected hostGone(): void {
    if (!this.hideHangups) this.input('hangup');
    else this.pump();
  }

  private hangup(): void {
    this.reading = false;
    this.hangupsReported++;
    this.handlers!.hangup();
  }

  private pump(): void {
    setImmediate(() => {
      if (!this.handlers) return;
      while (this.inbox.length > 0 && this.reading && !this.paused) {
        const item = this.inbox.shift()!;
        if (item === 'hangup') this.hangup();
        else this.handlers.data(item);
      }
      if (!this.host && this.inbox.length === 0 && this.reading && !this.hideHangups && this.inputDelayMs === 0) this.hangup();
    });
  }

  start(h: PortHandlers): void {
    this.handlers = h;
    this.reading = true;
    this.pump();
  }
  rearm(): void {
    this.reading = true;
    this.pump();
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
    this.pump();
  }
  release(): { fd: number; unread: Buffer } {
    throw new Error('the emulated port has no fd to hand over');
  }
  write(buf: Buffer): number {
    const h = this.host;
    if (!h || !h.writable) return 0;
    const n = Math.min(buf.length, 8192);
    h.write(Buffer.from(buf.subarray(0, n)));
    return n;
  }
  close(): void {
    this.reading = false;
  }
}

/**
 * The chardev's other end as a pair of FIFOs, read and written by the real
 * DevicePortIo: guest input is fifoIn (a writer is open only while a host is
 * connected, so its end-of-input is a level, like the port's), guest output
 * fifoOut (always drained; dropped while no host is connected, as QEMU does).
 */
class FifoChardev extends ChardevEmulator {
  readonly fifoIn = tmpPath('in.fifo');
  readonly fifoOut = tmpPath('out.fifo');
  private toGuest: net.Socket | undefined;
  private readonly fromGuest: net.Socket;

  constructor() {
    super();
    execFileSync('mkfifo', [this.fifoIn, this.fifoOut]);
    const fd = fs.openSync(this.fifoOut, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    this.fromGuest = new net.Socket({ fd, readable: true, writable: false });
    this.fromGuest.on('data', (d: Buffer) => {
      if (this.host?.writable) this.host.write(d);
    });
  }

  /** What the guest side opens (the real port is one O_RDWR fd). */
  guestFds = () => ({
    readFd: fs.openSync(this.fifoIn, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK),
    writeFd: fs.openSync(this.fifoOut, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK),
  });

  protected hostConnected(): void {
    const fd = fs.openSync(this.fifoIn, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    this.toGuest = new net.Socket({ fd, readable: false, writable: true });
    this.toGuest.on('error', () => {});
  }
  protected fromHost(d: Buffer): void {
    this.toGuest?.write(d);
  }
  protected hostGone(): void {
    this.toGuest?.end(); // last writer closes: the guest reads end-of-input until the next host
    this.toGuest = undefined;
  }

  override async stop(): Promise<void> {
    this.fromGuest.destroy();
    await super.stop();
  }
}

/** `rounds` sequential host connections, each a fresh client: calls, close, wait for the chardev to see it go. */
async function sessions(emu: ChardevEmulator, sockPath: string, rounds: number): Promise<void> {
  const big = Buffer.alloc(200_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  for (let round = 1; round <= rounds; round++) {
    const client = new grpc.Client(`unix:${sockPath}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    try {
      const small = Buffer.from(`round ${round}`);
      assert.equal((await echo(client, small)).toString(), small.toString(), `round ${round}: first call`);
      assert.ok((await echo(client, big)).equals(big), `round ${round}: 200 kB call`);
      const many = await Promise.all([1, 2, 3, 4].map((k) => echo(client, Buffer.from(`${round}.${k}`))));
      assert.deepEqual(many.map(String), [1, 2, 3, 4].map((k) => `${round}.${k}`), `round ${round}: concurrent calls`);
    } finally {
      const gone = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`round ${round}: the host connection did not close`)), 5000);
        emu.events.once('host-closed', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      client.close();
      await gone;
    }
  }
}

describe('grpc-js through the serial transport', () => {
  const ROUNDS = 10;
  const options = { rearmMinMs: 2, rearmMaxMs: 20, hangupGraceMs: 0 };

  async function withTransport(
    emu: ChardevEmulator,
    start: (server: grpc.Server) => SerialTransport,
    check: (t: SerialTransport) => void,
  ): Promise<void> {
    const sockPath = tmpPath('chardev.sock');
    await emu.listen(sockPath);
    const server = echoServer();
    const t = start(server);
    try {
      await sessions(emu, sockPath, ROUNDS);
      assert.equal(emu.hostsServed, ROUNDS);
      check(t);
    } finally {
      t.close();
      server.forceShutdown();
      await emu.stop();
    }
  }

  it(`serves ${ROUNDS} sequential host connections, hangups reported (emulated port)`, async () => {
    const port = new EmulatedPort(false);
    await withTransport(
      port,
      (server) => serveSerialIo(port, server, silentLogger, options),
      (t) => {
        assert.equal(t.sessions, ROUNDS);
        // (the last disconnect's hangup may not have been read yet)
        assert.ok(port.hangupsReported >= ROUNDS - 1, `hangups ${port.hangupsReported}`);
      },
    );
  });

  it(`serves ${ROUNDS} sequential host connections with hangups never reported: preface detection alone`, async () => {
    const port = new EmulatedPort(true);
    await withTransport(
      port,
      (server) => serveSerialIo(port, server, silentLogger, options),
      (t) => {
        assert.equal(port.hangupsReported, 0);
        assert.equal(t.sessions, ROUNDS);
      },
    );
  });

  it(`serves ${ROUNDS} sequential host connections with hangups never reported and a slow guest: late GOAWAYs dropped`, async () => {
    // The guest reads the old host's GOAWAY only after the next host has
    // connected, so the guest's own GOAWAY in reply would be that host's first frame.
    const port = new EmulatedPort(true, 5);
    await withTransport(
      port,
      (server) => serveSerialIo(port, server, silentLogger, options),
      (t) => {
        assert.equal(t.sessions, ROUNDS);
        assert.ok(t.stats.droppedOut > 0, 'some guest output was dropped');
      },
    );
  });

  it(`serves ${ROUNDS} sequential host connections through the real device code (Pipe handle, write(2)) on FIFOs`, async () => {
    const chardev = new FifoChardev();
    const { log, lines } = captureLogger();
    await withTransport(
      chardev,
      (server) => serveSerialIo(new DevicePortIo(chardev.guestFds), server, log, options),
      (t) => {
        assert.equal(t.sessions, ROUNDS);
        assert.ok(t.stats.bytesOut > ROUNDS * 200_000);
        const ends = lines.filter((l) => l.msg === 'serial session ended').map((l) => l.reason);
        assert.ok(ends.length >= ROUNDS - 1, `session ends logged: ${ends.join(', ')}`);
        assert.equal(lines.filter((l) => l.level !== undefined && (l.level as number) >= 40).length, 0, 'no warnings');
      },
    );
  });
});

describe('a serial port handed over open (an exec in place)', () => {
  it('a host that connects while the port is held is answered by the next transport on the same fd (real device code on FIFOs, grpc-js)', async () => {
    const options = { rearmMinMs: 2, rearmMaxMs: 20, hangupGraceMs: 0 };
    const chardev = new FifoChardev();
    const sockPath = tmpPath('chardev.sock');
    await chardev.listen(sockPath);
    const server1 = echoServer();
    const server2 = echoServer();
    const t1 = serveSerialIo(new DevicePortIo(chardev.guestFds), server1, silentLogger, options);
    let t2: SerialTransport | undefined;
    const clients: grpc.Client[] = [];
    const newClient = () => {
      const c = new grpc.Client(`unix:${sockPath}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      clients.push(c);
      return c;
    };
    try {
      const first = newClient();
      assert.equal((await echo(first, Buffer.from('before'))).toString(), 'before');
      t1.holdInput();
      const gone = new Promise((resolve) => chardev.events.once('host-closed', resolve));
      first.close();
      await gone;
      // Connects and calls while the old image no longer serves: nothing answers yet.
      const during = echo(newClient(), Buffer.from('during the exec'));
      let answered = false;
      void during.then(() => (answered = true), () => {});
      await sleep(300);
      assert.equal(answered, false);
      const handed = t1.handOver();
      const { readFd, writeFd } = chardev.guestFds();
      fs.closeSync(readFd); // the new image reads from the fd handed over
      t2 = serveSerialIo(new DevicePortIo(chardev.guestFds, { readFd: handed.fd, writeFd }), server2, silentLogger, options, handed.input);
      assert.equal((await during).toString(), 'during the exec');
      assert.equal(t1.sessions, 1);
      assert.equal(t2.sessions, 1);
    } finally {
      for (const c of clients) c.close();
      t1.close();
      t2?.close();
      server1.forceShutdown();
      server2.forceShutdown();
      await chardev.stop();
    }
  });
});

describe('serveSerialPort', () => {
  it('throws at once when the device cannot be opened', () => {
    const server = echoServer();
    assert.throws(() => serveSerialPort(path.join(tmp, 'no-such-vport'), server, silentLogger), /ENOENT/);
    server.forceShutdown();
  });

  it('reads a device path it opens itself (a FIFO standing in for the port)', async () => {
    const fifo = tmpPath('port.fifo');
    execFileSync('mkfifo', [fifo]);
    const fake = fakeServer();
    const t = serveSerialPort(fifo, fake.server, silentLogger);
    const w = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    fs.writeSync(w, Buffer.concat([CLIENT_PREFACE, settings]));
    await until('a session', () => fake.sessions.length === 1);
    const s = collect(fake.sessions[0]!);
    fs.closeSync(w); // O_RDWR on a FIFO makes us a writer too, so no hangup here: just the bytes
    await until('its bytes', () => s.data().length === CLIENT_PREFACE.length + settings.length);
    t.close();
  });
});
