// The protocol definitions shared by the agent and its clients, loaded from
// the JSON descriptor that build/gen-protos.mjs derives from proto/. Nothing
// here reads a .proto file at run time, so the bundled agent needs none.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as AgentGrpc } from './generated/agent';
import type { ProtoGrpcType as DiscoveryGrpc } from './generated/discovery';
import descriptor from './generated/protos.json';

/** Field names as in the .proto files (snake_case); 64-bit integers as numbers; enums as their names; defaults filled in. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

export const packageDefinition = protoLoader.fromJSON(descriptor as Parameters<typeof protoLoader.fromJSON>[0], LOADER_OPTIONS);

type Protocol = DiscoveryGrpc & AgentGrpc;
const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as Protocol;

export const DiscoveryService = loaded.agent.Discovery;
export const AgentV1Service = loaded.agent.v1.AgentService;
export const AgentV2Service = loaded.agent.v2.AgentService;

export type { DiscoveryHandlers } from './generated/agent/Discovery';
export type { AgentServiceHandlers as AgentV1Handlers } from './generated/agent/v1/AgentService';
export type { AgentServiceHandlers as AgentV2Handlers } from './generated/agent/v2/AgentService';
