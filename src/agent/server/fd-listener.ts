// gRPC on a listening socket the agent owns: the addon makes the socket
// (AF_VSOCK, which grpc-js cannot bind, or AF_UNIX), fd-socket.ts turns it
// into a net.Server, and every accepted connection is handed to the
// grpc.Server through one connection injector (grpc-js serves injected
// sockets like its own: unary and streams). Because the agent holds the fd,
// it can hand the socket on across an in-place upgrade (execve) — detach().
import type net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { native } from '../../native/native';
import { serverFromListeningFd } from '../../native/fd-socket';

export interface FdListener {
  /** The listening fd while this listener owns it; -1 after close() or detach(). */
  readonly fd: number;
  /** Connections accepted and injected so far. */
  readonly accepted: number;
  /**
   * Stops accepting and closes the fd (connections still queued in the
   * backlog are refused), then closes the gRPC sessions it injected gracefully
   * (GOAWAY; calls in flight finish). Idempotent.
   */
  close(): void;
  /** Stops accepting and closes the fd; the sessions it injected go on. Idempotent. */
  stopAccepting(): void;
  /**
   * Stops accepting but keeps the socket listening: returns a duplicate of the
   * listening fd (close-on-exec still set) and closes the original; clients
   * that connect from now on wait in the kernel's backlog for whoever serves
   * the returned fd next (the new image after an in-place upgrade: clear
   * close-on-exec with native.clearCloexec first). Sessions already injected
   * keep being served; drain them with grpc.Server.tryShutdown.
   */
  detach(): number;
}

export interface ServeOptions {
  /** listen(2) backlog; the kernel rounds it up. Default 511, as net.Server. */
  backlog?: number;
  /** Accept errors (e.g. EMFILE) and sockets that fail before injection. The listener keeps going. */
  onError?: (err: Error) => void;
}

/**
 * Serves `server`'s services on fd, a bound, listening stream socket, without
 * grpc-js's bindAsync. The listener owns fd once this returns; if it
 * throws, fd was not adopted and is still the caller's. Shutting the grpc.Server down
 * (tryShutdown/forceShutdown) also stops this listener from accepting.
 */
export function serveListeningFd(fd: number, server: grpc.Server, options: ServeOptions = {}): FdListener {
  const onError = options.onError ?? (() => {});
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  let netServer: net.Server;
  try {
    netServer = serverFromListeningFd(fd, { backlog: options.backlog });
  } catch (err) {
    injector.destroy();
    throw err;
  }
  let ownFd = fd;
  let accepted = 0;
  let stopped = false;
  let released = false;

  netServer.on('error', onError);
  netServer.on('connection', (socket: net.Socket) => {
    if (stopped) {
      socket.destroy();
      return;
    }
    accepted++;
    try {
      injector.injectConnection(socket);
    } catch (err) {
      socket.destroy();
      onError(err instanceof Error ? err : new Error(String(err)));
    }
  });

  const stopAccepting = () => {
    if (stopped) return;
    stopped = true;
    ownFd = -1;
    netServer.close();
  };

  // grpc-js knows nothing of this net.Server: without this, a shut-down
  // grpc.Server would go on accepting connections it can no longer serve.
  for (const name of ['tryShutdown', 'forceShutdown'] as const) {
    const original = server[name] as (...args: unknown[]) => void;
    (server as unknown as Record<string, unknown>)[name] = function (this: grpc.Server, ...args: unknown[]) {
      stopAccepting();
      return original.apply(this, args);
    };
  }

  return {
    get fd() {
      return ownFd;
    },
    get accepted() {
      return accepted;
    },
    close() {
      stopAccepting();
      if (released) return;
      released = true;
      injector.destroy();
    },
    stopAccepting,
    detach() {
      if (stopped) throw new Error('the listener is already closed or detached');
      const dup = native.dupFd(ownFd);
      stopAccepting();
      return dup;
    },
  };
}
