// The gRPC server: agent.Discovery, every protocol version's AgentService,
// grpc.health.v1 and server reflection, on every listener configured.
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { discoveryHandlers } from '../../handlers/discovery';
import { v1Handlers } from '../../handlers/v1';
import { AgentV1Service, DiscoveryService, packageDefinition } from '../../protocol';
import type { AgentCore } from '../core';
import type { Logger } from '../log';
import { withLenientDecoding } from './decoding';
import { addReflection } from './reflection';
import { RpcBoundary } from './rpc';
import { bindEndpoint, type Endpoint } from './transport';
import type { VsockListener } from './vsock';

export interface AgentServer {
  server: grpc.Server;
  health: HealthImplementation;
  /** The addresses actually bound (the port is filled in for tcp port 0). */
  addresses: string[];
  /** The vsock listeners and their fds (handed over on upgrade). */
  vsock: VsockListener[];
}

export async function startServer(core: AgentCore, endpoints: readonly Endpoint[], log: Logger): Promise<AgentServer> {
  const limit = core.config.maxMessageBytes;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': limit,
    'grpc.max_send_message_length': limit,
  });
  const rpc = new RpcBoundary(log, core.rpcMetrics);
  server.addService(withLenientDecoding(DiscoveryService.service), discoveryHandlers(core, rpc));
  server.addService(withLenientDecoding(AgentV1Service.service), v1Handlers(core, rpc));

  const health = new HealthImplementation({ '': 'SERVING', 'agent.Discovery': 'SERVING', 'agent.v1.AgentService': 'SERVING' });
  health.addToServer(server);
  addReflection(server, packageDefinition);

  const addresses: string[] = [];
  const vsock: VsockListener[] = [];
  for (const endpoint of endpoints) {
    const bound = await bindEndpoint(server, endpoint, {
      onError: (err) => log.warn({ err }, 'vsock listener: accept failed'),
    });
    addresses.push(bound.address);
    if (bound.vsock) vsock.push(bound.vsock);
  }
  return { server, health, addresses, vsock };
}
