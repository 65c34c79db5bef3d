// gRPC over a virtio-serial port (Kata's `agent.channel.0`): the host runtime
// connects to QEMU's chardev socket, QEMU relays the bytes to a character
// device in the guest (/dev/vportNpM), and we serve grpc-js on it.
//
// What makes this harder than a socket (measured; docs/machine-facts.md,
// "virtio-serial"):
//  - The port is one byte pipe for every host connection, one after another.
//    A host disconnect is a LEVEL (read returns 0 / POLLHUP only while no host
//    is connected), so a quick reconnect hides it and the next client's bytes
//    continue the old stream. We therefore follow HTTP/2 frame boundaries on
//    the incoming bytes (http2-frames.ts): a client preface at a frame
//    boundary starts a new session; a hangup ends the current one.
//  - Each session gets a fresh Duplex of our own injected into the grpc.Server
//    (never the port socket itself: http2 would own it and a late GOAWAY of
//    the old session would become the next client's first frame). An ended
//    session's late writes are dropped, and once the peer has sent GOAWAY the
//    guest's own GOAWAY frames are dropped too.
//  - The port is opened once and the fd kept forever (reopening per session
//    can lose the next client's preface). libuv treats the device as a file,
//    so it is read through an internal Pipe handle (fd-socket.ts). Writes go
//    out with non-blocking write(2) from our own queue, NOT through the
//    socket: while no host is connected the device answers EAGAIN, and bytes
//    queued inside libuv would be written to whichever host connects next.
//    Our queue is purged when its session ends; EAGAIN is retried on a short
//    backing-off timer, never blocking the event loop.
//
// serveSerialPort wires a device path; serveSerialIo takes any PortIo (tests
// use in-memory and FIFO-based ones).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log';
import { socketFromFd } from '../../native/fd-socket';
import { CLIENT_PREFACE, InboundTracker, OutboundFilter } from './http2-frames';

/** The Kata agent's virtio-serial port name. */
export const KATA_AGENT_CHANNEL = 'agent.channel.0';

/**
 * Waits until a virtio-serial port called `name` exists and returns its device
 * path (devRoot/vportNpM). Without udev there is no /dev/virtio-ports/NAME
 * symlink: the ports are listed in sysRoot/class/virtio-ports/vport*\/name,
 * which appear shortly after virtio_console loads, and devtmpfs creates the
 * device node a moment later; both are polled. Rejects after timeoutMs,
 * naming the ports that were seen.
 */
