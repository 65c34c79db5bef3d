// Listener addresses as users write them: unix://PATH, tcp://HOST:PORT,
// vsock://CID:PORT (CID -1 = any). Pure parsing, shared by the configuration
// (which validates them) and the listeners (which open them).
import { excerpt } from '../errors';

export type Endpoint =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'vsock'; cid: number; port: number };

/** The largest vsock CID or port; 0xffffffff is VMADDR_CID_ANY / VMADDR_PORT_ANY. */
const VSOCK_MAX = 0xfffffffe;
/** sun_path holds 108 bytes, the terminating NUL included. */
const UNIX_PATH_MAX = 107;

export function parseAddress(addr: string): Endpoint {
  let m = /^unix:\/\/(\/[^\0]+)$/.exec(addr);
  if (m) {
    if (Buffer.byteLength(m[1]!) > UNIX_PATH_MAX) throw new Error(`unix socket path in ${addr} is longer than ${UNIX_PATH_MAX} bytes`);
    return { kind: 'unix', path: m[1]! };
  }
  m = /^tcp:\/\/([^:/]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(addr);
  if (m && Number(m[2]) < 65536) return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  m = /^vsock:\/\/(-1|\d{1,10}):(\d{1,10})$/.exec(addr);
  if (m && Number(m[1]) <= VSOCK_MAX && Number(m[2]) <= VSOCK_MAX) return { kind: 'vsock', cid: Number(m[1]), port: Number(m[2]) };
  throw new Error(`server address ${excerpt(addr, 120)} is not unix:///ABSOLUTE/PATH, tcp://HOST:PORT or vsock://CID:PORT`);
}

/** The address as users write it (for tcp with the port actually bound). */
export function formatAddress(ep: Endpoint): string {
  switch (ep.kind) {
    case 'unix':
      return `unix://${ep.path}`;
    case 'tcp':
      return `tcp://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`;
    case 'vsock':
      return `vsock://${ep.cid}:${ep.port}`;
  }
}
