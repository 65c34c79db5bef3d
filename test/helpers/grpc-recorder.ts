// A recording gRPC proxy: listens on a unix socket, forwards every HTTP/2
// stream to an agent's unix socket unchanged, and records each call's path and
// the grpc-status the agent answered. It shows what a client really sent to an
// agent, including calls the agent's own logs never see (grpc-js answers an
// unknown service or method UNIMPLEMENTED before any handler runs).
import http2 from 'node:http2';
import net from 'node:net';

export interface RecordedCall {
  /** "/package.Service/Method" */
  path: string;
  /** The agent's grpc-status (a number as text); undefined while the call runs or when it was cut off. */
  status?: string;
  message?: string;
}

export interface GrpcRecorder {
  /** unix://PATH to connect clients to. */
  addr: string;
  calls: RecordedCall[];
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);

function forwardable(headers: http2.IncomingHttpHeaders, keepPseudo: (name: string) => boolean): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    if (k.startsWith(':') && !keepPseudo(k)) continue;
    out[k] = v;
  }
  return out;
}

/** Starts a proxy at `listenPath` in front of the agent listening at `agentPath` (both unix socket paths). */
export async function startGrpcRecorder(agentPath: string, listenPath: string): Promise<GrpcRecorder> {
  const calls: RecordedCall[] = [];
  const upstreams = new Set<http2.ClientHttp2Session>();
  const upstreamOf = new WeakMap<http2.Http2Session, http2.ClientHttp2Session>();
  const downstreams = new Set<http2.ServerHttp2Session>();
  const server = http2.createServer();
  server.on('session', (downstream) => {
    downstreams.add(downstream);
    downstream.once('close', () => downstreams.delete(downstream));
    // One upstream connection per client connection, as a transparent proxy would have.
    const upstream = http2.connect('http://agent', { createConnection: () => net.connect(agentPath) });
    upstreams.add(upstream);
    upstreamOf.set(downstream, upstream);
    upstream.on('error', () => downstream.destroy());
    upstream.on('close', () => {
      upstreams.delete(upstream);
      downstream.close();
    });
    downstream.on('close', () => upstream.close());
    downstream.on('error', () => upstream.destroy());
  });
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const call: RecordedCall = { path: String(headers[':path']) };
    calls.push(call);
    const up = stream.session && upstreamOf.get(stream.session);
    if (!up || up.closed || up.destroyed) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const req = up.request(forwardable(headers, (k) => k === ':method' || k === ':path' || k === ':scheme' || k === ':authority'), { endStream: false });
    let trailers: http2.OutgoingHttpHeaders | undefined;
    req.on('response', (h) => {
      if (h['grpc-status'] !== undefined) {
        // Trailers-only: the status came with the headers.
        call.status = String(h['grpc-status']);
        call.message = h['grpc-message'] === undefined ? undefined : decodeURIComponent(String(h['grpc-message']));
        if (!stream.destroyed) stream.respond(forwardable(h, (k) => k === ':status'), { endStream: true });
        return;
      }
      if (!stream.destroyed) stream.respond(forwardable(h, (k) => k === ':status'), { waitForTrailers: true });
    });
    req.on('trailers', (t) => {
      call.status = t['grpc-status'] === undefined ? undefined : String(t['grpc-status']);
      call.message = t['grpc-message'] === undefined ? undefined : decodeURIComponent(String(t['grpc-message']));
      trailers = forwardable(t, () => false);
    });
    stream.on('wantTrailers', () => stream.sendTrailers(trailers ?? { 'grpc-status': '13', 'grpc-message': 'proxy: no trailers from the agent' }));
    req.on('data', (chunk: Buffer) => {
      if (!stream.destroyed && !stream.write(chunk)) {
        req.pause();
        stream.once('drain', () => req.resume());
      }
    });
    req.on('end', () => {
      if (!stream.destroyed && !stream.writableEnded && stream.headersSent) stream.end();
    });
    stream.on('data', (chunk: Buffer) => {
      if (!req.destroyed && !req.write(chunk)) {
        stream.pause();
        req.once('drain', () => stream.resume());
      }
    });
    stream.on('end', () => {
      if (!req.destroyed) req.end();
    });
    // A side that goes away cancels the other.
    stream.on('close', () => {
      if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
    });
    req.on('close', () => {
      if (!stream.closed && !stream.headersSent) stream.close(req.rstCode || http2.constants.NGHTTP2_INTERNAL_ERROR);
      else if (!stream.closed && req.rstCode && req.rstCode !== http2.constants.NGHTTP2_NO_ERROR && !stream.writableEnded) stream.close(req.rstCode);
    });
    req.on('error', () => {});
    stream.on('error', () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPath, () => resolve());
  });
  return {
    addr: `unix://${listenPath}`,
    calls,
    async close() {
      for (const d of downstreams) d.destroy();
      for (const u of upstreams) u.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