export async function findSerialPort(
  name: string,
  sysRoot = '/sys',
  devRoot = '/dev',
  timeoutMs = 10_000,
  pollMs = 20,
): Promise<string> {
  const classDir = path.join(sysRoot, 'class', 'virtio-ports');
  const deadline = Date.now() + timeoutMs;
  let seen: string[] = [];
  for (;;) {
    seen = [];
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(classDir).filter((e) => /^vport\d+p\d+$/.test(e)).sort();
    } catch {
      // class dir not there yet: virtio_console not loaded
    }
    for (const entry of entries) {
      let portName: string;
      try {
        portName = fs.readFileSync(path.join(classDir, entry, 'name'), 'utf8').trim();
      } catch {
        continue; // port appearing or going away
      }
      seen.push(`${entry}=${portName || '(unnamed)'}`);
      if (portName !== name) continue;
      const dev = path.join(devRoot, entry);
      if (fs.existsSync(dev)) return dev;
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  throw new Error(
    `virtio-serial port ${name} did not appear within ${timeoutMs} ms under ${classDir} with a device in ${devRoot}` +
      ` (ports seen: ${seen.length > 0 ? seen.join(', ') : 'none'})`,
  );
}

/** What a PortIo reports. */
export interface PortHandlers {
  /** Bytes from the host, in order. */
  data(chunk: Buffer): void;
  /** A read reported end of input: no host is connected. Reading stops until rearm(). */
  hangup(): void;
  /** The device failed; reading stops until rearm() (which may reopen it). */
  error(err: Error): void;
}

/** The device end of the port: injectable so the session logic can be tested without QEMU. */
export interface PortIo {
  start(handlers: PortHandlers): void;
  /** Read again after hangup() or error(). */
  rearm(): void;
  /** Input back-pressure. */
  pause(): void;
  resume(): void;
  /**
   * Non-blocking write: how many bytes the device took (possibly fewer than
   * buf.length), 0 if it would block (EAGAIN: no host connected, or the host
   * is slow). Throws on other errors.
   */
  write(buf: Buffer): number;
  close(): void;
  /**
   * Stops reading and gives the device up without closing it (an exec in
   * place hands it to the next image): its fd, and what was read from it but
   * not yet delivered. Nothing of this PortIo works afterwards.
   */
  release(): { fd: number; unread: Buffer };
}

export interface SerialServeOptions {
  /** First delay before reading again after a hangup; doubles while no host is connected. Default 5 ms. */
  rearmMinMs?: number;
  /** Longest such delay (the added latency of a host's first bytes). Default 50 ms. */
  rearmMaxMs?: number;
  /** First retry delay for a write that got EAGAIN; doubles while it persists. Default 1 ms. */
  writeRetryMinMs?: number;
  /** Default 50 ms. */
  writeRetryMaxMs?: number;
  /** An ended session's Duplex is destroyed if http2 has not closed it after this long. Default 2000 ms. */
  endGraceMs?: number;
  /**
   * How long the port must keep reporting a hangup before the current session
   * counts as gone. Default 1000 ms. A port just opened can report one while
   * its host is connected and sending (seen under TCG: a read of 0 between
   * the client's first frames and the rest); the next bytes then either
   * continue that connection, or start with the client preface of a new one.
   */
  hangupGraceMs?: number;
}

export interface SerialTransport {
  /** Sessions (host connections) started so far; also the id of the latest. */
  readonly sessions: number;
  /** Whether a session is current. */
  readonly connected: boolean;
  /** Byte counters since start. */
  readonly stats: Readonly<SerialStats>;
  /** Ends the current session, stops reading and closes the device. Idempotent. */
  close(): void;
  /** Takes no new host session; the current one goes on (answers in flight still leave). */
  stopAccepting(): void;
  /**
   * For an exec in place: takes no new host session, and from the first byte
   * of a new host connection keeps everything the host sends for the next
   * image instead of dropping it (handOver). Reading stops once
   * HELD_INPUT_MAX bytes are kept: the rest waits in the device.
   */
  holdInput(): void;
  /**
   * Ends the current session, stops reading and gives the device up without
   * closing it: its fd and the host bytes kept since holdInput() (a new
   * connection's preface first), for serveSerialPort's `inherited`.
   */
  handOver(): InheritedPort;
}

/** A port an earlier agent image handed over: its open fd, and the host bytes it had read and kept. */
export interface InheritedPort {
  fd: number;
  input: Buffer;
}

/** Host bytes kept for the next image before reading stops (the device buffers the rest). */
export const HELD_INPUT_MAX = 1 << 20;

export interface SerialStats {
  bytesIn: number;
  bytesOut: number;
  /** Host bytes outside any session (before a preface). */
  discardedIn: number;
  /** Guest bytes of ended sessions, and guest GOAWAY frames after the peer's GOAWAY. */
  droppedOut: number;
  /** write(2) calls that got EAGAIN. */
  writeBlocked: number;
}

/** One host connection as seen by grpc-js. */
class SerialSession extends Duplex {
  readonly out = new OutboundFilter();
  readonly startedAt = Date.now();
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    readonly id: number,
    private readonly mux: SerialMux,
  ) {
    super({ allowHalfOpen: false });
  }

  override _read(): void {
    this.mux.sessionWantsInput(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.mux.sessionWrite(this, chunk, cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.mux.sessionWrite(this, chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.mux.sessionClosed(this, 'server ended the connection');
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.mux.sessionClosed(this, 'server closed the connection');
    cb(err);
  }
}

interface Pending {
  session: SerialSession;
  buf: Buffer;
  cb: () => void;
}

class SerialMux {
  readonly stats: SerialStats = { bytesIn: 0, bytesOut: 0, discardedIn: 0, droppedOut: 0, writeBlocked: 0 };
  count = 0;
  current: SerialSession | undefined;
  accepting = true;
  private closed = false;
  private readonly tracker = new InboundTracker();
  private queue: Pending[] = [];
  private flushing = false;
  private inputPaused = false;
  private deviceFailing = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private rearmTimer: NodeJS.Timeout | undefined;
  private rearmDelay: number;
  /** When the port began reporting a hangup while a session was current; 0 when it does not. */
  private hangupSince = 0;
  /** After holdInput(): host bytes kept for the next image; `capturing` once a new connection began. */
  private held: Buffer[] | null = null;
  private heldBytes = 0;
  private capturing = false;
  private readonly o: Required<SerialServeOptions>;

  constructor(
    private readonly io: PortIo,
    private readonly inject: (connection: Duplex) => void,
    private readonly log: Logger,
    options: SerialServeOptions,
  ) {
    this.o = {
      rearmMinMs: options.rearmMinMs ?? 5,
      rearmMaxMs: options.rearmMaxMs ?? 50,
      writeRetryMinMs: options.writeRetryMinMs ?? 1,
      writeRetryMaxMs: options.writeRetryMaxMs ?? 50,
      endGraceMs: options.endGraceMs ?? 2000,
      hangupGraceMs: options.hangupGraceMs ?? 1000,
    };
    this.retryDelay = this.o.writeRetryMinMs;
    this.rearmDelay = this.o.rearmMinMs;
  }

  start(): void {
    this.io.start({
      data: (chunk) => this.onData(chunk),
      hangup: () => this.onHangup(),
      error: (err) => this.onDeviceError(err),
    });
  }

  close(): void {
    if (this.closed) return;
    const s = this.current;
    if (s) this.endSession(s, 'transport closed');
    this.closed = true;
    s?.destroy();
    clearTimeout(this.retryTimer);
    clearTimeout(this.rearmTimer);
    this.purge();
    this.io.close();
  }

  // ---- host -> guest

  holdInput(): void {
    this.accepting = false;
    this.held ??= [];
  }

  handOver(): InheritedPort {
    if (this.closed) throw new Error('the serial transport is closed: nothing to hand over');
    const { fd, unread } = this.io.release();
    const s = this.current;
    if (s) this.endSession(s, 'handed over to the next agent image');
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.rearmTimer);
    this.purge();
    // Unread bytes not preceded by a new connection may be the tail of the old one: the next image's tracker drops them up to a preface.
    return { fd, input: Buffer.concat([...(this.held ?? []), unread]) };
  }

  private keep(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.held!.push(bytes);
    this.heldBytes += bytes.length;
    if (this.heldBytes >= HELD_INPUT_MAX && !this.inputPaused) {
      this.inputPaused = true;
      this.io.pause();
    }
  }

  /** Host bytes as they arrive (and, at the start of a takeover, those the previous image kept). */
  onData(chunk: Buffer): void {
    if (this.closed) return;
    if (this.capturing) {
      this.keep(chunk);
      return;
    }
    if (this.hangupSince !== 0) {
      this.hangupSince = 0;
      // A new host connection starts with the client preface; anything else continues the one before the hangup.
      const n = Math.min(chunk.length, CLIENT_PREFACE.length);
      if (chunk.subarray(0, n).equals(CLIENT_PREFACE.subarray(0, n))) this.tracker.reset();
      else this.log.debug({ session: this.current?.id }, 'serial port: the host was still there after a hangup; the session goes on');
    }
    this.rearmDelay = this.o.rearmMinMs;
    this.deviceFailing = false;
    for (const e of this.tracker.push(chunk)) {
      switch (e.kind) {
        case 'preface':
          if (this.current) this.endSession(this.current, 'new host connection');
          if (this.accepting) this.startSession();
          else if (this.held) {
            this.capturing = true;
            this.log.debug('serial port: host connected during the handover; its bytes are kept for the next agent image');
          } else this.log.debug('serial port: host connected after shutdown, not served');
          break;
        case 'bytes': {
          if (this.capturing) {
            this.keep(e.bytes);
            break;
          }
          const s = this.current;
          if (!s) {
            this.stats.discardedIn += e.bytes.length;
            break;
          }
          s.bytesIn += e.bytes.length;
          this.stats.bytesIn += e.bytes.length;
          if (!s.push(e.bytes) && !this.inputPaused) {
            this.inputPaused = true;
            this.io.pause();
          }
          break;
        }
        case 'goaway':
          if (this.current && !this.current.out.dropGoaway) {
            this.current.out.dropGoaway = true;
            this.log.debug({ session: this.current.id }, 'serial session: host sent GOAWAY');
          }
          break;
        case 'discarded':
          this.stats.discardedIn += e.length;
          this.log.debug({ bytes: e.length }, 'serial port: dropped host bytes outside any session');
          break;
      }
    }
    // From here on the bytes are kept raw: what the tracker still holds of this chunk too.
    if (this.capturing) this.keep(this.tracker.takeHeld());
  }

  private onHangup(): void {
    if (this.closed) return;
    if (this.current) {
      const now = Date.now();
      if (this.hangupSince === 0) this.hangupSince = now;
      if (now - this.hangupSince >= this.o.hangupGraceMs) {
        this.hangupSince = 0;
        this.endSession(this.current, 'host disconnected');
        this.tracker.reset();
      }
    } else {
      this.hangupSince = 0;
      this.tracker.reset();
    }
    this.scheduleRearm();
  }

  private onDeviceError(err: Error): void {
    if (this.closed) return;
    // Warn once per failure streak (a reopen is retried every rearmMaxMs).
    if (!this.deviceFailing) this.log.warn({ err }, 'serial port: device error; reading again shortly');
    else this.log.debug({ err }, 'serial port: device error again');
    this.deviceFailing = true;
    if (this.current) this.endSession(this.current, 'device error');
    this.tracker.reset();
    this.rearmDelay = Math.max(this.rearmDelay, this.o.rearmMaxMs);
    this.scheduleRearm();
  }

  /** While no host is connected every read reports a hangup at once: poll, backing off. */
  private scheduleRearm(): void {
    if (this.rearmTimer) return;
    const delay = this.rearmDelay;
    this.rearmDelay = Math.min(this.o.rearmMaxMs, this.rearmDelay * 2);
    this.rearmTimer = setTimeout(() => {
      this.rearmTimer = undefined;
      if (this.closed) return;
      this.io.rearm();
    }, delay);
  }

  sessionWantsInput(s: SerialSession): void {
    if (s === this.current && this.inputPaused) {
      this.inputPaused = false;
      this.io.resume();
    }
  }

  // ---- sessions

  private startSession(): void {
    const s = new SerialSession(++this.count, this);
    this.current = s;
    s.on('error', (err) => this.log.debug({ session: s.id, err }, 'serial session stream error'));
    this.log.debug({ session: s.id }, 'serial session started');
    try {
      this.inject(s);
    } catch (err) {
      this.log.warn({ session: s.id, err }, 'serial session: injecting the connection failed');
      this.sessionClosed(s, 'injection failed');
      s.destroy();
    }
  }

  /** The host side is gone (hangup, new preface, close): EOF to grpc-js, drop what it still writes. */
  private endSession(s: SerialSession, reason: string): void {
    if (this.current !== s) return;
    this.current = undefined;
    this.finish(s, reason);
    s.push(null); // grpc-js sees end of input and tears the HTTP/2 session down
    if (!s.destroyed) {
      const t = setTimeout(() => s.destroy(), this.o.endGraceMs);
      t.unref();
      s.once('close', () => clearTimeout(t));
    }
  }

  /** The server side ended or destroyed the session's stream. */
  sessionClosed(s: SerialSession, reason: string): void {
    if (this.current !== s) return;
    this.current = undefined;
    // Whatever the host still sends on this connection is for no one; a new
    // preface anywhere starts the next session.
    this.tracker.reset();
    this.finish(s, reason);
  }

  private finish(s: SerialSession, reason: string): void {
    this.purge();
    if (this.inputPaused) {
      this.inputPaused = false;
      this.io.resume();
    }
    this.log.debug(
      { session: s.id, reason, ms: Date.now() - s.startedAt, bytesIn: s.bytesIn, bytesOut: s.bytesOut, goawaysDropped: s.out.droppedFrames },
      'serial session ended',
    );
  }

  // ---- guest -> host

  sessionWrite(s: SerialSession, chunk: Buffer, cb: () => void): void {
    if (s !== this.current || this.closed) {
      this.stats.droppedOut += chunk.length;
      cb();
      return;
    }
    const dropped = s.out.droppedFrames;
    const parts = s.out.push(chunk);
    const buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.stats.droppedOut += chunk.length - buf.length;
    if (s.out.droppedFrames > dropped) this.log.debug({ session: s.id }, 'serial session: dropped the guest GOAWAY (host already sent one)');
    if (buf.length === 0) {
      cb();
      return;
    }
    this.queue.push({ session: s, buf, cb });
    this.flush();
  }

  private flush(): void {
    if (this.flushing || this.closed) return;
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const e = this.queue[0]!;
        if (e.session !== this.current) {
          this.purge();
          continue;
        }
        let n: number;
        try {
          n = this.io.write(e.buf);
        } catch (err) {
          this.log.warn({ session: e.session.id, err }, 'serial port: write failed');
          this.endSession(e.session, 'write failed');
          this.tracker.reset();
          continue;
        }
        if (n > 0) {
          this.retryDelay = this.o.writeRetryMinMs;
          e.session.bytesOut += n;
          this.stats.bytesOut += n;
        }
        if (n >= e.buf.length) {
          this.queue.shift();
          e.cb();
        } else if (n > 0) {
          e.buf = e.buf.subarray(n);
        } else if (this.hangupSince !== 0) {
          // A hangup is pending and the port takes nothing: no host is connected, and what is
          // queued is for the one that left. Kept, it would be the first thing the next host
          // connection reads, ahead of that session's own server preface (seen under load).
          this.endSession(e.session, 'host disconnected (the port takes no output)');
          this.tracker.reset();
        } else {
          this.stats.writeBlocked++;
          this.scheduleRetry();
          break;
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.o.writeRetryMaxMs, this.retryDelay * 2);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.flush();
    }, delay);
  }

  /** Drops queued output of sessions that are no longer current (a partly written frame's rest too). */
  private purge(): void {
    const stale = this.queue.filter((e) => e.session !== this.current);
    if (stale.length === 0) return;
    this.queue = this.queue.filter((e) => e.session === this.current);
    for (const e of stale) {
      this.stats.droppedOut += e.buf.length;
      e.cb();
    }
  }
}

