// Every place the agent serves on, owned in one list. Each listener opens on
// its own: one that fails (no vsock in this kernel yet, a tcp port in use, no
// virtio-serial port) is logged and retried with a growing delay, and never
// stops the others from serving. A guest booted by a launcher we have never
// seen must still be reachable on whichever channel it does have.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log';
import { native } from '../../native/native';
import { formatAddress, type Endpoint } from './address';
import { serveListeningFd } from './fd-listener';
import { findSerialPort, serveSerialPort, type InheritedPort } from './serial-port';

/** Where to serve: an address, or the virtio-serial port of that name. */
export type ListenSpec = Endpoint | { kind: 'serial'; name: string };

export type ListenerState = 'starting' | 'serving' | 'retrying' | 'closed';

export interface ListenerStatus {
  /** As users write it: unix://..., tcp://HOST:PORT (the bound port), vsock://..., serial:NAME. */
  address: string;
  state: ListenerState;
  /** Failed attempts so far. */
  failures: number;
  lastError?: string;
  /** Where a serial port was found (/dev/vportNpM). */
  device?: string;
}

export interface RetryPolicy {
  /** Delay after the first failure; it doubles up to maxMs. */
  firstMs: number;
  maxMs: number;
}

const DEFAULT_RETRY: RetryPolicy = { firstMs: 500, maxMs: 30_000 };
/** listen(2) backlog, as net.Server's default. */
const BACKLOG = 511;

/** An open listener: how to stop it. */
interface Opened {
  /** Accept no new connection; sessions already accepted go on. */
  stopAccepting(): void;
  /** Release the listener and end its sessions. */
  close(): void;
  /** Stop accepting but keep the socket listening: its fd, for the next image (fd listeners only). */
  detach?(): number;
  /** The serial port: keep what new host connections send, to hand the port over later. */
  holdInput?(): void;
  handOver?(): InheritedPort;
  /** tcp port 0 is bound to a real port. */
  address?: string;
  device?: string;
}

interface Entry {
  spec: ListenSpec;
  status: ListenerStatus;
  opened?: Opened;
  timer?: NodeJS.Timeout;
  /** Resolves after the first attempt, whatever its outcome. */
  firstAttempt: Promise<void>;
  /** What an earlier agent image handed over for this address (a listening fd, or the serial port): served instead of opening afresh. */
  inherited?: number | InheritedPort;
}

/** What detach() leaves for the next image. */
export interface Detached {
  /** Listening sockets, still listening: clients wait in their backlog. */
  sockets: Array<{ address: string; fd: number }>;
  /** Serial ports keeping what hosts send meanwhile (with `ports`); take() gives the port up, right before the exec. */
  ports: Array<{ address: string; take(): InheritedPort }>;
}

export class ListenerSet {
  private readonly entries: Entry[] = [];
  private closed = false;

  constructor(
    private readonly server: grpc.Server,
    private readonly log: Logger,
    private readonly retry: RetryPolicy = DEFAULT_RETRY,
  ) {}

  /**
   * Starts serving on `spec` now, and keeps retrying while it fails. With
   * `inherited`, what an earlier agent image handed over for it: the
   * listening socket (unix and vsock; clients waiting in its backlog are
   * served), or the serial port's fd and the host input it kept.
   */
  add(spec: ListenSpec, inherited?: number | InheritedPort): void {
    const address = spec.kind === 'serial' ? `serial:${spec.name}` : formatAddress(spec);
    let settle!: () => void;
    const entry: Entry = {
      spec,
      status: { address, state: 'starting', failures: 0 },
      firstAttempt: new Promise<void>((r) => (settle = r)),
      ...(inherited !== undefined ? { inherited } : {}),
    };
    this.entries.push(entry);
    void this.attempt(entry).finally(settle);
  }

  /** Resolves once every listener has served or failed once: what the announce line reports. */
  async settled(): Promise<ListenerStatus[]> {
    await Promise.all(this.entries.map((e) => e.firstAttempt));
    return this.status();
  }

  status(): ListenerStatus[] {
    return this.entries.map((e) => ({ ...e.status }));
  }

  /**
   * No new connection on any listener and no more retries; sessions already
   * accepted go on, so answers in flight still leave (a drain before power-off
   * or an upgrade). close() releases the listeners afterwards.
   */
  stopAccepting(): void {
    this.closed = true;
    for (const e of this.entries) {
      clearTimeout(e.timer);
      e.opened?.stopAccepting();
    }
  }

