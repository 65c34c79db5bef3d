// The runtime-side client: connects, negotiates a protocol version through
// agent.Discovery, then offers one typed API over v1 and v2, plus raw calls
// of either version.
//
// Negotiation (connect): Negotiate with the versions the client is to speak
// (default v2, v1); the agent picks the highest common one. When v2 is picked
// the client checks that agent.v2.AgentService really answers. When
// Negotiate or the v2 service is missing (UNIMPLEMENTED, or INVALID_ARGUMENT,
// which some servers answer for an unknown service) it falls back to v1 and
// logs why. No common version, or a required capability the agent does not
// report, is a NegotiationError naming both sides' versions.
//
// Retries: every mutating v2 call carries a request id (given by the caller,
// or random), and a call that fails with UNAVAILABLE is sent again with the
// same id, a bounded number of times with backoff. v2 streams re-attach at
// their last offset (ReadOutput) or event (WatchEvents). v1 has no request
// ids, so nothing of v1 is retried: a repeated v1 mutation could act twice.
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { ownedSockets, type OwnedSockets } from './owned-sockets';
import type { MethodDefinition } from '@grpc/proto-loader';
import type { NegotiateResponse__Output } from '../generated/agent/NegotiateResponse';
import type { AgentServiceDefinition as V1Definition } from '../generated/agent/v1/AgentService';
import type { AgentServiceDefinition as V2Definition } from '../generated/agent/v2/AgentService';
import type { ReadOutputResponse__Output } from '../generated/agent/v2/ReadOutputResponse';
import type { WatchEventsResponse__Output } from '../generated/agent/v2/WatchEventsResponse';
import { AgentV1Service, AgentV2Service, DiscoveryService } from '../protocol';
import { parseAgentAddress } from './address';
import { AgentCallError, describeSides, grpcCode, NegotiationError, ProtocolVersionError, type NegotiationSides, type ProtocolVersion } from './errors';
import { exitStatusFromV1, exitStatusFromV2, type ExitStatus } from './exit-status';
import { readResumeRecord, writeResumeRecord, type ClientState, type OutputStreamName, type OutstandingRequest, type ResumeRecord } from './resume';
import { backoffDelay, DEFAULT_RETRY, isUnavailable, sleep, withRetries, type RetryPolicy } from './retry';
import {
  containerInfoFromV2, eventFromV2, jsonText, kernelModuleToWire, storageToWire, wireStream,
  type AgentEvent, type ContainerInfo, type KernelModule, type Mutation, type OutputChunk, type ProcessInfo, type ProcessRef, type Storage,
} from './types';
import { openVsockBridge, type BridgeOptions, type VsockBridge } from './vsock-bridge';

export { AgentCallError, NegotiationError, ProtocolVersionError, type ProtocolVersion } from './errors';
export type { ExitStatus } from './exit-status';
export type { ResumeRecord, OutstandingRequest } from './resume';
export type { RetryPolicy } from './retry';
export type * from './types';

export const CLIENT_NAME = 'agent-client';
export const CLIENT_VERSION = '0.5.0';
/** Protocol versions this client speaks, preferred first: connect() offers these unless told otherwise. */
export const CLIENT_PROTOCOLS: readonly ProtocolVersion[] = ['v2', 'v1'];

export type V1Method = Extract<keyof V1Definition, string>;
export type V1Request<M extends V1Method> = V1Definition[M] extends MethodDefinition<infer Q, any, any, any> ? Q : never;
export type V1Response<M extends V1Method> = V1Definition[M] extends MethodDefinition<any, any, any, infer R> ? R : never;

export type V2Method = Extract<keyof V2Definition, string>;
/** v2's server-streaming RPCs: call them with v2Stream() (or readOutput/watchEvents). */
export type V2StreamMethod = 'ReadOutput' | 'WatchEvents';
/** v2's client-streaming RPC: call it with uploadAgentBinary(). */
export type V2ClientStreamMethod = 'UploadAgentBinary';
export type V2UnaryMethod = Exclude<V2Method, V2StreamMethod | V2ClientStreamMethod>;
export type V2Request<M extends V2Method> = V2Definition[M] extends MethodDefinition<infer Q, any, any, any> ? Q : never;
export type V2Response<M extends V2Method> = V2Definition[M] extends MethodDefinition<any, any, any, infer R> ? R : never;

/** Where the client reports what it decided (fallbacks, retries, re-attaches). The default says nothing. */
export type ClientLogger = (level: 'debug' | 'info' | 'warn', message: string, fields?: Record<string, unknown>) => void;

export interface ConnectOptions {
  /** Seconds to wait for the agent to accept the connection. */
  connectTimeout?: number;
  maxMessageBytes?: number;
  client_name?: string;
  /** For vsock:// addresses: options of the unix-to-vsock bridge (tests inject `dial`). */
  vsockBridge?: BridgeOptions;
  /** The protocol versions to offer, e.g. ['v1'] to force v1. Default CLIENT_PROTOCOLS (v2, v1). */
  protocols?: readonly ProtocolVersion[];
  /** Capabilities the agent must report in Negotiate (e.g. "feature:stream-output"); connect fails otherwise. */
  require?: readonly string[];
  log?: ClientLogger;
  /** Retries of v2 calls and stream re-attaches after UNAVAILABLE. Default DEFAULT_RETRY. */
  retry?: Partial<RetryPolicy>;
}

/** Why a connection speaks the version it does. */
export interface Negotiated {
  /** The version in use. */
  version: ProtocolVersion;
  /** Why the client fell back to v1 (Negotiate or the v2 service missing); null when Negotiate's choice stands. */
  fallback: string | null;
}

const PROTOCOLS: readonly ProtocolVersion[] = ['v1', 'v2'];
const rank = (v: string) => Number(/^v(\d+)$/.exec(v)?.[1] ?? 0);
/** Statuses by which a server says it has no such service or method. */
const isMissing = (err: unknown) => grpcCode(err) === grpc.status.UNIMPLEMENTED || grpcCode(err) === grpc.status.INVALID_ARGUMENT;
const describeError = (err: unknown) => {
  const code = grpcCode(err);
  const details = (err as { details?: string }).details ?? (err as Error).message;
  return code !== undefined ? `${grpc.status[code]}: ${details}` : String(details);
};
const noLog: ClientLogger = () => {};

