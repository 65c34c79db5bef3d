// The sockets a client's channel opens, so that closing the client ends them.
//
// grpc-js (checked on 1.14) never gives up a connection attempt whose server
// sends no HTTP/2 SETTINGS: closing the channel leaves that socket open for
// as long as the process lives. On a transport that serves one connection at
// a time, QEMU's chardev socket in front of the virtio-serial channel, such a
// socket blocks every later client of the whole host (the next connection
// waits in QEMU's backlog behind it). It happens whenever a connect times out
// against an agent that is not reading the channel yet (booting, or in the
// middle of an in-place upgrade).
//
// Insecure channel credentials whose connector records each socket it is
// given. `_createSecureConnector` is grpc-js's internal hook between dialing
// and HTTP/2; when a grpc-js version has none, nothing is recorded and the
// client behaves as before.
import type net from 'node:net';
import * as grpc from '@grpc/grpc-js';

interface SecureConnector {
  connect(socket: net.Socket): Promise<unknown>;
}

export interface OwnedSockets {
  credentials: grpc.ChannelCredentials;
  /** Sockets opened and not yet closed. */
  readonly open: number;
  /** Ends every socket still open (after `graceMs`, for grpc-js's own GOAWAY to leave first), destroying it a second later. */
  endAll(graceMs?: number): void;
}

export function ownedSockets(): OwnedSockets {
  const sockets = new Set<net.Socket>();
  const credentials = grpc.credentials.createInsecure();
  const hook = credentials as unknown as { _createSecureConnector?: (...args: unknown[]) => SecureConnector };
  const original = hook._createSecureConnector;
  if (typeof original === 'function') {
    hook._createSecureConnector = function (this: unknown, ...args: unknown[]): SecureConnector {
      const connector = original.apply(this, args);
      const connect = connector.connect.bind(connector);
      connector.connect = (socket: net.Socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        return connect(socket);
      };
      return connector;
    };
  }
  const end = () => {
    for (const socket of sockets) {
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    }
  };
  return {
    credentials,
    get open() {
      return sockets.size;
    },
    endAll(graceMs = 100) {
      if (graceMs <= 0) end();
      else setTimeout(end, graceMs).unref();
    },
  };
}