/**
 * Serves `server` over a port whose device end is `io` (see PortIo), without
 * grpc-js's bindAsync: each host connection becomes a fresh Duplex injected
 * through one connection injector. Shutting the grpc.Server down
 * (tryShutdown/forceShutdown) stops serving new host connections; close()
 * also releases the device.
 */
export function serveSerialIo(io: PortIo, server: grpc.Server, log: Logger, options: SerialServeOptions = {}, input?: Buffer): SerialTransport {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const mux = new SerialMux(io, (d) => injector.injectConnection(d), log, options);

  // grpc-js knows nothing of this transport: without this a shut-down server
  // would go on getting new sessions it can no longer serve.
  for (const name of ['tryShutdown', 'forceShutdown'] as const) {
    const original = server[name] as (...args: unknown[]) => void;
    (server as unknown as Record<string, unknown>)[name] = function (this: grpc.Server, ...args: unknown[]) {
      mux.accepting = false;
      return original.apply(this, args);
    };
  }

  try {
    mux.start();
  } catch (err) {
    injector.destroy();
    throw err;
  }
  // Before anything the device delivers (that comes on a later turn of the event loop).
  if (input && input.length > 0) mux.onData(input);
  let closed = false;
  return {
    get sessions() {
      return mux.count;
    },
    get connected() {
      return mux.current !== undefined;
    },
    get stats() {
      return mux.stats;
    },
    stopAccepting() {
      mux.accepting = false;
    },
    holdInput() {
      mux.holdInput();
    },
    handOver() {
      const port = mux.handOver();
      closed = true;
      injector.destroy();
      return port;
    },
    close() {
      if (closed) return;
      closed = true;
      mux.accepting = false;
      mux.close();
      injector.destroy();
    },
  };
}