/** v2 RPCs whose request has a request_id: the mutating ones. */
const V2_MUTATING: ReadonlySet<string> = new Set(
  Object.entries(AgentV2Service.service as unknown as Record<string, { requestType: { type: { field?: Array<{ name?: string }> } } }>)
    .filter(([, def]) => (def.requestType.type.field ?? []).some((f) => f.name === 'request_id'))
    .map(([name]) => name),
);
/**
 * AcknowledgeOutput calls one stream may have unanswered. Their answers
 * queue behind the output on the connection, so waiting for them would tie
 * the stream's pace to that queue: the bound is only against a pile-up when
 * the agent stops answering (an eighth of a window apart, 64 cover 8 windows).
 */
const MAX_ACKS_IN_FLIGHT = 64;

const V2_STREAMS: ReadonlySet<string> = new Set(['ReadOutput', 'WatchEvents', 'UploadAgentBinary']);
/** Bytes per UploadAgentBinary message: well under the agent's 4 MiB message limit. */
const UPLOAD_CHUNK_BYTES = 1024 * 1024;

export function isV2MutatingMethod(method: string): boolean {
  return V2_MUTATING.has(method);
}

function unary<T>(client: grpc.Client, method: string, request: unknown, options: grpc.CallOptions = {}): Promise<T> {
  const fn = (client as unknown as Record<string, Function>)[method];
  if (typeof fn !== 'function') return Promise.reject(new Error(`unknown method ${method}`));
  return new Promise((resolve, reject) =>
    fn.call(client, request, new grpc.Metadata(), options, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))),
  );
}

/** A server stream as an async generator; leaving it early cancels the call. Errors are grpc-js's. */
async function* serverStream<T>(client: grpc.Client, method: string, request: unknown): AsyncGenerator<T> {
  const fn = (client as unknown as Record<string, Function>)[method];
  if (typeof fn !== 'function') throw new Error(`unknown method ${method}`);
  const call = fn.call(client, request, new grpc.Metadata(), {}) as grpc.ClientReadableStream<T>;
  // The iterator reports errors; this keeps a late one (CANCELLED after an early exit) from being unhandled.
  call.on('error', () => {});
  try {
    for await (const msg of call) yield msg as T;
  } finally {
    call.cancel();
  }
}

const key = (...parts: string[]) => parts.join('\u0000');
const signalNumber = (s: number | string): number => {
  if (typeof s === 'number') return s;
  const n = (os.constants.signals as Record<string, number>)[s.toUpperCase().startsWith('SIG') ? s.toUpperCase() : `SIG${s.toUpperCase()}`];
  if (n === undefined) throw new Error(`unknown signal ${s}`);
  return n;
};

export interface CreateSandboxOptions extends Mutation {
  hostname?: string;
  /** resolv.conf lines, e.g. "nameserver 10.0.2.3". */
  dns?: string[];
  storages?: Storage[];
  kernelModules?: KernelModule[];
  /** Empty: "sandbox". */
  sandboxId?: string;
}
export interface CreateContainerOptions extends Mutation {
  containerId: string;
  /** The init process's exec id; omitted: the container id. */
  execId?: string;
  /** The OCI runtime spec (config.json), as an object or JSON text. */
  ociSpec: unknown;
  storages?: Storage[];
}
export interface ExecOptions extends Mutation {
  containerId: string;
  execId: string;
  /** An OCI "process" object, or its JSON text. */
  process: unknown;
}
export interface ReadOutputOptions extends ProcessRef {
  stream?: OutputStreamName;
  /** Where to start. Default: where this client (or the record it resumed from) stopped, else 0. v1 cannot go back. */
  offset?: number;
  /** Largest chunk (v2: per message; v1: per poll). Default 64 KiB. */
  maxChunkBytes?: number;
  /** v2: which reader this is (each has its own acknowledged offset). Default the agent's ("default"). */
  reader?: string;
  /**
   * v2: acknowledge what the caller has taken, so that the agent releases
   * nothing before (ReadOutput's acknowledged_only), and a client that dies
   * with chunks in its buffers loses none of them (the last 256 KiB taken
   * stay unacknowledged, so reading again from a recent offset works). Default
   * true where the agent has "feature:output-acknowledgement"; false trades
   * that for throughput (the agent then keeps only the last 256 KiB it sent).
   */
  acknowledge?: boolean;
}
export interface WatchEventsOptions {
  /** Send the events after this seq. Default: after the last event this client saw, else every event still held. */
  afterSeq?: number;
  /** Only events from now on (ignored when afterSeq is given). */
  fromNow?: boolean;
}

export class AgentClient {
  private readonly log: ClientLogger;
  private readonly retry: RetryPolicy;
  /** Next offset to read, by container/exec/stream. */
  private readonly streams = new Map<string, { containerId: string; execId: string; stream: OutputStreamName; offset: number }>();
  /** Next stdin offset, by container/exec. */
  private readonly stdin = new Map<string, { containerId: string; execId: string; offset: number }>();
  private readonly initExecIds = new Map<string, string>();
  private readonly outstanding = new Map<string, OutstandingRequest>();
  /** Writes to one process's stdin, one after the other (each needs the offset the previous one ended at). */
  private readonly stdinQueues = new Map<string, Promise<unknown>>();
  private eventCursor: number | null = null;

  private constructor(
    /** The address connected to, as given. */
    readonly address: string,
    private readonly discovery: grpc.Client,
    private readonly v1Client: grpc.Client,
    private readonly v2Client: grpc.Client,
    /** What Negotiate answered; synthesized (agent_version "unknown", v1 only) when the agent has no Discovery. */
    readonly agent: NegotiateResponse__Output,
    /** The version in use and why. */
    readonly negotiated: Negotiated,
    options: ConnectOptions,
    private readonly sockets: OwnedSockets,
    private readonly bridge?: VsockBridge,
  ) {
    this.log = options.log ?? noLog;
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
  }

