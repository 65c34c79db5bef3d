// Tiny gRPC servers standing in for agents in the client's unit tests: each
// serves only what a test gives it (Discovery, v1, v2 handlers, or nothing),
// on a unix socket, optionally behind a proxy that can cut every connection
// (a connection dropped mid-call). Not a test itself (*.testing.ts).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { NegotiateRequest__Output } from '../generated/agent/NegotiateRequest';
import type { NegotiateResponse } from '../generated/agent/NegotiateResponse';
import { AgentV1Service, AgentV2Service, DiscoveryService } from '../protocol';
import { encodeStatusDetails, STATUS_DETAILS_KEY } from '../status-details';

type Handlers = Record<string, grpc.UntypedHandleCall>;

export interface FakeAgentOptions {
  discovery?: Handlers;
  v1?: Handlers;
  v2?: Handlers;
  /** Put a proxy in front that dropAll() cuts. */
  proxy?: boolean;
}

export interface Call {
  service: 'discovery' | 'v1' | 'v2';
  method: string;
  request: Record<string, unknown>;
}

export interface FakeAgent {
  /** unix://... to connect to (the proxy's when there is one). */
  addr: string;
  /** Every call the server received, in order. */
  calls: Call[];
  /** Cuts every connection through the proxy, both ends (needs `proxy`). */
  dropAll(): void;
  close(): Promise<void>;
}

let seq = 0;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-agent-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** Handlers for every method of the definition that record each call before the given handler runs. */
function recorded(service: Call['service'], handlers: Handlers, calls: Call[]): Handlers {
  return Object.fromEntries(
    Object.entries(handlers).map(([method, h]) => [
      method,
      ((call: { request: Record<string, unknown> }, cb: unknown) => {
        calls.push({ service, method, request: call.request });
        return (h as Function)(call, cb);
      }) as grpc.UntypedHandleCall,
    ]),
  );
}

export async function startFakeAgent(options: FakeAgentOptions): Promise<FakeAgent> {
  const calls: Call[] = [];
  const server = new grpc.Server();
  if (options.discovery) server.addService(DiscoveryService.service, recorded('discovery', options.discovery, calls));
  if (options.v1) server.addService(AgentV1Service.service, recorded('v1', options.v1, calls));
  if (options.v2) server.addService(AgentV2Service.service, recorded('v2', options.v2, calls));
  const sock = path.join(tmp, `agent${++seq}.sock`);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  let proxy: net.Server | null = null;
  const sockets = new Set<net.Socket>();
  let addrPath = sock;
  if (options.proxy) {
    addrPath = path.join(tmp, `proxy${seq}.sock`);
    proxy = net.createServer((client) => {
      const upstream = net.connect(sock);
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const cut = () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
      };
      client.on('error', cut).on('close', cut);
      upstream.on('error', cut).on('close', cut);
    });
    await new Promise<void>((r) => proxy!.listen(addrPath, r));
  }
  return {
    addr: `unix://${addrPath}`,
    calls,
    dropAll() {
      if (!proxy) throw new Error('dropAll needs a fake agent started with { proxy: true }');
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    async close() {
      for (const s of sockets) s.destroy();
      if (proxy) await new Promise((r) => proxy!.close(r));
      server.forceShutdown();
    },
  };
}

/** A Negotiate handler that picks like the real agent: the highest version both speak, FAILED_PRECONDITION if none. */
export function negotiateAs(served: string[], extra: Partial<NegotiateResponse> = {}): Handlers {
  return {
    Negotiate: ((call: grpc.ServerUnaryCall<NegotiateRequest__Output, NegotiateResponse>, cb: grpc.sendUnaryData<NegotiateResponse>) => {
      const wanted = call.request.protocol_versions;
      const common = wanted.filter((v) => served.includes(v)).sort().reverse();
      if (wanted.length > 0 && common.length === 0) {
        cb({ code: grpc.status.FAILED_PRECONDITION, details: `no common protocol version: the client speaks ${wanted.join(', ')}, this agent serves ${served.join(', ')}` });
        return;
      }
      cb(null, { agent_version: '9.8.7', agent_build: 'test', protocol_versions: served, selected_version: common[0] ?? '', capabilities: [], ...extra });
    }) as grpc.UntypedHandleCall,
  };
}

/** A unary handler answering `res` (or what the function returns). */
export function answer(res: (req: Record<string, any>) => unknown): grpc.UntypedHandleCall;
export function answer(res: unknown): grpc.UntypedHandleCall;
export function answer(res: unknown): grpc.UntypedHandleCall {
  return ((call: { request: Record<string, unknown> }, cb: grpc.sendUnaryData<unknown>) => {
    try {
      cb(null, typeof res === 'function' ? (res as Function)(call.request) : res);
    } catch (err) {
      cb(err as grpc.ServiceError);
    }
  }) as grpc.UntypedHandleCall;
}

/** A unary handler failing with a status and, like the agent's v2, an ErrorInfo in grpc-status-details-bin. */
export function failWith(code: grpc.status, details: string, reason?: string, metadata: Record<string, string> = {}): grpc.UntypedHandleCall {
  return ((_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
    const trailers = new grpc.Metadata();
    if (reason) trailers.set(STATUS_DETAILS_KEY, encodeStatusDetails(code, details, { reason, metadata }));
    cb({ code, details, metadata: trailers });
  }) as grpc.UntypedHandleCall;
}
