// grpc-js clients cannot dial AF_VSOCK (no Node binding, and no public hook
// for a custom Duplex on the client side). The bridge gives them a private
// unix socket instead: each connection accepted there is piped both ways to a
// fresh vsock connection to the agent. One gRPC channel is one HTTP/2
// connection, so a client normally uses a single pair.
//
// The vsock fd comes from the agent_native addon (loaded through
// src/native/native.ts, so the client process needs the .node file) and is
// wrapped by src/native/fd-socket.ts. vsockConnect is a blocking
// connect: it holds the event loop until the guest answers (at most the
// kernel's vsock connect timeout, 2 s by default).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { native } from '../native/native';
import { socketFromFd } from '../native/fd-socket';

export interface VsockBridge {
  /** The grpc-js target to dial: `unix:/tmp/agent-vsock-XXXX/bridge.sock`. */
  target: string;
  /** Stops the unix listener, cuts every open pair and removes the temp dir. Idempotent. */
  close(): void;
}

export interface BridgeOptions {
  /**
   * Returns a connected stream socket fd (O_NONBLOCK), owned by the bridge from
   * then on. Default: native.vsockConnect(cid, port). Tests on the host inject
   * a native.unixConnect here: never dial vsock on the development machine.
   */
  dial?: () => number;
  /** Dial failures and socket errors; the affected unix connection is closed (gRPC sees UNAVAILABLE). */
  onError?: (err: Error) => void;
  /** After one side of a pair closes, the other gets end() and is destroyed this much later if still open. Default 5000 ms. */
  lingerMs?: number;
}

/** Opens a bridge from a private unix socket to vsock cid:port. */
export async function openVsockBridge(cid: number, port: number, options: BridgeOptions = {}): Promise<VsockBridge> {
  const dial = options.dial ?? (() => native.vsockConnect(cid, port));
  const onError = options.onError ?? (() => {});
  const lingerMs = options.lingerMs ?? 5000;

  // mkdtemp makes the directory 0700: only this user can reach the socket.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-vsock-'));
  const sockPath = path.join(dir, 'bridge.sock');
  const pairs = new Set<net.Socket>();
  let closed = false;

  // Half-open on both sides: an end is passed on, not answered with our own end.
  const server = net.createServer({ allowHalfOpen: true }, (local) => {
    if (closed) {
      local.destroy();
      return;
    }
    let remote: net.Socket;
    try {
      const fd = dial();
      try {
        remote = socketFromFd(fd, { allowHalfOpen: true });
      } catch (err) {
        native.closeFd(fd);
        throw err;
      }
    } catch (err) {
      onError(new Error(`vsock bridge: cannot connect to ${cid}:${port}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      local.destroy();
      return;
    }
    splice(local, remote, pairs, onError, lingerMs);
  });
  server.on('error', onError);

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(sockPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  // The bridge must not keep a client process alive on its own.
  server.unref();

  return {
    target: `unix:${sockPath}`,
    close() {
      if (closed) return;
      closed = true;
      server.close();
      for (const s of pairs) s.destroy();
      pairs.clear();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Pipes a and b both ways; an error on either destroys both, an end is passed on. */
function splice(a: net.Socket, b: net.Socket, pairs: Set<net.Socket>, onError: (err: Error) => void, lingerMs: number): void {
  pairs.add(a).add(b);
  a.pipe(b);
  b.pipe(a);
  const link = (from: net.Socket, to: net.Socket) => {
    from.on('error', (err) => {
      onError(err);
      to.destroy();
    });
    from.on('close', (hadError) => {
      pairs.delete(from);
      if (hadError) {
        to.destroy();
      } else if (!to.destroyed) {
        // pipe() already ended `to` if `from` ended cleanly; this also covers a
        // plain destroy(). Give `to` time to flush, then cut it.
        to.end();
        setTimeout(() => to.destroy(), lingerMs).unref();
      }
    });
  };
  link(a, b);
  link(b, a);
}