  static async connect(addr: string, options: ConnectOptions = {}): Promise<AgentClient> {
    const parsed = parseAgentAddress(addr);
    if (parsed.kind === 'grpc') return AgentClient.connectTarget(addr, parsed.target, options);
    // grpc-js cannot dial vsock: it dials a private unix socket piped to vsock.
    const bridge = await openVsockBridge(parsed.cid, parsed.port, options.vsockBridge);
    try {
      return await AgentClient.connectTarget(addr, bridge.target, options, bridge);
    } catch (err) {
      bridge.close();
      throw err;
    }
  }

  /**
   * Connects to the agent a saved record names and restores what the record
   * holds (offsets, event cursor, outstanding request ids). `record` is the
   * JSON text or the parsed object saveState() returned, possibly written by
   * an earlier release.
   */
  static async resume(record: string | unknown, options: ConnectOptions = {}): Promise<AgentClient> {
    const { state, origin } = readResumeRecord(record);
    const client = await AgentClient.connect(state.address, options);
    const log = options.log ?? noLog;
    if (client.protocol !== state.protocol) {
      log('warn', `resuming with protocol ${client.protocol}; the record was saved with ${state.protocol}` +
        (client.protocol === 'v1' ? ' (v1 reads cannot seek: output offsets continue from where v1 reading is)' : ''), { address: state.address });
    }
    if (state.agentVersion && state.agentVersion !== client.agent.agent_version) {
      log('info', `the agent at ${state.address} is now version ${client.agent.agent_version} (was ${state.agentVersion} when the record was saved)`);
    }
    client.restore(state);
    log('debug', `resumed from a format ${origin.format} record`, { savedBy: origin.client, savedAtMs: origin.savedAtMs });
    return client;
  }

  private static async connectTarget(addr: string, target: string, options: ConnectOptions, bridge?: VsockBridge): Promise<AgentClient> {
    const limit = options.maxMessageBytes ?? 16 * 1024 * 1024;
    const channelOptions = {
      'grpc.max_receive_message_length': limit,
      'grpc.max_send_message_length': limit,
      'grpc.use_local_subchannel_pool': 1,
      // Reconnect soon after a drop, so that retries find the agent when it is back.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
    };
    const sockets = ownedSockets();
    const discovery = new DiscoveryService(target, sockets.credentials, channelOptions);
    // Share the discovery channel for the versioned services.
    const shared = { ...channelOptions, channelOverride: discovery.getChannel() };
    const v1Client = new AgentV1Service(target, sockets.credentials, shared);
    const v2Client = new AgentV2Service(target, sockets.credentials, shared);
    const deadline = Date.now() + (options.connectTimeout ?? 10) * 1000;
    try {
      await new Promise<void>((resolve, reject) =>
        discovery.waitForReady(deadline, (err) => (err ? reject(new Error(`cannot reach the agent at ${addr}: ${err.message}`)) : resolve())),
      );
      const { agent, negotiated } = await negotiate(addr, { discovery, v1Client, v2Client }, options, deadline);
      return new AgentClient(addr, discovery, v1Client, v2Client, agent, negotiated, options, sockets, bridge);
    } catch (err) {
      // Nobody gets a client to close: an open channel would keep reconnecting
      // (and keep the process alive) for nothing. connect() closes the bridge.
      v1Client.close();
      v2Client.close();
      discovery.close();
      sockets.endAll(0);
      throw err;
    }
  }

  /** The protocol version in use ("v1" or "v2"). */
  get protocol(): ProtocolVersion {
    return this.negotiated.version;
  }

