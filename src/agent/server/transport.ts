// Where the agent listens: unix://PATH and tcp://HOST:PORT through grpc-js's
// own bindAsync; vsock://CID:PORT (CID -1 = any) through the addon and a
// grpc-js connection injector (vsock.ts), since grpc-js cannot bind vsock.
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ConfigError } from '../config';
import { listenVsock, type ServeOptions, type VsockListener } from './vsock';

export type Endpoint =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'vsock'; cid: number; port: number };

export function parseAddress(addr: string): Endpoint {
  let m = /^unix:\/\/(\/.+)$/.exec(addr);
  if (m) return { kind: 'unix', path: m[1]! };
  m = /^tcp:\/\/([^:/]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(addr);
  if (m && Number(m[2]) < 65536) return { kind: 'tcp', host: m[1]!, port: Number(m[2]) };
  m = /^vsock:\/\/(-1|\d+):(\d+)$/.exec(addr);
  if (m) return { kind: 'vsock', cid: Number(m[1]), port: Number(m[2]) };
  throw new ConfigError(`server address ${addr} is not unix:///ABSOLUTE/PATH, tcp://HOST:PORT or vsock://CID:PORT`);
}

/** The grpc-js bind target for an endpoint, preparing the file system for unix sockets. */
export function bindTarget(ep: Endpoint): string {
  switch (ep.kind) {
    case 'unix':
      fs.mkdirSync(path.dirname(ep.path), { recursive: true });
      // A socket left by an earlier run would make bind fail with EADDRINUSE.
      if (fs.existsSync(ep.path) && fs.statSync(ep.path).isSocket()) fs.unlinkSync(ep.path);
      return `unix:${ep.path}`;
    case 'tcp':
      return `${ep.host}:${ep.port}`;
    case 'vsock':
      throw new ConfigError('vsock endpoints are not grpc-js bind targets: use bindEndpoint');
  }
}

export interface BoundEndpoint {
  /** The address actually listened on, as users write it (tcp port 0 filled in). */
  address: string;
  /** For vsock: the listener (its fd is what an in-place upgrade hands over). */
  vsock?: VsockListener;
}

/** Serves `server` on ep: bindAsync for unix/tcp, listenVsock for vsock. */
export async function bindEndpoint(server: grpc.Server, ep: Endpoint, options: ServeOptions = {}): Promise<BoundEndpoint> {
  if (ep.kind === 'vsock') {
    if (ep.port > 0xfffffffe || ep.cid > 0xfffffffe) throw new ConfigError(`vsock address ${ep.cid}:${ep.port} is out of range`);
    const vsock = listenVsock(ep.cid, ep.port, server, options);
    return { address: `vsock://${ep.cid}:${ep.port}`, vsock };
  }
  const target = bindTarget(ep);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { address: ep.kind === 'tcp' ? `tcp://${ep.host}:${port}` : `unix://${ep.path}` };
}
