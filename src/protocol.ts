// The protocol definitions shared by the agent and its clients, loaded from
// the JSON descriptor that build/gen-protos.mjs derives from proto/. Nothing
// here reads a .proto file at run time, so the bundled agent needs none.
//
// The service definitions are made here from the protobufjs root, the way
// @grpc/proto-loader makes them (the same serializers, the same options),
// but without what proto-loader computes up front for every message: the
// descriptors of every file, which only server reflection and tests need.
// They cost more start-up time than the rest of the agent's own code
// (bench/footprint.ts); packageDefinition() makes them on first use.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
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

// Types are resolved as they are first used (a method's own types below, their fields at their first encode or decode).
const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);

let full: protoLoader.PackageDefinition | undefined;
/** The protocol as @grpc/proto-loader defines it, file descriptors included (made on first use). */
export function packageDefinition(): protoLoader.PackageDefinition {
  full ??= protoLoader.fromJSON(descriptor as Parameters<typeof protoLoader.fromJSON>[0], LOADER_OPTIONS);
  return full;
}

/** A method definition's protobufjs request type, for the strict decoder (server/decoding.ts). */
export const REQUEST_TYPE = Symbol('request type');

/** As lodash.camelcase (what proto-loader names a method's alias) makes of a method name: GetOOMEvent -> getOomEvent. */
function camelCaseMethod(name: string): string {
  const words = name.match(/[A-Z]{2,}(?=[A-Z][a-z]+[0-9]*|\b)|[A-Z]?[a-z]+[0-9]*|[A-Z]|[0-9]+/g) ?? [];
  return words.map((w, i) => (i === 0 ? w.toLowerCase() : w[0]!.toUpperCase() + w.slice(1).toLowerCase())).join('');
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), LOADER_OPTIONS as protobuf.IConversionOptions);
}

/** proto-loader's message definition of `type`, looked up in the full definition when first asked for. */
function messageDefinition(type: protobuf.Type): protoLoader.MessageTypeDefinition<object, object> {
  const name = type.fullName.replace(/^\./, '');
  const real = () => packageDefinition()[name] as protoLoader.MessageTypeDefinition<object, object>;
  return {
    get format() {
      return real().format;
    },
    get type() {
      return real().type;
    },
    get fileDescriptorProtos() {
      return real().fileDescriptorProtos;
    },
    serialize: serializer(type),
    deserialize: deserializer(type),
  } as protoLoader.MessageTypeDefinition<object, object>;
}

/**
 * grpc-js's definition of service `name` of `from` (our protocol's root by
 * default). Each method carries its request type (REQUEST_TYPE); the message
 * definitions' descriptors come from packageDefinition(), so for another root
 * they are not there.
 */
export function serviceDefinition(name: string, from: protobuf.Root = root): grpc.ServiceDefinition {
  const service = from.lookupService(name);
  const def: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const request = method.resolvedRequestType!;
    const response = method.resolvedResponseType!;
    def[method.name] = Object.defineProperty({
      path: `/${name}/${method.name}`,
      requestStream: Boolean(method.requestStream),
      responseStream: Boolean(method.responseStream),
      requestSerialize: serializer(request),
      requestDeserialize: deserializer(request),
      responseSerialize: serializer(response),
      responseDeserialize: deserializer(response),
      originalName: camelCaseMethod(method.name),
      requestType: messageDefinition(request),
      responseType: messageDefinition(response),
    }, REQUEST_TYPE, { value: request });
  }
  return def;
}

/** Just the services, for grpc-js's client constructors (all loadPackageDefinition reads of them). */
const services: grpc.GrpcObject = grpc.loadPackageDefinition(
  Object.fromEntries(['agent.Discovery', 'agent.v1.AgentService', 'agent.v2.AgentService'].map((n) => [n, serviceDefinition(n)])) as protoLoader.PackageDefinition,
);

type Protocol = DiscoveryGrpc & AgentGrpc;
const loaded = services as unknown as Protocol;

export const DiscoveryService = loaded.agent.Discovery;
export const AgentV1Service = loaded.agent.v1.AgentService;
export const AgentV2Service = loaded.agent.v2.AgentService;

export type { DiscoveryHandlers } from './generated/agent/Discovery';
export type { AgentServiceHandlers as AgentV1Handlers } from './generated/agent/v1/AgentService';
export type { AgentServiceHandlers as AgentV2Handlers } from './generated/agent/v2/AgentService';
