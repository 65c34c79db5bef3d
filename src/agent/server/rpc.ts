// The one boundary every RPC passes through: a per-call logger, metrics, and
// the translation of typed core errors into gRPC statuses. No exception
// escapes a handler; anything unexpected becomes INTERNAL with the cause logged.
import * as grpc from '@grpc/grpc-js';
import { AgentError, excerpt, invalidArgument, type ErrorKind } from '../errors';
import type { Logger } from '../log';
import { malformedReason } from './decoding';
import type { RpcMetrics } from './rpc-metrics';
import { capStatusMessage, MAX_STATUS_BYTES } from './status-text';
import { NO_POLICY, type Policy } from '../policy/policy';
import { checkRpc } from '../policy/rules';
import { encodeStatusDetails, STATUS_DETAILS_KEY } from '../../status-details';

export interface RpcContext {
  log: Logger;
  /** Aborted when the client cancels or the deadline passes. */
  signal: AbortSignal;
}

const STATUS_OF: Record<ErrorKind, grpc.status> = {
  'not-found': grpc.status.NOT_FOUND,
  'already-exists': grpc.status.ALREADY_EXISTS,
  'invalid-argument': grpc.status.INVALID_ARGUMENT,
  'failed-precondition': grpc.status.FAILED_PRECONDITION,
  'permission-denied': grpc.status.PERMISSION_DENIED,
  'out-of-range': grpc.status.OUT_OF_RANGE,
  'resource-exhausted': grpc.status.RESOURCE_EXHAUSTED,
  unimplemented: grpc.status.UNIMPLEMENTED,
  unavailable: grpc.status.UNAVAILABLE,
  internal: grpc.status.INTERNAL,
};

/** "/agent.v1.AgentService/CreateContainer" → ["v1", "CreateContainer"]. */
export function describePath(path: string): { version: string; method: string } {
  const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
  if (!m) return { version: 'unknown', method: path };
  const version = /\.(v\d+)\./.exec(`${m[1]}.`)?.[1] ?? 'stable';
  return { version, method: m[2]! };
}

/**
 * The methods answered while the guest's first-boot work goes on (AgentCore.booted):
 * they read what the agent knows and touch no device. Every other call waits for it.
 */
export const ANSWERED_DURING_BOOT: ReadonlySet<string> = new Set(['Negotiate', 'GetGuestDetails', 'GetMetrics']);

export class RpcBoundary {
  constructor(
    private readonly log: Logger,
    readonly metrics: RpcMetrics,
    /** Which RPCs the operator allows (policy/): checked before any handler runs. */
    private readonly policy: Policy = NO_POLICY,
    /**
     * statusDetails: send each failure's machine-readable reason in
     * grpc-status-details-bin (status-details.ts): protocol v2 does; v1 and
     * Discovery keep plain statuses. booted: what a call outside
     * ANSWERED_DURING_BOOT waits for before its handler runs (AgentCore.booted).
     */
    private readonly options: { statusDetails?: boolean; booted?: Promise<void> } = {},
  ) {
    this.booting = options.booted;
    void options.booted?.then(() => (this.booting = undefined));
  }

  /** The first-boot work still going on, if any; once it is done calls no longer wait on anything. */
  private booting: Promise<void> | undefined;

  /** Streams being served, and how to end each one. */
  private readonly streams = new Set<(reason: AgentError) => void>();

  /**
   * Ends every stream being served with `reason` (UNAVAILABLE: the agent is
   * replacing itself), so the clients re-attach at their offsets instead of
   * waiting on a stream that will never go on. Streams never finish on their
   * own: a drain would otherwise wait for its deadline.
   */
  endStreams(reason: AgentError): void {
    for (const end of [...this.streams]) end(reason);
  }

