// Server reflection over every service the agent serves: our protocol
// (agent.Discovery, agent.v1.AgentService), grpc.health.v1.Health and the two
// reflection services themselves, as other gRPC servers list them.
//
// @grpc/reflection answers only for the package definition it is given, and
// grpc-health-check and @grpc/reflection load their .proto files themselves
// (from disk, or from the text the bundle embeds: build/embedded-proto-loader.cjs).
// So their descriptors are taken from the service definitions those packages
// build and merged into the package definition given to it. Every file is
// normalized on the way so that strict descriptor pools (protobuf's C++ and
// Go runtimes: grpcurl, grpcio's reflection clients) accept it.
//
// All of that is built on the first reflection call, not at start-up (it
// costs more than the rest of the agent's start together: bench/footprint.ts):
// the two services are registered as stand-ins that take the raw bytes, and
// hand each call to the real handler, with its decoders, once it exists.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import type { ReflectionService as ReflectionServiceType } from '@grpc/reflection';
import { FileDescriptorProto, type IDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { malformedReason } from './decoding';

/** A package definition as @grpc/reflection's own proto-loader types it (the same shape as ours). */
type Definitions = ConstructorParameters<typeof ReflectionServiceType>[0];
type ServiceDefinition = Extract<Definitions[string], { [method: string]: { path: string } }>;

/** Loaded on first use only (see the top of this file). */
const reflectionModule = (): typeof import('@grpc/reflection') => require('@grpc/reflection') as typeof import('@grpc/reflection');

/** The names upstream gRPC gives these files (protobufjs names a file after its package). */
const CANONICAL_FILE_NAMES: Record<string, string> = {
  'grpc.health.v1': 'grpc/health/v1/health.proto',
  'grpc.reflection.v1': 'grpc/reflection/v1/reflection.proto',
  'grpc.reflection.v1alpha': 'grpc/reflection/v1alpha/reflection.proto',
};

/** The method paths of the reflection services, one per version, as @grpc/reflection serves them. */
const REFLECTION_PATHS = ['/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'];

type Handler = (call: grpc.ServerDuplexStream<unknown, unknown>) => void;
interface RealMethod {
  definition: grpc.MethodDefinition<unknown, unknown>;
  handler: Handler;
}

/**
 * Registers server reflection (v1 and v1alpha) for `packageDefinition`,
 * health and reflection: stand-ins on `server` now, the real services (built
 * by `wrap`'s server, e.g. one that decodes strictly) at the first call.
 */
export function addReflection(
  server: Pick<grpc.Server, 'addService'>,
  packageDefinition: () => PackageDefinition,
  wrap: (recorder: Pick<grpc.Server, 'addService'>) => Pick<grpc.Server, 'addService'> = (r) => r,
): void {
  let real: Map<string, RealMethod> | undefined;
  const load = (): Map<string, RealMethod> => {
    if (real) return real;
    const { ReflectionService } = reflectionModule();
    const methods = new Map<string, RealMethod>();
    const recorder: Pick<grpc.Server, 'addService'> = {
      addService: (service, implementation) => {
        for (const [name, definition] of Object.entries(service)) {
          methods.set(definition.path, { definition, handler: (implementation as Record<string, Handler>)[name]! });
        }
      },
    };
    new ReflectionService(withServedServices(packageDefinition())).addToServer(wrap(recorder));
    real = methods;
    return methods;
  };
  const bytes = (b: Buffer) => b;
  for (const path of REFLECTION_PATHS) {
    const standIn = { path, requestStream: true, responseStream: true, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes };
    server.addService({ ServerReflectionInfo: standIn } as grpc.ServiceDefinition, {
      ServerReflectionInfo: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        const method = load().get(path);
        if (!method) {
          call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: `${path} is not served by this build of @grpc/reflection` });
          return;
        }
        method.handler(decodedCall(call, method.definition));
      },
    });
  }
}

/**
 * The stand-in's raw call as the real handler expects it: messages decoded
 * and encoded by its method definition. A request its decoder refuses (the
 * strict decoder's marker, decoding.ts) ends the call with INVALID_ARGUMENT.
 */
function decodedCall(call: grpc.ServerDuplexStream<Buffer, Buffer>, definition: grpc.MethodDefinition<unknown, unknown>): grpc.ServerDuplexStream<unknown, unknown> {
  const view = new EventEmitter() as EventEmitter & { write(m: unknown): boolean; end(): void };
  let failed = false;
  call.on('data', (bytes: Buffer) => {
    if (failed) return;
    let message: unknown;
    let reason: string | null;
    try {
      message = definition.requestDeserialize(bytes);
      reason = malformedReason(message);
    } catch (err) {
      reason = (err as Error).message;
    }
    if (reason !== null) {
      failed = true;
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: reason });
      return;
    }
    view.emit('data', message);
  });
  call.on('end', () => {
    if (!failed) view.emit('end');
  });
  // (the real handler listens for none: an EventEmitter would throw an 'error' nobody listens for)
  call.on('error', (err) => {
    if (view.listenerCount('error') > 0) view.emit('error', err);
  });
  call.on('cancelled', () => view.emit('cancelled'));
  view.write = (m) => call.write(Buffer.from(definition.responseSerialize(m)));
  view.end = () => call.end();
  return view as unknown as grpc.ServerDuplexStream<unknown, unknown>;
}

