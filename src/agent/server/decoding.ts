// Malformed request bytes, for every method of every service the agent
// serves. grpc-js answers a request it cannot decode with a bare INTERNAL
// "Error deserializing request", and protobufjs decodes much that is not a
// valid message at all (a string cut short, a wrong wire type, invalid UTF-8:
// see wire-check.ts). So each method's decoder is wrapped: the bytes are first
// checked strictly against the request's message type, then decoded as
// before; a failure becomes a marker object naming the method, the message
// type and what is wrong. The interceptor below answers a marker with
// INVALID_ARGUMENT before any handler sees it (the RPC boundary refuses a
// marker too, should one reach it).
//
// The message type comes from the method definition itself: proto-loader
// gives every method the file descriptors of its root, so the same wrapper
// serves agent.Discovery, every agent.vN.AgentService, grpc.health.v1 and the
// reflection services, whichever proto-loader loaded them.
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { FileDescriptorProto } from 'protobufjs/ext/descriptor';
import { checkWireFormat, WireFormatError } from './wire-check';
import { REQUEST_TYPE } from '../../protocol';

const MALFORMED = Symbol('malformed request');

export interface MalformedRequest {
  [MALFORMED]: string;
}

export function malformedReason(request: unknown): string | null {
  return typeof request === 'object' && request !== null && MALFORMED in request
    ? (request as MalformedRequest)[MALFORMED]
    : null;
}

/** What proto-loader adds to a method definition: the descriptors of the files it was loaded from. */
interface DescribedMethod {
  requestType?: { fileDescriptorProtos?: Buffer[] };
}

/** The loaded root of each proto-loader root's files (they share one array of files). */
const roots = new WeakMap<Buffer[], protobuf.Root>();

function rootOf(files: Buffer[]): protobuf.Root {
  let root = roots.get(files);
  if (!root) {
    const set = { file: files.map((bytes) => FileDescriptorProto.decode(bytes)) };
    root = (protobuf.Root as unknown as { fromDescriptor(set: unknown): protobuf.Root }).fromDescriptor(set);
    root.resolveAll();
    roots.set(files, root);
  }
  return root;
}

/** The protobufjs type of a method's request, found through its path ("/pkg.Service/Method") in its descriptors. */
export function requestTypeOf(method: grpc.MethodDefinition<unknown, unknown>): protobuf.Type {
  // Our own protocol's definitions carry the type (protocol.ts); health's and reflection's come from proto-loader.
  const own = (method as { [REQUEST_TYPE]?: protobuf.Type })[REQUEST_TYPE];
  if (own) return own;
  const files = (method as DescribedMethod).requestType?.fileDescriptorProtos;
  const m = /^\/([^/]+)\/([^/]+)$/.exec(method.path);
  if (!files || !m) throw new Error(`${method.path}: the method definition carries no descriptors (not loaded by proto-loader?)`);
  const type = rootOf(files).lookupService(m[1]!).methods[m[2]!]?.resolvedRequestType;
  if (!type) throw new Error(`${method.path}: the method is not in its own descriptors`);
  return type;
}

/**
 * `service` with every request checked strictly before it is decoded; bytes
 * that are not a valid message become a marker (see malformedReason).
 */
export function withStrictDecoding(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(service).map(([name, method]) => {
      const type = requestTypeOf(method);
      const typeName = type.fullName.replace(/^\./, '');
      const malformed = (reason: string): MalformedRequest => ({
        [MALFORMED]: `the ${name} request is not a valid protobuf message: ${reason}`,
      });
      return [
        name,
        {
          ...method,
          requestDeserialize: (bytes: Buffer): unknown => {
            try {
              checkWireFormat(type, bytes);
            } catch (err) {
              // Its message names the type, the field and the offset.
              if (err instanceof WireFormatError) return malformed(err.message);
              throw err;
            }
            try {
              return method.requestDeserialize(bytes);
            } catch (err) {
              return malformed(`${typeName}: ${err instanceof Error ? err.message : String(err)}`);
            }
          },
        },
      ];
    }),
  );
}

/**
 * A stand-in server for code that registers its own services (grpc-health-check,
 * @grpc/reflection): what it adds is added to `server` with strict decoding.
 */
export function strictDecodingServer(server: Pick<grpc.Server, 'addService'>): Pick<grpc.Server, 'addService'> {
  return {
    addService: (service, implementation) => server.addService(withStrictDecoding(service), implementation),
  };
}

/**
 * A server interceptor that answers a malformed request (a marker) with
 * INVALID_ARGUMENT and passes neither it nor the end of the request on: the
 * handler of a unary or server-streaming call is never called, a streaming
 * handler never sees the message. `onRefused` is told of each refusal, and
 * may return the trailing metadata to send with it (grpc.Metadata: a protocol's status details).
 */
export function refuseMalformedRequests(onRefused?: (path: string, details: string) => unknown): grpc.ServerInterceptor {
  return (method, call) => {
    let refused = false;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (message, pass) => {
            if (refused) return;
            const reason = malformedReason(message);
            if (reason === null) {
              pass(message);
              return;
            }
            refused = true;
            const given = onRefused?.(method.path, reason);
            const metadata = given instanceof grpc.Metadata ? given : new grpc.Metadata();
            call.sendStatus({ code: grpc.status.INVALID_ARGUMENT, details: reason, metadata });
          },
          onReceiveHalfClose: (pass) => {
            if (!refused) pass();
          },
        }),
    });
  };
}
