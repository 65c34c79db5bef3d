// Agent addresses as users write them (unix://PATH, tcp://HOST:PORT,
// vsock://CID:PORT) to what the client dials.

export type AgentAddress =
  | { kind: 'grpc'; target: string }
  /** grpc-js cannot dial vsock: the client goes through a vsock bridge (vsock-bridge.ts). */
  | { kind: 'vsock'; cid: number; port: number };

const MAX_VSOCK = 0xfffffffe; // 2^32-1 is VMADDR_CID_ANY / VMADDR_PORT_ANY

export function parseAgentAddress(addr: string): AgentAddress {
  const vsock = /^vsock:\/\/(\d+):(\d+)$/.exec(addr);
  if (vsock && Number(vsock[1]) <= MAX_VSOCK && Number(vsock[2]) <= MAX_VSOCK) {
    return { kind: 'vsock', cid: Number(vsock[1]), port: Number(vsock[2]) };
  }
  return { kind: 'grpc', target: grpcTarget(addr) };
}

/** The gRPC target of a unix:// or tcp:// address (vsock has none: see parseAgentAddress). */
export function grpcTarget(addr: string): string {
  const unix = /^unix:\/\/(\/.+)$/.exec(addr);
  if (unix) return `unix:${unix[1]}`;
  const tcp = /^tcp:\/\/(.+:\d+)$/.exec(addr);
  if (tcp) return tcp[1]!;
  throw new Error(`agent address ${addr} is not unix:///PATH, tcp://HOST:PORT or vsock://CID:PORT`);
}