  unary<Req, Res>(fn: (req: Req, ctx: RpcContext) => Promise<Res> | Res): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const { ctx, finish, admitted, whenReady } = this.begin(call, call.request);
      // Refused (policy, decoding) at once; admitted, it waits for the first-boot work if it must.
      Promise.resolve()
        .then(() => admitted(call.request))
        .then((req) => whenReady(() => fn(req, ctx)))
        .then(
          (res) => {
            finish(null);
            callback(null, res);
          },
          (err: unknown) => callback(finish(err)),
        );
    };
  }

  /**
   * A server-streaming handler. `send` settles once the message is queued
   * and the messages not yet handed to HTTP/2 (counted with `sizeOf`) are
   * within `budget`: the handler produces no further ahead than that, so a
   * slow client holds the producer back instead of grpc-js buffering for it
   * (its own queue would take 16 messages of any size), and what a client
   * acknowledges is never far behind what it was sent. The default budget is
   * 16 messages. A send fails once the call is cancelled: one waiting on a
   * dead call would never settle.
   */
  serverStream<Req, Res>(
    fn: (req: Req, ctx: RpcContext, send: (msg: Res) => Promise<void>) => Promise<void>,
    flow: { budget: number; sizeOf: (msg: Res) => number } = { budget: 16, sizeOf: () => 1 },
  ): grpc.handleServerStreamingCall<Req, Res> {
    return (call) => {
      const { ctx, finish, admitted, whenReady, abort: abortStream } = this.begin(call, call.request);
      /** Sent but not yet handed to HTTP/2, in sizeOf's units. */
      let queued = 0;
      let wake: (() => void) | null = null;
      const send = (msg: Res) =>
        new Promise<void>((resolve, reject) => {
          if (ctx.signal.aborted) return reject(clientGone());
          const size = flow.sizeOf(msg);
          queued += size;
          call.write(msg, () => {
            queued -= size;
            if (queued <= flow.budget) wake?.();
          });
          if (queued <= flow.budget) return resolve();
          const onAbort = () => {
            wake = null;
            reject(clientGone());
          };
          wake = () => {
            wake = null;
            ctx.signal.removeEventListener('abort', onAbort);
            resolve();
          };
          ctx.signal.addEventListener('abort', onAbort, { once: true });
        });
      let ended: AgentError | null = null;
      const end = (reason: AgentError) => {
        ended = reason;
        abortStream();
      };
      this.streams.add(end);
      Promise.resolve()
        .then(() => admitted(call.request))
        .then((req) => whenReady(() => fn(req, ctx, send)))
        .then(
          () => {
            if (ended) throw ended;
            finish(null);
            call.end();
          },
        )
        // grpc-js sends an 'error' event's status object as the call's status.
        .catch((err: unknown) => call.emit('error', finish(ended ?? err)))
        .finally(() => this.streams.delete(end));
    };
  }

  /**
   * A client-streaming handler: `fn` reads the messages as an async iterable,
   * each admitted as a unary request is (the policy, its decoding). It runs
   * only once a first message has been admitted, as a unary handler runs only
   * for an admitted request (a refused first message ends the call before);
   * a call that sends none is INVALID_ARGUMENT. A client that cancels or goes
   * away ends the iteration early.
   */
  clientStream<Req, Res>(fn: (messages: AsyncIterable<Req>, ctx: RpcContext) => Promise<Res>): grpc.handleClientStreamingCall<Req, Res> {
    return (call, callback) => {
      const { ctx, finish, admitted, whenReady } = this.begin(call, {});
      const incoming = (call as AsyncIterable<Req>)[Symbol.asyncIterator]();
      incoming
        .next()
        .then((first) => {
          if (first.done) throw invalidArgument('the call sent no message');
          const message = admitted(first.value);
          return whenReady(() => fn((async function* () {
            yield message;
            for (let next = await incoming.next(); !next.done; next = await incoming.next()) yield admitted(next.value);
          })(), ctx));
        })
        .then(
          (res) => {
            finish(null);
            callback(null, res);
          },
          // A stream cut by the client reads as an error of the iteration: not the agent's.
          (err: unknown) => callback(finish(ctx.signal.aborted ? clientGone() : err)),
        );
    };
  }

  /**
   * A call refused before any handler ran (malformed request bytes, see
   * decoding.ts): logged like a failed call, and counted when `count`. The
   * trailing metadata to send with its INVALID_ARGUMENT: the status details
   * when this boundary sends them.
   */
  refused(path: string, details: string, count: boolean): grpc.Metadata {
    const { version, method } = describePath(path);
    if (count) this.metrics.record(version, method, 'INVALID_ARGUMENT');
    this.log.child({ rpc: method, version, path }).info({ code: 'INVALID_ARGUMENT', error: details }, 'failed');
    const metadata = new grpc.Metadata();
    if (this.options.statusDetails) {
      const reason = { reason: 'INVALID_ARGUMENT', metadata: {} };
      metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails(grpc.status.INVALID_ARGUMENT, capStatusMessage(details), reason));
    }
    return metadata;
  }

  private begin(call: { getPath(): string; once(event: 'cancelled', listener: () => void): unknown }, request: unknown) {
    const { version, method } = describePath(call.getPath());
    const ids = request as { container_id?: string; exec_id?: string };
    const log = this.log.child({
      rpc: method,
      version,
      ...(ids.container_id ? { container: logged(ids.container_id) } : {}),
      ...(ids.exec_id ? { exec: logged(ids.exec_id) } : {}),
    });
    const controller = new AbortController();
    call.once('cancelled', () => controller.abort());
    const started = process.hrtime.bigint();
    log.debug('call');
    const finish = (err: unknown): Partial<grpc.StatusObject> | null => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (err === null) {
        this.metrics.record(version, method, 'OK');
        log.debug({ ms }, 'ok');
        return null;
      }
      const status = toStatus(err, method);
      this.metrics.record(version, method, grpc.status[status.code]);
      if (status.code === grpc.status.INTERNAL) log.error({ err, ms }, 'internal error');
      else log.info({ code: grpc.status[status.code], error: status.details, ms }, 'failed');
      if (!this.options.statusDetails) return status;
      const metadata = new grpc.Metadata();
      const why = err instanceof AgentError ? { reason: err.reason, metadata: err.metadata } : { reason: 'INTERNAL', metadata: {} };
      metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails(status.code, status.details, why));
      return { ...status, metadata };
    };
    /** The request, once the policy allows the call and its bytes decoded. */
    const admitted = <Req>(req: Req): Req => {
      checkRpc(this.policy, version, method);
      return decoded(req);
    };
    /** Runs the handler now, or once the guest's first-boot work is done if the call must wait for it. */
    const whenReady = <T>(run: () => T | Promise<T>): T | Promise<T> => (this.booting && !ANSWERED_DURING_BOOT.has(method) ? this.booting.then(run) : run());
    return { ctx: { log, signal: controller.signal }, finish, admitted, whenReady, abort: () => controller.abort() };
  }
}

/** What a call whose client cancelled it or went away fails with. */
const clientGone = () => new AgentError('unavailable', 'the client cancelled the call or went away');

/** An id as the log shows it: whole, unless it is too long to be a valid one. */
const logged = (id: string) => (id.length > 128 ? excerpt(id, 128) : id);

/** The request, or an INVALID_ARGUMENT error if its bytes could not be decoded. */
function decoded<Req>(request: Req): Req {
  const reason = malformedReason(request);
  if (reason !== null) throw invalidArgument(reason);
  return request;
}

/**
 * The status of a failed call. Its message is capped (status-text.ts) whatever
 * the error says, so no status exceeds what clients accept in a header.
 */
export function toStatus(err: unknown, method: string): { code: grpc.status; details: string } {
  if (err instanceof AgentError) return { code: STATUS_OF[err.kind], details: capStatusMessage(err.message) };
  // The cause is cut on its own so that the pointer to the log survives.
  const message = capStatusMessage(err instanceof Error ? err.message : String(err), MAX_STATUS_BYTES / 2);
  return { code: grpc.status.INTERNAL, details: capStatusMessage(`${method} failed unexpectedly: ${message} (details in the agent log)`) };
}
