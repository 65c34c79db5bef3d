// Agent addresses as users write them (unix://PATH, tcp://HOST:PORT) to gRPC targets.
export function grpcTarget(addr: string): string {
  const unix = /^unix:\/\/(\/.+)$/.exec(addr);
  if (unix) return `unix:${unix[1]}`;
  const tcp = /^tcp:\/\/(.+:\d+)$/.exec(addr);
  if (tcp) return tcp[1]!;
  throw new Error(`agent address ${addr} is not unix:///PATH or tcp://HOST:PORT`);
}
