// Typed errors of the version-free core. Handlers never build gRPC statuses
// themselves: the RPC boundary (server/rpc.ts) maps `kind` to a status code.

export type ErrorKind =
  | 'not-found'
  | 'already-exists'
  | 'invalid-argument'
  | 'failed-precondition'
  | 'permission-denied'
  | 'resource-exhausted'
  | 'unimplemented'
  | 'unavailable'
  | 'internal';

export class AgentError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AgentError';
  }
}

export const notFound = (message: string) => new AgentError('not-found', message);
export const alreadyExists = (message: string) => new AgentError('already-exists', message);
export const invalidArgument = (message: string) => new AgentError('invalid-argument', message);
export const failedPrecondition = (message: string, cause?: unknown) =>
  new AgentError('failed-precondition', message, { cause });
export const resourceExhausted = (message: string) => new AgentError('resource-exhausted', message);
export const unimplemented = (message: string) => new AgentError('unimplemented', message);

/** The message of any thrown value, for logs and wrapped errors. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