  /** One v1 call; rejects with the gRPC error (code, details) on failure. Available whatever version was negotiated. */
  v1<M extends V1Method>(method: M, request: V1Request<M>, options: { deadlineSeconds?: number } = {}): Promise<V1Response<M>> {
    const fn = (this.v1Client as unknown as Record<string, Function>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`unknown v1 method ${method}`));
    const callOptions: grpc.CallOptions = options.deadlineSeconds ? { deadline: Date.now() + options.deadlineSeconds * 1000 } : {};
    return new Promise((resolve, reject) =>
      fn.call(this.v1Client, request, new grpc.Metadata(), callOptions, (err: grpc.ServiceError | null, res: V1Response<M>) =>
        err ? reject(err) : resolve(res),
      ),
    );
  }

  /**
   * One unary v2 call, sent as given; rejects with an AgentCallError (its
   * status details decoded). Needs v2 negotiated. With `retry`, an UNAVAILABLE
   * failure is retried (a mutating call first gets a random request_id if it
   * has none, so the retry is safe).
   */
  v2<M extends V2UnaryMethod>(method: M, request: V2Request<M>, options: { deadlineSeconds?: number; retry?: boolean } = {}): Promise<V2Response<M>> {
    if (V2_STREAMS.has(method)) return Promise.reject(new Error(`v2 ${method} is a stream: use ${method === 'UploadAgentBinary' ? 'uploadAgentBinary()' : 'v2Stream()'}`));
    if (this.protocol !== 'v2') return Promise.reject(this.needsV2(`v2 ${method}`));
    const req = { ...(request as Record<string, unknown>) };
    if (options.retry && V2_MUTATING.has(method) && !req.request_id) req.request_id = randomUUID();
    const requestId = typeof req.request_id === 'string' && req.request_id ? req.request_id : undefined;
    const once = () => unary<V2Response<M>>(this.v2Client, method, req, options.deadlineSeconds ? { deadline: Date.now() + options.deadlineSeconds * 1000 } : {});
    const policy = options.retry ? this.retry : { ...this.retry, attempts: 1 };
    return withRetries(policy, once, (err, n, ms) => this.logRetry(method, requestId, err, n, ms)).catch((err: unknown) => {
      throw AgentCallError.from(err, `v2.${method}`, requestId);
    });
  }

  /** One v2 server stream (ReadOutput, WatchEvents), its messages as they come; no re-attach. Errors are AgentCallErrors. */
  async *v2Stream<M extends V2StreamMethod>(method: M, request: V2Request<M>): AsyncGenerator<V2Response<M>> {
    if (this.protocol !== 'v2') throw this.needsV2(`v2 ${method}`);
    try {
      yield* serverStream<V2Response<M>>(this.v2Client, method, request);
    } catch (err) {
      throw AgentCallError.from(err, `v2.${method}`);
    }
  }

  // ---- the typed API: both versions ----

  async createSandbox(o: CreateSandboxOptions = {}): Promise<void> {
    const req = {
      hostname: o.hostname ?? '',
      dns: o.dns ?? [],
      storages: (o.storages ?? []).map(storageToWire),
      kernel_modules: (o.kernelModules ?? []).map(kernelModuleToWire),
      sandbox_id: o.sandboxId ?? '',
    };
    if (this.protocol === 'v2') await this.mutate('CreateSandbox', req, o);
    else await this.call1('CreateSandbox', req);
  }

  async destroySandbox(o: Mutation = {}): Promise<void> {
    if (this.protocol === 'v2') await this.mutate('DestroySandbox', {}, o);
    else await this.call1('DestroySandbox', {});
  }

  async createContainer(o: CreateContainerOptions): Promise<void> {
    const execId = o.execId || o.containerId;
    const req = { container_id: o.containerId, exec_id: execId, oci_spec_json: jsonText(o.ociSpec), storages: (o.storages ?? []).map(storageToWire) };
    if (this.protocol === 'v2') await this.mutate('CreateContainer', req, o, { containerId: o.containerId, execId });
    else await this.call1('CreateContainer', req);
    this.initExecIds.set(o.containerId, execId);
    this.setStdin(o.containerId, execId, 0);
  }

  async startContainer(o: { containerId: string } & Mutation): Promise<void> {
    if (this.protocol === 'v2') await this.mutate('StartContainer', { container_id: o.containerId }, o, { containerId: o.containerId });
    else await this.call1('StartContainer', { container_id: o.containerId });
  }

  /** Removes the container; `timeoutSeconds`: how long to wait for its processes to die after SIGKILL (0 or omitted: the agent's default, 10 s). */
  async removeContainer(o: { containerId: string; timeoutSeconds?: number } & Mutation): Promise<void> {
    if (this.protocol === 'v2') {
      await this.mutate('RemoveContainer', { container_id: o.containerId, timeout_seconds: o.timeoutSeconds ?? 0 }, o, { containerId: o.containerId });
    } else {
      await this.call1('RemoveContainer', { container_id: o.containerId, timeout: o.timeoutSeconds ?? 0 });
    }
    this.forget(o.containerId);
  }

  async exec(o: ExecOptions): Promise<void> {
    const req = { container_id: o.containerId, exec_id: o.execId, oci_process_json: jsonText(o.process) };
    if (this.protocol === 'v2') await this.mutate('ExecProcess', req, o, { containerId: o.containerId, execId: o.execId });
    else await this.call1('ExecProcess', req);
    this.setStdin(o.containerId, o.execId, 0);
  }

  /** Sends a signal (a number, or a name such as "SIGTERM" or "TERM"). */
  async signal(o: ProcessRef & Mutation & { signal: number | string }): Promise<void> {
    const signal = signalNumber(o.signal);
    const { wire } = await this.execOf(o);
    const req = { container_id: o.containerId, exec_id: wire, signal };
    if (this.protocol === 'v2') await this.mutate('SignalProcess', req, o, { containerId: o.containerId, execId: wire });
    else await this.call1('SignalProcess', req);
  }

  /**
   * Waits for the process to exit. v2 keeps the status (ask again, e.g. after
   * a reconnect) until releaseProcess; v1 hands it over once, as one integer
   * converted here (see exit-status.ts for what that cannot tell).
   */
  async wait(o: ProcessRef): Promise<ExitStatus> {
    const { wire } = await this.execOf(o);
    const req = { container_id: o.containerId, exec_id: wire };
    if (this.protocol === 'v1') return exitStatusFromV1((await this.call1('WaitProcess', req)).status);
    const res = await this.read2('WaitProcess', req);
    if (!res.status) throw new AgentCallError({ code: grpc.status.INTERNAL, details: 'the agent answered WaitProcess without a status', method: 'v2.WaitProcess' });
    return exitStatusFromV2(res.status);
  }

  /**
   * Writes to the process's stdin; resolves with the bytes written so far (the
   * stdin offset). v2 writes at an offset this client tracks, so a retry is not
   * applied twice; writes to one process are sent one after the other.
   */
  writeInput(o: ProcessRef & Mutation & { data: Uint8Array | string }): Promise<{ offset: number }> {
    const data = typeof o.data === 'string' ? Buffer.from(o.data) : Buffer.from(o.data.buffer, o.data.byteOffset, o.data.byteLength);
    return this.inputQueue(o, async (wire, id) => {
      if (this.protocol === 'v2') {
        const offset = await this.stdinOffset(o.containerId, wire);
        const res = await this.mutate('WriteInput', { container_id: o.containerId, exec_id: wire, offset, data, close: false }, o, { containerId: o.containerId, execId: wire });
        this.setStdin(o.containerId, wire, res.offset);
        return { offset: res.offset };
      }
      let offset = this.stdin.get(key(o.containerId, id))?.offset ?? 0;
      for (let rest = data; ;) {
        const { len } = await this.call1('WriteStdin', { container_id: o.containerId, exec_id: wire, data: rest });
        offset += len;
        this.setStdin(o.containerId, id, offset);
        if (len >= rest.length) return { offset };
        if (len === 0) throw new Error(`v1 WriteStdin to ${o.containerId}/${wire || '(init)'} accepted no bytes`);
        rest = rest.subarray(len);
      }
    });
  }

  /** Closes the process's stdin (end of input; on a terminal, the EOF character). */
  async closeInput(o: ProcessRef & Mutation): Promise<void> {
    await this.inputQueue(o, async (wire) => {
      if (this.protocol === 'v2') {
        const offset = await this.stdinOffset(o.containerId, wire);
        await this.mutate('WriteInput', { container_id: o.containerId, exec_id: wire, offset, data: Buffer.alloc(0), close: true }, o, { containerId: o.containerId, execId: wire });
      } else {
        await this.call1('CloseStdin', { container_id: o.containerId, exec_id: wire });
      }
    });
  }

  /**
   * The process's output from an offset, following it to the end of stream
   * (the last chunk has eof set). v2: the ReadOutput stream, re-attached at the
   * last offset after UNAVAILABLE; v1: ReadStdout/ReadStderr polls, offsets
   * counted here. v1 reads consume: only one reader per stream, no going back.
   */
  readOutput(o: ReadOutputOptions): AsyncGenerator<OutputChunk> {
    return this.protocol === 'v2' ? this.readOutputV2(o) : this.readOutputV1(o);
  }

  // ---- the typed API: v2 only ----

  /**
   * UploadAgentBinary: streams `file` to the agent in 1 MiB messages, for an
   * UpgradeAgent with `uploaded: true` and this sha256. An upload cut short
   * (the connection lost) is resumed once, at the offset the agent holds.
   */
  async uploadAgentBinary(file: string, o: { onProgress?: (sent: number, size: number) => void } = {}): Promise<{ size: number; sha256: string }> {
    if (this.protocol !== 'v2') throw this.needsV2('uploadAgentBinary');
    const size = fs.statSync(file).size;
    const hash = createHash('sha256');
    for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
    const sha256 = hash.digest('hex');
    const send = (from: number) =>
      new Promise<{ size: number; sha256: string }>((resolve, reject) => {
        const call = (this.v2Client as unknown as Record<string, (cb: (err: grpc.ServiceError | null, res: { size: number; sha256: string }) => void) => grpc.ClientWritableStream<unknown>>)
          .UploadAgentBinary!.call(this.v2Client, (err, res) => (err ? reject(AgentCallError.from(err, 'v2.UploadAgentBinary')) : resolve(res)));
        void (async () => {
          let offset = from;
          const fd = fs.openSync(file, 'r');
          try {
            do {
              const data = Buffer.alloc(Math.min(UPLOAD_CHUNK_BYTES, size - offset));
              fs.readSync(fd, data, 0, data.length, offset);
              const more = call.write({ size, sha256, offset, data });
              offset += data.length;
              o.onProgress?.(offset, size);
              if (!more) await new Promise((r) => call.once('drain', r));
            } while (offset < size);
            call.end();
          } catch (err) {
            call.cancel();
            reject(err);
          } finally {
            fs.closeSync(fd);
          }
        })();
      });
    try {
      return await send(0);
    } catch (err) {
      const held = /resume at offset (\d+)/.exec(err instanceof Error ? err.message : '')?.[1];
      if (held === undefined && !isUnavailable(err)) throw err;
      this.log('info', `resuming the upload of ${file} at offset ${held ?? 0}`, {});
      return send(held === undefined ? 0 : Number(held));
    }
  }

  /** Events (process starts and exits, container states, OOM kills) from a cursor, following; re-attached after UNAVAILABLE. */
  async *watchEvents(o: WatchEventsOptions = {}): AsyncGenerator<AgentEvent> {
    if (this.protocol !== 'v2') throw this.needsV2('watchEvents');
    let cursor = o.afterSeq ?? this.eventCursor;
    let fromNow = o.afterSeq === undefined && !!o.fromNow;
    for (let failures = 0; ;) {
      try {
        for await (const msg of serverStream<WatchEventsResponse__Output>(this.v2Client, 'WatchEvents', { after_seq: cursor ?? 0, from_now: fromNow })) {
          failures = 0;
          fromNow = false;
          const event = eventFromV2(msg);
          try {
            yield event;
          } finally {
            cursor = msg.seq;
            this.eventCursor = msg.seq;
          }
        }
        return;
      } catch (err) {
        failures++;
        if (!isUnavailable(err) || failures >= this.retry.attempts) throw AgentCallError.from(err, 'v2.WatchEvents');
        const ms = backoffDelay(this.retry, failures);
        this.log('warn', `WatchEvents dropped (${describeError(err)}); re-attaching ${fromNow ? 'from now (events in the gap are lost: none was seen yet)' : `after seq ${cursor ?? 0}`} in ${ms} ms`);
        await sleep(ms);
      }
    }
  }

  async listContainers(): Promise<ContainerInfo[]> {
    if (this.protocol !== 'v2') throw this.needsV2('listContainers');
    return (await this.read2('ListContainers', {})).containers.map(containerInfoFromV2);
  }

  async getContainer(containerId: string): Promise<ContainerInfo> {
    if (this.protocol !== 'v2') throw this.needsV2('getContainer');
    const res = await this.read2('GetContainer', { container_id: containerId });
    if (!res.container) throw new AgentCallError({ code: grpc.status.INTERNAL, details: `the agent answered GetContainer ${containerId} without a container`, method: 'v2.GetContainer' });
    const info = containerInfoFromV2(res.container);
    if (info.init) this.initExecIds.set(containerId, info.init.execId);
    return info;
  }

  /** The client has what it wanted of the process (status, output): the agent may forget it. */
  async releaseProcess(o: ProcessRef & Mutation): Promise<void> {
    if (this.protocol !== 'v2') throw this.needsV2('releaseProcess');
    const { wire } = await this.execOf(o);
    await this.mutate('ReleaseProcess', { container_id: o.containerId, exec_id: wire }, o, { containerId: o.containerId, execId: wire });
    for (const [k, s] of this.streams) if (s.containerId === o.containerId && s.execId === wire) this.streams.delete(k);
    this.stdin.delete(key(o.containerId, wire));
  }

  // ---- resuming after a restart ----

  /** Mutating calls sent whose outcome is unknown (in flight, or failed with UNAVAILABLE after every retry). */
  outstandingRequests(): OutstandingRequest[] {
    return [...this.outstanding.values()].map((r) => ({ ...r }));
  }

  /** Seq of the last event handed out by watchEvents; null before any. */
  get lastEventSeq(): number | null {
    return this.eventCursor;
  }

  /** The record to save for AgentClient.resume(): JSON-serializable, versioned (resume.ts). */
  saveState(now = Date.now()): ResumeRecord {
    return writeResumeRecord(this.state(), { name: CLIENT_NAME, version: CLIENT_VERSION }, now);
  }

  close(): void {
    this.v1Client.close();
    this.v2Client.close();
    this.discovery.close();
    this.sockets.endAll();
    this.bridge?.close();
  }

  // ---- internals ----

  private state(): ClientState {
    return {
      address: this.address,
      protocol: this.protocol,
      agentVersion: this.agent.agent_version,
      eventCursor: this.eventCursor,
      streams: [...this.streams.values()].map((s) => ({ ...s })),
      stdin: [...this.stdin.values()].map((s) => ({ ...s })),
      initExecIds: Object.fromEntries(this.initExecIds),
      outstanding: this.outstandingRequests(),
    };
  }

  private restore(s: ClientState): void {
    this.eventCursor = s.eventCursor;
    for (const e of s.streams) this.streams.set(key(e.containerId, e.execId, e.stream), { ...e });
    for (const e of s.stdin) this.stdin.set(key(e.containerId, e.execId), { ...e });
    for (const [c, e] of Object.entries(s.initExecIds)) this.initExecIds.set(c, e);
    for (const r of s.outstanding) this.outstanding.set(r.requestId, { ...r });
  }

  private needsV2(what: string): ProtocolVersionError {
    const served = this.agent.protocol_versions;
    const version = this.agent.agent_version || 'unknown';
    const message = served.includes('v2') && !this.negotiated.fallback
      ? `${what} needs protocol v2; this client speaks v1 with the agent at ${this.address} (version ${version}, which serves ${served.join(', ')}): ` +
        'connect offering v2'
      : `${what} needs protocol v2; the agent at ${this.address} speaks v1 (version ${version})` +
        (this.negotiated.fallback ? ` (${this.negotiated.fallback})` : '');
    return new ProtocolVersionError(message, 'v2', this.protocol);
  }

  private logRetry(method: string, requestId: string | undefined, err: unknown, retry: number, ms: number): void {
    this.log('warn', `${method} failed (${describeError(err)}); retry ${retry}/${this.retry.attempts - 1} in ${ms} ms` +
      (requestId ? ` with the same request id ${requestId}` : ''), { method, requestId });
  }

  private async call1<M extends V1Method>(method: M, request: V1Request<M>): Promise<V1Response<M>> {
    try {
      return await this.v1(method, request);
    } catch (err) {
      throw AgentCallError.from(err, `v1.${method}`);
    }
  }

  /** A v2 call that changes nothing: retried as it is. */
  private read2<M extends V2UnaryMethod>(method: M, request: V2Request<M>): Promise<V2Response<M>> {
    return withRetries(this.retry, () => unary<V2Response<M>>(this.v2Client, method, request), (err, n, ms) => this.logRetry(method, undefined, err, n, ms))
      .catch((err: unknown) => {
        throw AgentCallError.from(err, `v2.${method}`);
      });
  }

  /** A mutating v2 call with a request id, outstanding until it succeeds or fails for good; retried with the same id. */
  private async mutate<M extends V2UnaryMethod>(
    method: M,
    request: Omit<V2Request<M>, 'request_id'>,
    o: Mutation,
    ref: { containerId?: string; execId?: string } = {},
  ): Promise<V2Response<M>> {
    const requestId = o.requestId || randomUUID();
    this.outstanding.set(requestId, { requestId, method, ...ref, startedAtMs: Date.now() });
    try {
      const res = await withRetries(
        this.retry,
        () => unary<V2Response<M>>(this.v2Client, method, { ...request, request_id: requestId }),
        (err, n, ms) => this.logRetry(method, requestId, err, n, ms),
      );
      this.outstanding.delete(requestId);
      return res;
    } catch (err) {
      // Still UNAVAILABLE after every retry: whether the agent acted is unknown; the id stays outstanding.
      if (!isUnavailable(err)) this.outstanding.delete(requestId);
      throw AgentCallError.from(err, `v2.${method}`, requestId);
    }
  }

  /**
   * The exec id to send for a process reference, and the one to key state by.
   * An omitted exec id is the init: v1 sends '' (its convention); v2 names
   * the init by its exec id, known from createContainer or asked with GetContainer.
   */
  private async execOf(ref: ProcessRef): Promise<{ wire: string; id: string }> {
    if (ref.execId) return { wire: ref.execId, id: ref.execId };
    const known = this.initExecIds.get(ref.containerId);
    if (this.protocol === 'v1') return { wire: '', id: known ?? '' };
    if (known) return { wire: known, id: known };
    const info = await this.getContainer(ref.containerId);
    const id = info.init?.execId || ref.containerId;
    this.initExecIds.set(ref.containerId, id);
    return { wire: id, id };
  }

  private setStdin(containerId: string, execId: string, offset: number): void {
    this.stdin.set(key(containerId, execId), { containerId, execId, offset });
  }

  /** v2's stdin offset of a process: tracked, or asked (a process this client did not start). */
  private async stdinOffset(containerId: string, execId: string): Promise<number> {
    const known = this.stdin.get(key(containerId, execId));
    if (known) return known.offset;
    const offset = (await this.processInfo(containerId, execId)).stdinOffset;
    this.setStdin(containerId, execId, offset);
    return offset;
  }

  private async processInfo(containerId: string, execId: string): Promise<ProcessInfo> {
    const info = await this.getContainer(containerId);
    const proc = [info.init, ...info.execs].find((p) => p?.execId === execId);
    if (!proc) throw new AgentCallError({ code: grpc.status.NOT_FOUND, details: `process ${execId} not found in container ${containerId}`, method: 'v2.GetContainer' });
    return proc;
  }

  /** Runs `fn` after every earlier input call to the same process. */
  private inputQueue<T>(ref: ProcessRef, fn: (wire: string, id: string) => Promise<T>): Promise<T> {
    const q = key(ref.containerId, ref.execId ?? '');
    const run = (this.stdinQueues.get(q) ?? Promise.resolve()).catch(() => {}).then(async () => {
      const { wire, id } = await this.execOf(ref);
      return fn(wire, id);
    });
    this.stdinQueues.set(q, run);
    void run.finally(() => {
      if (this.stdinQueues.get(q) === run) this.stdinQueues.delete(q);
    }).catch(() => {});
    return run;
  }

  private forget(containerId: string): void {
    this.initExecIds.delete(containerId);
    for (const [k, s] of this.streams) if (s.containerId === containerId) this.streams.delete(k);
    for (const [k, s] of this.stdin) if (s.containerId === containerId) this.stdin.delete(k);
  }

  private async *readOutputV2(o: ReadOutputOptions): AsyncGenerator<OutputChunk> {
    const stream = o.stream ?? 'stdout';
    const { wire } = await this.execOf(o);
    const k = key(o.containerId, wire, stream);
    let offset = o.offset ?? this.streams.get(k)?.offset ?? 0;
    const track = (at: number) => {
      offset = at;
      this.streams.set(k, { containerId: o.containerId, execId: wire, stream, offset: at });
    };
    const ack = o.acknowledge === false ? null : this.outputAcknowledger(o.containerId, wire, stream, o.reader ?? '', offset);
    for (let failures = 0; ;) {
      const req = {
        container_id: o.containerId, exec_id: wire, stream: wireStream(stream), offset, reader: o.reader ?? '', max_chunk_bytes: o.maxChunkBytes ?? 0,
        acknowledged_only: ack !== null,
      };
      try {
        for await (const msg of serverStream<ReadOutputResponse__Output>(this.v2Client, 'ReadOutput', req)) {
          failures = 0;
          let at = msg.offset;
          let data = msg.data;
          // Bytes before our offset (a re-attach that overlaps) are not handed out twice.
          if (at < offset) {
            const skip = Math.min(offset - at, data.length);
            data = data.subarray(skip);
            at += skip;
          }
          const end = at + data.length;
          try {
            yield { offset: at, data, eof: msg.eof };
          } finally {
            // Counted once the caller has taken the chunk: a record saved meanwhile asks for it again.
            track(end);
            ack?.(end);
          }
          if (msg.eof) return;
        }
        return;
      } catch (err) {
        failures++;
        if (!isUnavailable(err) || failures >= this.retry.attempts) throw AgentCallError.from(err, 'v2.ReadOutput');
        const ms = backoffDelay(this.retry, failures);
        this.log('warn', `ReadOutput of ${o.containerId}/${wire} ${stream} dropped (${describeError(err)}); re-attaching at offset ${offset} in ${ms} ms`);
        await sleep(ms);
      }
    }
  }

  /**
   * For an agent that keeps output until acknowledged (ReadOutput's
   * acknowledged_only): acknowledges what the caller has taken but the last
   * eighth of the agent's output window (at most 256 KiB: reading again from
   * a recent offset works, as with an agent without acknowledgements, which
   * keeps what it sent last), in steps of an eighth of the window (every
   * unacknowledged byte is one the agent cannot send: small steps keep the
   * stream moving), several AcknowledgeOutput calls at a time, never waited for. The tail is
   * released with the process (ReleaseProcess). Null for an agent without
   * the feature. A failed acknowledgement costs nothing but a later one: the
   * next ReadOutput's offset acknowledges too.
   */
  private outputAcknowledger(containerId: string, execId: string, stream: 'stdout' | 'stderr', reader: string, from: number) {
    if (!this.agent.capabilities.includes('feature:output-acknowledgement')) return null;
    const window = Number(this.agent.limits?.output_buffer_bytes) || 1024 * 1024;
    const every = Math.max(1, Math.floor(window / 8));
    const tail = Math.min(256 * 1024, Math.floor(window / 8));
    /** The last offset an acknowledgement was sent for. */
    let sent = from;
    let inFlight = 0;
    return (taken: number) => {
      const offset = taken - tail;
      // Not waiting for answers: an answer queues behind the output on the
      // connection, and the agent acts on the request when it arrives.
      if (offset - sent < every || inFlight >= MAX_ACKS_IN_FLIGHT) return;
      sent = offset;
      inFlight++;
      this.v2('AcknowledgeOutput', { container_id: containerId, exec_id: execId, stream: wireStream(stream), reader, offset }, { retry: false })
        .catch((err: unknown) =>
          this.log('debug', `AcknowledgeOutput of ${containerId}/${execId} ${stream} at ${offset} failed (${describeError(err)}); a later one or the next ReadOutput acknowledges it`),
        )
        .finally(() => inFlight--);
    };
  }

  private async *readOutputV1(o: ReadOutputOptions): AsyncGenerator<OutputChunk> {
    const stream = o.stream ?? 'stdout';
    const { wire, id } = await this.execOf(o);
    const k = key(o.containerId, id, stream);
    let offset = this.streams.get(k)?.offset ?? 0;
    if (o.offset !== undefined && o.offset < offset) {
      throw new Error(
        `protocol v1 cannot read ${stream} of ${o.containerId}/${id || '(init)'} from offset ${o.offset}: v1 reads consume the output, ` +
          `and this client has read up to offset ${offset}`,
      );
    }
    let skip = (o.offset ?? offset) - offset;
    const method = stream === 'stderr' ? 'ReadStderr' : 'ReadStdout';
    for (;;) {
      const { data } = await this.call1(method, { container_id: o.containerId, exec_id: wire, len: o.maxChunkBytes || 65536 });
      if (data.length === 0) {
        yield { offset, data: Buffer.alloc(0), eof: true };
        return;
      }
      // v1's reader has moved on as soon as the poll returned: count it now.
      const at = offset;
      offset += data.length;
      this.streams.set(k, { containerId: o.containerId, execId: id, stream, offset });
      const dropped = Math.min(skip, data.length);
      skip -= dropped;
      if (dropped < data.length) yield { offset: at + dropped, data: data.subarray(dropped), eof: false };
    }
  }
}

