// The client's errors: a failed agent call as one typed error (with v2's
// machine-readable reason decoded from grpc-status-details-bin), a failed
// negotiation naming both sides' versions, and a call that needs a protocol
// version the connection does not speak.
import * as grpc from '@grpc/grpc-js';
import { decodeStatusDetails, STATUS_DETAILS_KEY } from '../status-details';

/** A protocol version this client knows: the package suffix of agent.vN.AgentService. */
export type ProtocolVersion = 'v1' | 'v2';

/** A gRPC error as grpc-js reports it (a ServiceError, or anything with a numeric code). */
export function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'number';
}

export function grpcCode(err: unknown): grpc.status | undefined {
  if (err instanceof AgentCallError) return err.code;
  return isServiceError(err) ? err.code : undefined;
}

/**
 * One failed call to the agent. `reason` and `metadata` are the ErrorInfo of
 * the status details that v2 attaches (e.g. reason "OUT_OF_RANGE" with
 * metadata { first_offset: "4096" }); null and {} when the agent sent none
 * (v1, Discovery, or a status made by grpc-js itself, such as UNAVAILABLE).
 */
export class AgentCallError extends Error {
  override readonly name = 'AgentCallError';
  /** The gRPC status code. */
  readonly code: grpc.status;
  /** The status message, as the agent (or grpc-js) wrote it. */
  readonly details: string;
  /** ErrorInfo.reason, UPPER_SNAKE_CASE; null without status details. */
  readonly reason: string | null;
  /** ErrorInfo.domain ("agent" for this agent's reasons); null without status details. */
  readonly domain: string | null;
  /** ErrorInfo.metadata; {} without status details. */
  readonly metadata: Record<string, string>;
  /** The call, as "v2.CreateContainer", "v1.WaitProcess" or "Discovery.Negotiate". */
  readonly method: string;
  /** The request id the call carried (v2 mutating calls), if any. */
  readonly requestId: string | undefined;

  constructor(init: {
    code: grpc.status;
    details: string;
    method: string;
    reason?: string | null;
    domain?: string | null;
    metadata?: Record<string, string>;
    requestId?: string;
    cause?: unknown;
  }) {
    const why = init.reason ? ` [${init.reason}]` : '';
    super(`${init.method} failed: ${grpc.status[init.code] ?? init.code}: ${init.details}${why}`, { cause: init.cause });
    this.code = init.code;
    this.details = init.details;
    this.reason = init.reason ?? null;
    this.domain = init.domain ?? null;
    this.metadata = init.metadata ?? {};
    this.method = init.method;
    this.requestId = init.requestId;
  }

  /** The code's name, e.g. "NOT_FOUND". */
  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }

  /**
   * A grpc-js error as an AgentCallError, its status details decoded. Errors
   * that are not gRPC statuses (a bug, a closed client) are returned as they are.
   */
  static from(err: unknown, method: string, requestId?: string): unknown {
    if (err instanceof AgentCallError || !isServiceError(err)) return err;
    let info: ReturnType<typeof decodeStatusDetails> = null;
    const raw = err.metadata instanceof grpc.Metadata ? err.metadata.get(STATUS_DETAILS_KEY)[0] : undefined;
    if (raw instanceof Uint8Array) info = decodeStatusDetails(raw);
    return new AgentCallError({
      code: err.code,
      details: err.details ?? err.message,
      method,
      reason: info?.reason ?? null,
      domain: info?.domain ?? null,
      metadata: info?.metadata ?? {},
      ...(requestId !== undefined ? { requestId } : {}),
      cause: err,
    });
  }
}

/** What each side of a failed negotiation said it speaks. */
export interface NegotiationSides {
  address: string;
  clientName: string;
  clientVersion: string;
  clientProtocols: readonly string[];
  /** null: the agent did not say (no Discovery, or it refused to report). */
  agentVersion: string | null;
  agentProtocols: readonly string[] | null;
}

/**
 * Connecting found no protocol version both sides speak, or the agent lacks a
 * capability the client requires. The message names both sides' versions.
 */
export class NegotiationError extends Error {
  override readonly name = 'NegotiationError';
  constructor(
    message: string,
    readonly sides: NegotiationSides,
    /** Capabilities the client required that the agent does not report. */
    readonly missingCapabilities: readonly string[] = [],
    options: { cause?: unknown } = {},
  ) {
    super(message, options);
  }
}

/** "this client (agent-client 0.1.0) speaks v2, v1; the agent (version 0.2.0) serves v1". */
export function describeSides(s: NegotiationSides): string {
  const agent = s.agentProtocols === null
    ? `the agent${s.agentVersion ? ` (version ${s.agentVersion})` : ''} did not say what it serves`
    : `the agent (version ${s.agentVersion ?? 'unknown'}) serves ${s.agentProtocols.join(', ') || 'nothing'}`;
  return `this client (${s.clientName} ${s.clientVersion}) speaks ${s.clientProtocols.join(', ')}; ${agent}`;
}

/** A call that exists only in a protocol version this connection does not speak. */
export class ProtocolVersionError extends Error {
  override readonly name = 'ProtocolVersionError';
  constructor(
    message: string,
    /** The version the call needs. */
    readonly needed: ProtocolVersion,
    /** The version this connection speaks. */
    readonly inUse: ProtocolVersion,
  ) {
    super(message);
  }
}
