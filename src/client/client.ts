// The runtime-side client: connects, negotiates a protocol version through
// agent.Discovery, then offers typed calls.
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type { NegotiateResponse__Output } from '../generated/agent/NegotiateResponse';
import type { AgentServiceDefinition as V1Definition } from '../generated/agent/v1/AgentService';
import { AgentV1Service, DiscoveryService } from '../protocol';
import { parseAgentAddress } from './address';
import { openVsockBridge, type BridgeOptions, type VsockBridge } from './vsock-bridge';

export const CLIENT_NAME = 'agent-client';
export const CLIENT_VERSION = '0.1.0';
/** Protocol versions this client speaks. */
export const CLIENT_PROTOCOLS = ['v1'] as const;

export type V1Method = Extract<keyof V1Definition, string>;
export type V1Request<M extends V1Method> = V1Definition[M] extends MethodDefinition<infer Q, any, any, any> ? Q : never;
export type V1Response<M extends V1Method> = V1Definition[M] extends MethodDefinition<any, any, any, infer R> ? R : never;

export interface ConnectOptions {
  /** Seconds to wait for the agent to accept the connection. */
  connectTimeout?: number;
  maxMessageBytes?: number;
  client_name?: string;
  /** For vsock:// addresses: options of the unix-to-vsock bridge (tests inject `dial`). */
  vsockBridge?: BridgeOptions;
}

export class AgentClient {
  private constructor(
    private readonly discovery: grpc.Client,
    private readonly v1Client: grpc.Client,
    readonly agent: NegotiateResponse__Output,
    private readonly bridge?: VsockBridge,
  ) {}

  static async connect(addr: string, options: ConnectOptions = {}): Promise<AgentClient> {
    const parsed = parseAgentAddress(addr);
    if (parsed.kind === 'grpc') return AgentClient.connectTarget(addr, parsed.target, options);
    // grpc-js cannot dial vsock: it dials a private unix socket piped to vsock.
    const bridge = await openVsockBridge(parsed.cid, parsed.port, options.vsockBridge);
    try {
      return await AgentClient.connectTarget(addr, bridge.target, options, bridge);
    } catch (err) {
      bridge.close();
      throw err;
    }
  }

  private static async connectTarget(addr: string, target: string, options: ConnectOptions, bridge?: VsockBridge): Promise<AgentClient> {
    const limit = options.maxMessageBytes ?? 16 * 1024 * 1024;
    const channelOptions = {
      'grpc.max_receive_message_length': limit,
      'grpc.max_send_message_length': limit,
      'grpc.use_local_subchannel_pool': 1,
    };
    const discovery = new DiscoveryService(target, grpc.credentials.createInsecure(), channelOptions);
    const deadline = Date.now() + (options.connectTimeout ?? 10) * 1000;
    let agent: NegotiateResponse__Output;
    try {
      await new Promise<void>((resolve, reject) =>
        discovery.waitForReady(deadline, (err) => (err ? reject(new Error(`cannot reach the agent at ${addr}: ${err.message}`)) : resolve())),
      );
      agent = await new Promise<NegotiateResponse__Output>((resolve, reject) =>
        discovery.Negotiate(
          { client_name: options.client_name ?? CLIENT_NAME, client_version: CLIENT_VERSION, protocol_versions: [...CLIENT_PROTOCOLS] },
          (err, res) => (err ? reject(err) : res ? resolve(res) : reject(new Error(`the agent at ${addr} sent no Negotiate answer`))),
        ),
      );
    } catch (err) {
      // Nobody gets a client to close: an open channel would keep reconnecting
      // (and keep the process alive) for nothing. connect() closes the bridge.
      discovery.close();
      throw err;
    }
    // Share the discovery channel for the versioned service.
    const v1Client = new AgentV1Service(target, grpc.credentials.createInsecure(), {
      ...channelOptions,
      channelOverride: discovery.getChannel(),
    });
    return new AgentClient(discovery, v1Client, agent, bridge);
  }

  get protocol(): string {
    return this.agent.selected_version;
  }

  /** One v1 call; rejects with the gRPC error (code, details) on failure. */
  v1<M extends V1Method>(method: M, request: V1Request<M>, options: { deadlineSeconds?: number } = {}): Promise<V1Response<M>> {
    const fn = (this.v1Client as unknown as Record<string, Function>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`unknown v1 method ${method}`));
    const callOptions: grpc.CallOptions = options.deadlineSeconds ? { deadline: Date.now() + options.deadlineSeconds * 1000 } : {};
    return new Promise((resolve, reject) =>
      fn.call(this.v1Client, request, new grpc.Metadata(), callOptions, (err: grpc.ServiceError | null, res: V1Response<M>) =>
        err ? reject(err) : resolve(res),
      ),
    );
  }

  close(): void {
    this.v1Client.close();
    this.discovery.close();
    this.bridge?.close();
  }
}