  /**
   * For an exec in place: every unix and vsock listener stops accepting but
   * keeps its socket listening, and hands over its fd (clients that connect
   * meanwhile wait in the backlog for the next image). With `ports` (the next
   * image can take a serial port over), each serial port keeps what a new
   * host connection sends, to be handed over with it; the others stop
   * accepting. Sessions already accepted go on until the server is shut down.
   */
  detach(options: { ports: boolean }): Detached {
    this.closed = true;
    const detached: Detached = { sockets: [], ports: [] };
    for (const e of this.entries) {
      clearTimeout(e.timer);
      const opened = e.opened;
      if (opened?.detach) detached.sockets.push({ address: e.status.address, fd: opened.detach() });
      else if (options.ports && opened?.holdInput && opened.handOver) {
        opened.holdInput();
        detached.ports.push({ address: e.status.address, take: () => opened.handOver!() });
      } else opened?.stopAccepting();
    }
    return detached;
  }

  /** Stops every listener and every pending retry, and ends their sessions. */
  close(): void {
    this.closed = true;
    for (const e of this.entries) {
      clearTimeout(e.timer);
      try {
        e.opened?.close();
      } catch (err) {
        this.log.warn({ err, address: e.status.address }, 'closing a listener failed');
      }
      e.opened = undefined;
      e.status.state = 'closed';
    }
  }

  private async attempt(entry: Entry): Promise<void> {
    if (this.closed) return;
    const { status } = entry;
    try {
      const inherited = entry.inherited;
      entry.inherited = undefined;
      entry.opened = typeof inherited === 'number' ? this.listenOnFd(() => inherited, entry.status.address) : await this.open(entry.spec, inherited);
      if (this.closed) {
        entry.opened.close();
        return;
      }
      if (entry.opened.address) status.address = entry.opened.address;
      if (entry.opened.device) status.device = entry.opened.device;
      status.state = 'serving';
      const recovered = status.failures > 0;
      status.lastError = undefined;
      if (recovered) this.log.info({ address: status.address, failures: status.failures, device: status.device }, 'listener serving after failures');
      else this.log.info({ address: status.address, device: status.device }, 'listener serving');
    } catch (err) {
      status.failures++;
      status.state = 'retrying';
      status.lastError = err instanceof Error ? err.message : String(err);
      const delay = Math.min(this.retry.maxMs, this.retry.firstMs * 2 ** Math.min(status.failures - 1, 20));
      // The first failure is news; the same failure every 30 s is not.
      const level = status.failures === 1 ? 'warn' : 'debug';
      this.log[level]({ address: status.address, err, failures: status.failures, retryInMs: delay }, 'listener failed; retrying (the other listeners keep serving)');
      entry.timer = setTimeout(() => void this.attempt(entry), delay);
    }
  }

  private async open(spec: ListenSpec, port?: InheritedPort): Promise<Opened> {
    switch (spec.kind) {
      case 'unix':
        return this.listenOnFd(() => {
          fs.mkdirSync(path.dirname(spec.path), { recursive: true });
          // A socket left by an earlier run would make bind fail with EADDRINUSE.
          if (fs.existsSync(spec.path) && fs.lstatSync(spec.path).isSocket()) fs.unlinkSync(spec.path);
          return native.unixListen(spec.path, BACKLOG);
        }, formatAddress(spec));
      case 'vsock':
        return this.listenOnFd(() => native.vsockListen(spec.cid, spec.port, BACKLOG), formatAddress(spec));
      case 'tcp':
        return this.listenTcp(spec.host, spec.port);
      case 'serial': {
        const device = await findSerialPort(spec.name);
        const transport = serveSerialPort(device, this.server, this.log.child({ channel: spec.name }), {}, port);
        return {
          stopAccepting: () => transport.stopAccepting(),
          close: () => transport.close(),
          holdInput: () => transport.holdInput(),
          handOver: () => transport.handOver(),
          device,
        };
      }
    }
  }

  private listenOnFd(listen: () => number, address: string): Opened {
    const fd = listen();
    try {
      const listener = serveListeningFd(fd, this.server, {
        backlog: BACKLOG,
        onError: (err) => this.log.warn({ err, address }, 'listener: accept failed'),
      });
      return { stopAccepting: () => listener.stopAccepting(), close: () => listener.close(), detach: () => listener.detach() };
    } catch (err) {
      // Not adopted: the fd is still ours to close.
      native.closeFd(fd);
      throw err;
    }
  }

  private listenTcp(host: string, port: number): Promise<Opened> {
    const injector = this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const tcp = net.createServer((socket) => injector.injectConnection(socket));
    return new Promise((resolve, reject) => {
      tcp.once('error', (err) => {
        injector.destroy();
        reject(err);
      });
      tcp.listen({ host, port, backlog: BACKLOG }, () => {
        tcp.removeAllListeners('error');
        tcp.on('error', (err) => this.log.warn({ err, host, port }, 'tcp listener error'));
        const bound = (tcp.address() as net.AddressInfo).port;
        resolve({
          address: formatAddress({ kind: 'tcp', host, port: bound }),
          stopAccepting: () => tcp.close(),
          close: () => {
            tcp.close();
            injector.destroy();
          },
        });
      });
    });
  }
}