interface Clients {
  discovery: grpc.Client;
  v1Client: grpc.Client;
  v2Client: grpc.Client;
}

/** Negotiate, and the checks that make sure the chosen version is really served. */
async function negotiate(addr: string, clients: Clients, options: ConnectOptions, deadline: number): Promise<{ agent: NegotiateResponse__Output; negotiated: Negotiated }> {
  const log = options.log ?? noLog;
  const protocols = [...(options.protocols ?? CLIENT_PROTOCOLS)];
  if (protocols.length === 0) throw new Error('connect: no protocol version to offer (options.protocols is empty)');
  const unknown = protocols.filter((p) => !PROTOCOLS.includes(p));
  if (unknown.length) throw new Error(`connect: this client does not speak ${unknown.join(', ')} (it speaks ${PROTOCOLS.join(', ')})`);
  protocols.sort((a, b) => rank(b) - rank(a));
  const clientName = options.client_name ?? CLIENT_NAME;
  const sides = (agentVersion: string | null, agentProtocols: readonly string[] | null): NegotiationSides => ({
    address: addr, clientName, clientVersion: CLIENT_VERSION, clientProtocols: protocols, agentVersion, agentProtocols,
  });
  const probeDeadline = () => Math.max(deadline, Date.now() + 5000);
  const callNegotiate = (versions: string[]) =>
    // With a deadline: an agent that accepted the connection but never answers must fail the connect, not hang it.
    unary<NegotiateResponse__Output>(clients.discovery, 'Negotiate', { client_name: clientName, client_version: CLIENT_VERSION, protocol_versions: versions }, { deadline: probeDeadline() });

  // The connect's calls only read, so an UNAVAILABLE one is retried whatever the policy says: an
  // agent draining before an exec in place (an upgrade, a rollback) refuses new streams for a moment.
  const policy = { ...DEFAULT_RETRY, ...options.retry };
  const reading = <T>(method: string, call: () => Promise<T>) =>
    withRetries({ ...policy, attempts: Math.max(policy.attempts, DEFAULT_RETRY.attempts) }, call, (err, n, ms) =>
      log('warn', `${method} failed (${describeError(err)}); retry ${n} in ${ms} ms`, { address: addr }));

  let agent: NegotiateResponse__Output;
  let fallback: string | null = null;
  try {
    agent = await reading('Negotiate', () => callNegotiate(protocols));
  } catch (err) {
    if (grpcCode(err) === grpc.status.FAILED_PRECONDITION) {
      // No common version. Ask again with no versions (it only reports) to name what the agent serves.
      const report = await callNegotiate([]).catch(() => null);
      const s = sides(report?.agent_version ?? null, report?.protocol_versions ?? null);
      throw new NegotiationError(`no common protocol version with the agent at ${addr}: ${describeSides(s)} (the agent said: ${describeError(err)})`, s, [], { cause: err });
    }
    if (!isMissing(err)) throw err;
    // No Discovery: an agent from before negotiation, which can only be v1.
    const why = `the agent at ${addr} has no agent.Discovery (Negotiate: ${describeError(err)})`;
    if (!protocols.includes('v1')) {
      const s = sides(null, null);
      throw new NegotiationError(`no common protocol version: ${why}, so it could only speak v1, and ${describeSides(s)}`, s, [], { cause: err });
    }
    try {
      await unary(clients.v1Client, 'GetGuestDetails', {}, { deadline: probeDeadline() });
    } catch (probeErr) {
      if (isMissing(probeErr)) {
        const s = sides(null, []);
        throw new NegotiationError(`no common protocol version: ${why}, and it does not serve agent.v1.AgentService either ` +
          `(${describeError(probeErr)}); ${describeSides(s)}`, s, [], { cause: probeErr });
      }
      // Any other answer (e.g. PERMISSION_DENIED) comes from a v1 service that exists.
    }
    fallback = `${why}; speaking v1`;
    log('warn', `falling back to protocol v1: ${why}`, { address: addr });
    agent = { agent_version: 'unknown', agent_build: '', protocol_versions: ['v1'], selected_version: 'v1', capabilities: [], limits: {}, policy: null, image: null };
    checkCapabilities(addr, options, agent, 'v1', sides);
    return { agent, negotiated: { version: 'v1', fallback } };
  }

  const selected = agent.selected_version;
  if (!protocols.includes(selected as ProtocolVersion)) {
    const s = sides(agent.agent_version, agent.protocol_versions);
    throw new NegotiationError(`the agent at ${addr} selected protocol ${JSON.stringify(selected)}, which this client did not offer: ${describeSides(s)}`, s);
  }
  let version = selected as ProtocolVersion;
  if (version === 'v2') {
    try {
      await reading('ListContainers', () => unary(clients.v2Client, 'ListContainers', {}, { deadline: probeDeadline() }));
    } catch (err) {
      // Only an absent service is a reason to fall back. Any other status
      // (PERMISSION_DENIED, say) is the service answering; UNAVAILABLE is a failure to connect.
      if (isUnavailable(err)) throw err;
      if (isMissing(err)) {
        const why = `the agent at ${addr} (version ${agent.agent_version}) selected v2 but does not serve agent.v2.AgentService (${describeError(err)})`;
        if (!protocols.includes('v1') || !agent.protocol_versions.includes('v1')) {
          const s = sides(agent.agent_version, agent.protocol_versions);
          throw new NegotiationError(`no usable common protocol version: ${why}; ${describeSides(s)}`, s, [], { cause: err });
        }
        fallback = `${why}; speaking v1`;
        log('warn', `falling back to protocol v1: ${why}`, { address: addr });
        version = 'v1';
      }
    }
  }
  log('info', `protocol ${version} with the agent at ${addr} (version ${agent.agent_version}, serves ${agent.protocol_versions.join(', ')})`);
  checkCapabilities(addr, options, agent, version, sides);
  return { agent, negotiated: { version, fallback } };
}

/** Every capability the caller requires must be reported: otherwise a NegotiationError, never a half-working client. */
function checkCapabilities(
  addr: string,
  options: ConnectOptions,
  agent: NegotiateResponse__Output,
  version: ProtocolVersion,
  sides: (v: string | null, p: readonly string[] | null) => NegotiationSides,
): void {
  const missing = (options.require ?? []).filter((c) => !agent.capabilities.includes(c));
  if (missing.length) {
    const s = sides(agent.agent_version, agent.protocol_versions);
    throw new NegotiationError(
      `the agent at ${addr} lacks ${missing.length === 1 ? 'the capability' : 'the capabilities'} ${missing.join(', ')} that this client requires ` +
        `(protocol ${version} in use; the agent reports ${agent.capabilities.join(', ') || 'no capabilities'}); ${describeSides(s)}`,
      s,
      missing,
    );
  }
}
