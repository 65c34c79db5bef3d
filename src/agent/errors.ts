// Typed errors of the version-free core. Handlers never build gRPC statuses
// themselves: the RPC boundary (server/rpc.ts) maps `kind` to a status code.

export type ErrorKind =
  | 'not-found'
  | 'already-exists'
  | 'invalid-argument'
  | 'failed-precondition'
  | 'permission-denied'
  | 'out-of-range'
  | 'resource-exhausted'
  | 'unimplemented'
  | 'unavailable'
  | 'internal';

export interface ErrorOptions {
  cause?: unknown;
  /**
   * A machine-readable reason more precise than the kind (UPPER_SNAKE_CASE,
   * e.g. "POLICY_DENIED"), with facts a client can act on ("first_offset").
   * Protocols that carry error details (v2) send them; the default reason is
   * the kind's name.
   */
  reason?: string;
  metadata?: Record<string, string>;
}

export class AgentError extends Error {
  readonly reason: string;
  readonly metadata: Record<string, string>;

  constructor(
    readonly kind: ErrorKind,
    message: string,
    options: ErrorOptions = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'AgentError';
    this.reason = options.reason ?? kind.toUpperCase().replace(/-/g, '_');
    this.metadata = options.metadata ?? {};
  }
}

export const notFound = (message: string) => new AgentError('not-found', message);
export const alreadyExists = (message: string) => new AgentError('already-exists', message);
export const invalidArgument = (message: string) => new AgentError('invalid-argument', message);
export const failedPrecondition = (message: string, cause?: unknown) =>
  new AgentError('failed-precondition', message, { cause });
export const resourceExhausted = (message: string) => new AgentError('resource-exhausted', message);
export const unimplemented = (message: string) => new AgentError('unimplemented', message);
/** A stream position the agent no longer (or not yet) holds; metadata says which one it does. */
export const outOfRange = (message: string, metadata: Record<string, string> = {}) => new AgentError('out-of-range', message, { metadata });

/** The message of any thrown value, for logs and wrapped errors. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * What a message may show of a value that came from outside (a request field,
 * the kernel command line): a short, printable excerpt. At most `max`
 * characters of it, JSON-quoted, every character that is not printable ASCII
 * escaped (\n, \u0000, \u00e9, ...), and when cut the length of the whole:
 * `"aaaa"... (65536 characters)`. Never quote outside input whole: a status
 * message travels in an HTTP/2 header, and clients cap their headers (8 KiB
 * in grpc C-core), so a long echo turns INVALID_ARGUMENT into
 * RESOURCE_EXHAUSTED on the client. A value that is not a string is shown as
 * its JSON text (an array of options, a number), cut the same way.
 * `quote: false` leaves the quotes off (for lists of names).
 */
export function excerpt(value: unknown, max = 64, options: { quote?: boolean } = {}): string {
  const quote = options.quote ?? true;
  if (typeof value !== 'string') {
    const text = (value === undefined ? undefined : JSON.stringify(value)) ?? String(value);
    const shownText = printable(cut(text, max));
    return text.length > max ? `${shownText}... (${text.length} characters)` : shownText;
  }
  const escaped = printable(JSON.stringify(cut(value, max)));
  const shownText = quote ? escaped : escaped.slice(1, -1);
  return value.length > max ? `${shownText}... (${value.length} characters)` : shownText;
}

/** The first `max` UTF-16 units of `text`, never half of a surrogate pair. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = max > 0 && /[\ud800-\udbff]/.test(text[max - 1]!) ? max - 1 : max;
  return text.slice(0, end);
}

/** JSON text with everything outside printable ASCII as \uXXXX (JSON.stringify already escapes C0 controls and lone surrogates). */
function printable(json: string): string {
  return json.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