/** `packageDefinition` plus the health and reflection services and their messages, every file normalized. */
export function withServedServices(packageDefinition: PackageDefinition): Definitions {
  // The definitions of one loaded root share one array of files: normalize each array once.
  const done = new Map<Buffer[], Buffer[]>();
  const files = (list: Buffer[], snakeCase: boolean) => {
    if (!done.has(list)) done.set(list, list.map((bytes) => normalize(bytes, snakeCase)));
    return done.get(list)!;
  };
  const merged: Definitions = {};
  for (const [name, def] of Object.entries(packageDefinition)) {
    // Messages and enums carry their root's files; services do not.
    const list = (def as { fileDescriptorProtos?: unknown }).fileDescriptorProtos;
    merged[name] = (Array.isArray(list) ? { ...def, fileDescriptorProtos: files(list, false) } : def) as Definitions[string];
  }
  // grpc-health-check loads its proto with keepCase; @grpc/reflection does not (its names come camel-cased).
  const services: Array<[ServiceDefinition, boolean]> = [
    [(require('grpc-health-check') as typeof import('grpc-health-check')).service as unknown as ServiceDefinition, false],
    ...reflectionServices().map((s): [ServiceDefinition, boolean] => [s, true]),
  ];
  for (const [service, snakeCase] of services) {
    const methods = Object.values(service);
    if (methods.length === 0) continue;
    const serviceName = methods[0]!.path.split('/')[1]!;
    const pkg = serviceName.slice(0, serviceName.lastIndexOf('.'));
    merged[serviceName] = service;
    for (const method of methods) {
      for (const message of [method.requestType, method.responseType]) {
        const name = `${pkg}.${(message.type as IDescriptorProto).name}`;
        merged[name] = { ...message, fileDescriptorProtos: files(message.fileDescriptorProtos, snakeCase) };
      }
    }
  }
  return merged;
}

/** The service definitions @grpc/reflection registers, recorded on a stand-in server. */
function reflectionServices(): ServiceDefinition[] {
  const recorded: ServiceDefinition[] = [];
  new (reflectionModule().ReflectionService)({}).addToServer({ addService: (service) => recorded.push(service as unknown as ServiceDefinition) });
  return recorded;
}

/**
 * One file as strict descriptor pools want it:
 * - under its upstream name (health, reflection);
 * - map entries named `<FieldName>Entry` (protobufjs names them `<FieldName>`,
 *   which protobuf's C++ and Go runtimes reject as an explicit map_entry);
 * - with `snakeCase`, field and oneof names as written in the .proto
 *   (lower_snake_case) instead of the camelCase protobufjs made of them.
 */
export function normalize(bytes: Buffer, snakeCase: boolean): Buffer {
  const file = FileDescriptorProto.decode(bytes) as unknown as IFileDescriptorProto;
  const canonical = file.package ? CANONICAL_FILE_NAMES[file.package] : undefined;
  if (canonical && (file.dependency ?? []).length === 0) file.name = canonical;
  const snake = (name: string | undefined) => (snakeCase ? name?.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : name);
  const visit = (message: IDescriptorProto) => {
    for (const field of [...(message.field ?? []), ...(message.extension ?? [])]) field.name = snake(field.name);
    for (const oneof of message.oneofDecl ?? []) oneof.name = snake(oneof.name);
    for (const entry of (message.nestedType ?? []).filter((t) => t.options?.mapEntry)) {
      // The map field refers to its entry by a relative or a full name.
      const refersTo = (typeName?: string) => typeName === entry.name || Boolean(typeName?.endsWith(`.${message.name}.${entry.name}`));
      const field = message.field?.find((f) => f.label === 3 && refersTo(f.typeName));
      if (!field?.name || !field.typeName) continue;
      // protobuf's rule: ToCamelCase(field name) + "Entry".
      const name = `${field.name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()).replace(/^./, (c) => c.toUpperCase())}Entry`;
      field.typeName = `${field.typeName.slice(0, field.typeName.length - entry.name!.length)}${name}`;
      entry.name = name;
    }
    for (const nested of message.nestedType ?? []) visit(nested);
  };
  for (const message of file.messageType ?? []) visit(message);
  return Buffer.from(FileDescriptorProto.encode(file as Record<string, unknown>).finish());
}