/**
 * Serves `server` on the virtio-serial character device at devicePath (from
 * findSerialPort). The device is opened here, once (errors throw), and kept
 * open for good; it is reopened only if a read fails and Node has closed it.
 * With `inherited` (an exec in place), the previous image's open fd is served
 * instead, after the input it kept: the port never closes, so the guest
 * kernel drops nothing the host sent meanwhile. An inherited fd that is not
 * this device is closed and the device opened afresh.
 */
export function serveSerialPort(devicePath: string, server: grpc.Server, log: Logger, options: SerialServeOptions = {}, inherited?: InheritedPort): SerialTransport {
  const open = (): DeviceFds => {
    const fd = fs.openSync(devicePath, fs.constants.O_RDWR | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
    return { readFd: fd, writeFd: fd };
  };
  const portLog = log.child({ port: devicePath });
  let first: DeviceFds;
  if (inherited && sameDevice(inherited.fd, devicePath)) first = { readFd: inherited.fd, writeFd: inherited.fd };
  else {
    if (inherited) {
      portLog.warn({ fd: inherited.fd }, 'the serial port fd handed over is not this device: closed, the device opened afresh');
      fs.closeSync(inherited.fd);
    }
    first = open();
  }
  const io = new DevicePortIo(open, first);
  return serveSerialIo(io, server, portLog, options, first.readFd === inherited?.fd ? inherited.input : undefined);
}

function sameDevice(fd: number, devicePath: string): boolean {
  try {
    const a = fs.fstatSync(fd);
    const b = fs.statSync(devicePath);
    return a.dev === b.dev && a.ino === b.ino && a.rdev === b.rdev;
  } catch {
    return false;
  }
}

export interface DeviceFds {
  /** Read through a libuv Pipe handle, which owns it from then on. */
  readFd: number;
  /** Written with non-blocking write(2). The same fd as readFd for a real port. */
  writeFd: number;
}

/**
 * INTERNAL NODE API, the only use in this module (the Pipe handle itself comes
 * from fd-socket.ts, which holds the process.binding('pipe_wrap') part):
 * a fresh net.Socket reading from the libuv handle of `prev`, whose readable
 * side has ended. The port's hangup is a level, so it reports end of input
 * (libuv: read() returned 0, or POLLHUP after a short read) once per host
 * disconnect, and a net.Socket cannot read again after 'end'. libuv can: its
 * uv_read_start clears the EOF state. net.Socket._read only calls readStart()
 * while `_handle.reading` is false, which EOF leaves true; and the `handle`
 * constructor option (what net.js uses for accepted connections) starts
 * reading at once. `prev` must not own the handle any more, or destroying it
 * would close the fd: its `_handle` is cleared.
 * Checked on Node 20.20 and 22.23 (http2-frames/serial-port tests, FIFO case).
 */
function readAgain(prev: net.Socket): net.Socket {
  const p = prev as unknown as { _handle: { reading?: boolean; readStart?: unknown } | null };
  const handle = p._handle;
  if (!handle || typeof handle.readStart !== 'function') {
    throw new Error(`net.Socket has no libuv stream handle to read again from (Node ${process.version})`);
  }
  p._handle = null;
  prev.removeAllListeners('data');
  handle.reading = false;
  return new net.Socket({ handle, allowHalfOpen: true } as unknown as net.SocketConstructorOpts);
}

/**
 * The real device: reads through a Pipe handle (epoll-driven; the fd is kept
 * across hangups), writes with non-blocking write(2). Exported for tests,
 * which use FIFOs (their end-of-input is a level too, while no writer is open).
 */
export class DevicePortIo implements PortIo {
  private socket: net.Socket | undefined;
  private fds: DeviceFds | undefined;
  private handlers: PortHandlers | undefined;
  private closed = false;

  constructor(
    private readonly open: () => DeviceFds,
    initial?: DeviceFds,
  ) {
    this.fds = initial;
  }

  start(handlers: PortHandlers): void {
    this.handlers = handlers;
    if (this.fds) this.adopt(this.fds);
    else this.reopen();
  }

  rearm(): void {
    if (this.closed) return;
    if (!this.socket) {
      this.reopen();
      return;
    }
    try {
      this.watch(readAgain(this.socket));
    } catch (err) {
      this.fail(err);
    }
  }

  pause(): void {
    this.socket?.pause();
  }

  resume(): void {
    this.socket?.resume();
  }

  write(buf: Buffer): number {
    if (!this.fds || !this.socket) return 0; // between a device error and the reopen
    try {
      return fs.writeSync(this.fds.writeFd, buf);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return 0;
      throw err;
    }
  }

  release(): { fd: number; unread: Buffer } {
    const s = this.socket;
    const fds = this.fds;
    if (this.closed || !s || !fds) throw new Error('the serial port is not open: nothing to hand over');
    this.closed = true;
    this.socket = undefined; // what read() below emits as 'data' is not delivered twice
    s.pause();
    const unread: Buffer[] = [];
    for (let c: Buffer | null; (c = s.read() as Buffer | null) !== null; ) unread.push(c);
    // INTERNAL NODE API (as readAgain): stop libuv reading, without closing the fd the handle owns.
    (s as unknown as { _handle: { readStop?: () => void } | null })._handle?.readStop?.();
    s.removeAllListeners('data');
    if (fds.writeFd !== fds.readFd) fs.closeSync(fds.writeFd);
    this.fds = undefined;
    return { fd: fds.readFd, unread: Buffer.concat(unread) };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const s = this.socket;
    this.socket = undefined;
    s?.destroy(); // closes readFd
    if (this.fds && this.fds.writeFd !== this.fds.readFd) fs.closeSync(this.fds.writeFd);
    this.fds = undefined;
  }

  private reopen(): void {
    try {
      this.adopt(this.open());
    } catch (err) {
      this.fail(err);
    }
  }

  private adopt(fds: DeviceFds): void {
    this.fds = fds;
    try {
      this.watch(socketFromFd(fds.readFd, { allowHalfOpen: true }));
    } catch (err) {
      fs.closeSync(fds.readFd); // not adopted: still ours
      if (fds.writeFd !== fds.readFd) fs.closeSync(fds.writeFd);
      this.fds = undefined;
      throw err;
    }
  }

  private watch(s: net.Socket): void {
    this.socket = s;
    s.on('data', (chunk: Buffer) => {
      if (s === this.socket) this.handlers?.data(chunk);
    });
    s.once('end', () => {
      if (s === this.socket) this.handlers?.hangup();
    });
    s.on('error', (err) => {
      if (s !== this.socket) return;
      // Node destroys the socket on a read error, closing readFd.
      this.socket = undefined;
      if (this.fds && this.fds.writeFd !== this.fds.readFd) fs.closeSync(this.fds.writeFd);
      this.fds = undefined;
      this.handlers?.error(err);
    });
  }

  private fail(err: unknown): void {
    this.handlers?.error(err instanceof Error ? err : new Error(String(err)));
  }
}
