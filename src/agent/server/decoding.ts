// Malformed request bytes. grpc-js answers a request it cannot decode with a
// bare INTERNAL "Error deserializing request"; the contract wants a status
// that says what is wrong. So each method's decoder is wrapped: a failure
// becomes a marker object, and the RPC boundary turns the marker into
// INVALID_ARGUMENT naming the message type and the decoder's reason.
import type * as grpc from '@grpc/grpc-js';

const MALFORMED = Symbol('malformed request');

export interface MalformedRequest {
  [MALFORMED]: string;
}

export function malformedReason(request: unknown): string | null {
  return typeof request === 'object' && request !== null && MALFORMED in request
    ? (request as MalformedRequest)[MALFORMED]
    : null;
}

export function withLenientDecoding(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(service).map(([name, method]) => [
      name,
      {
        ...method,
        requestDeserialize: (bytes: Buffer): unknown => {
          try {
            return method.requestDeserialize(bytes);
          } catch (err) {
            const reason = err instanceof Error ? err.message : String(err);
            return { [MALFORMED]: `the ${name} request is not a valid protobuf message: ${reason}` };
          }
        },
      },
    ]),
  );
}
