// Where the agent listens: unix://PATH and tcp://HOST:PORT here; vsock comes
// with the guest build.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config';

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
      throw new ConfigError('the vsock transport is not available in this build; use unix:// or tcp://');
  }
}
