// What a runtime needs to pick up where it was after it restarts: the agent's
// address, the protocol version in use, how far it read each output stream
// and the event stream, how much input it wrote, and the request ids of calls
// whose outcome it does not know yet. Saved as a small versioned JSON record:
//
//   { "format": 1, "min_reader_format": 1, "agent": { "address": ..., "protocol": "v2", ... }, ... }
//
// The rules (docs/compatibility.md, "Versioned state"):
// - `format` is the writer's format; `min_reader_format` the oldest reader
//   that can use the record. A reader refuses a record whose
//   min_reader_format is above what it reads (RESUME_READER_FORMAT), with an
//   error saying so; it reads a record of a higher format otherwise, ignoring
//   the keys it does not know.
// - Every key but `format` and agent.address/protocol is optional: a record
//   from an earlier release that lacks a later key reads with its default.
// - Keys are only ever added. A change a format-1 reader would misread takes
//   a new min_reader_format.
import type { ProtocolVersion } from './errors';

/** The format this client writes. */
export const RESUME_FORMAT = 1;
/** The highest min_reader_format this client can read. */
export const RESUME_READER_FORMAT = 1;

export type OutputStreamName = 'stdout' | 'stderr';

/** A mutating call sent but not known to have finished: retry it with the same request id. */
export interface OutstandingRequest {
  requestId: string;
  /** The RPC, e.g. "CreateContainer". */
  method: string;
  containerId?: string;
  execId?: string;
  startedAtMs: number;
}

/** The client's resumable state, as the client keeps it. */
export interface ClientState {
  address: string;
  protocol: ProtocolVersion;
  /** The agent's version when the state was saved; '' when unknown. */
  agentVersion: string;
  /** Seq of the last event handed to the caller; null: no event seen. */
  eventCursor: number | null;
  /** The offset of the next byte to read, per output stream. */
  streams: Array<{ containerId: string; execId: string; stream: OutputStreamName; offset: number }>;
  /** The offset of the next byte of input to write, per process. */
  stdin: Array<{ containerId: string; execId: string; offset: number }>;
  /** The exec id of each container's init process, for the containers this client knows. */
  initExecIds: Record<string, string>;
  outstanding: OutstandingRequest[];
}

/** The record as JSON, keys as written. */
export interface ResumeRecord {
  format: number;
  min_reader_format: number;
  saved_at_unix_ms: number;
  client: { name: string; version: string };
  agent: { address: string; protocol: string; version: string };
  event_cursor: number | null;
  streams: Array<{ container_id: string; exec_id: string; stream: string; offset: number }>;
  stdin: Array<{ container_id: string; exec_id: string; offset: number }>;
  init_exec_ids: Record<string, string>;
  outstanding: Array<{ request_id: string; method: string; container_id?: string; exec_id?: string; started_at_unix_ms: number }>;
}

export function writeResumeRecord(state: ClientState, client: { name: string; version: string }, now = Date.now()): ResumeRecord {
  return {
    format: RESUME_FORMAT,
    min_reader_format: 1,
    saved_at_unix_ms: now,
    client: { ...client },
    agent: { address: state.address, protocol: state.protocol, version: state.agentVersion },
    event_cursor: state.eventCursor,
    streams: state.streams.map((s) => ({ container_id: s.containerId, exec_id: s.execId, stream: s.stream, offset: s.offset })),
    stdin: state.stdin.map((s) => ({ container_id: s.containerId, exec_id: s.execId, offset: s.offset })),
    init_exec_ids: { ...state.initExecIds },
    outstanding: state.outstanding.map((r) => ({
      request_id: r.requestId,
      method: r.method,
      ...(r.containerId !== undefined ? { container_id: r.containerId } : {}),
      ...(r.execId !== undefined ? { exec_id: r.execId } : {}),
      started_at_unix_ms: r.startedAtMs,
    })),
  };
}

export class ResumeRecordError extends Error {
  override readonly name = 'ResumeRecordError';
}

/** Who wrote a record, as far as it says. */
export interface RecordOrigin {
  format: number;
  minReaderFormat: number;
  client: { name: string; version: string } | null;
  savedAtMs: number | null;
}

/** Reads a record (its JSON text, or the parsed object): the state, and who wrote it. */
export function readResumeRecord(input: string | unknown): { state: ClientState; origin: RecordOrigin } {
  let raw: unknown = input;
  if (typeof input === 'string') {
    try {
      raw = JSON.parse(input);
    } catch (err) {
      throw new ResumeRecordError(`resume record is not JSON: ${(err as Error).message}`);
    }
  }
  const rec = obj(raw, 'resume record');
  const format = rec.format;
  if (!isCount(format) || format < 1) {
    throw new ResumeRecordError(`resume record has no valid "format" (got ${JSON.stringify(format)}): not a record this client wrote`);
  }
  const minReader = rec.min_reader_format === undefined ? 1 : rec.min_reader_format;
  if (!isCount(minReader) || minReader < 1) throw new ResumeRecordError(`resume record's "min_reader_format" is not a positive integer: ${JSON.stringify(minReader)}`);
  if (minReader > RESUME_READER_FORMAT) {
    throw new ResumeRecordError(
      `resume record of format ${format} needs a reader of format ${minReader} or later; this client reads up to format ` +
        `${RESUME_READER_FORMAT}: resume with the release that wrote it (or a later one)`,
    );
  }

  const agent = obj(rec.agent, 'resume record "agent"');
  const address = str(agent.address, 'agent.address');
  if (address === '') throw new ResumeRecordError('resume record: agent.address is empty');
  const protocol = str(agent.protocol, 'agent.protocol');
  if (protocol !== 'v1' && protocol !== 'v2') {
    throw new ResumeRecordError(`resume record: agent.protocol ${JSON.stringify(protocol)} is not a version this client speaks (v1, v2)`);
  }

  const eventCursor = opt(rec.event_cursor, null, (v) => (v === null ? null : count(v, 'event_cursor')));
  const streams = list(rec.streams, 'streams').map((e, i) => {
    const o = obj(e, `streams[${i}]`);
    const stream = str(o.stream, `streams[${i}].stream`);
    if (stream !== 'stdout' && stream !== 'stderr') throw new ResumeRecordError(`resume record: streams[${i}].stream ${JSON.stringify(stream)} is not stdout or stderr`);
    return { containerId: str(o.container_id, `streams[${i}].container_id`), execId: str(o.exec_id, `streams[${i}].exec_id`), stream: stream as OutputStreamName, offset: count(o.offset, `streams[${i}].offset`) };
  });
  const stdin = list(rec.stdin, 'stdin').map((e, i) => {
    const o = obj(e, `stdin[${i}]`);
    return { containerId: str(o.container_id, `stdin[${i}].container_id`), execId: str(o.exec_id, `stdin[${i}].exec_id`), offset: count(o.offset, `stdin[${i}].offset`) };
  });
  const initExecIds: Record<string, string> = {};
  for (const [k, v] of Object.entries(opt(rec.init_exec_ids, {}, (v) => obj(v, 'init_exec_ids')))) initExecIds[k] = str(v, `init_exec_ids.${k}`);
  const outstanding = list(rec.outstanding, 'outstanding').map((e, i): OutstandingRequest => {
    const o = obj(e, `outstanding[${i}]`);
    return {
      requestId: str(o.request_id, `outstanding[${i}].request_id`),
      method: str(o.method, `outstanding[${i}].method`),
      ...(o.container_id !== undefined ? { containerId: str(o.container_id, `outstanding[${i}].container_id`) } : {}),
      ...(o.exec_id !== undefined ? { execId: str(o.exec_id, `outstanding[${i}].exec_id`) } : {}),
      startedAtMs: opt(o.started_at_unix_ms, 0, (v) => count(v, `outstanding[${i}].started_at_unix_ms`)),
    };
  });
  const client = rec.client === undefined ? null : obj(rec.client, 'client');
  return {
    state: {
      address,
      protocol,
      agentVersion: opt(agent.version, '', (v) => str(v, 'agent.version')),
      eventCursor,
      streams,
      stdin,
      initExecIds,
      outstanding,
    },
    origin: {
      format,
      minReaderFormat: minReader,
      client: client ? { name: opt(client.name, '', (v) => str(v, 'client.name')), version: opt(client.version, '', (v) => str(v, 'client.version')) } : null,
      savedAtMs: opt(rec.saved_at_unix_ms, null, (v) => count(v, 'saved_at_unix_ms')),
    },
  };
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function obj(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ResumeRecordError(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}
function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new ResumeRecordError(`resume record: ${what} is not a string`);
  return v;
}
function count(v: unknown, what: string): number {
  if (!isCount(v)) throw new ResumeRecordError(`resume record: ${what} is not a non-negative integer: ${JSON.stringify(v)}`);
  return v;
}
function list(v: unknown, what: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new ResumeRecordError(`resume record: ${what} is not an array`);
  return v;
}
/** An optional key: its default when missing, else checked by `read`. */
function opt<T>(v: unknown, dflt: T, read: (v: unknown) => T): T {
  return v === undefined ? dflt : read(v);
}
