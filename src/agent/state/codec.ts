// The saved state on disk: one JSON document,
//   { "format": 1, "min_reader_format": 1, "written_by": "0.4.0", ... }
// `format` is the schema the writer used; `min_reader_format` the oldest
// reader format that can use it (a writer that only added fields keeps it
// low, so an older agent, rolled back to, still reads it). A reader ignores
// keys it does not know, gives missing ones their defaults, and refuses with
// a StateError (never a crash) a document it cannot use: not JSON, a field
// of the wrong type, a format older than it reads, or one that needs a newer
// reader.
import { excerpt } from '../errors';
import { OLDEST_READ_FORMAT, STATE_FORMAT, type AgentState, type ContainerRecord, type ExitRecord, type ProcessRecord, type RequestRecord, type StorageRecord, type StreamRecord } from './document';
import { migrate } from './migrations';

/** A state document this agent cannot use; `source` says where it came from. */
export class StateError extends Error {
  constructor(
    readonly source: string,
    message: string,
  ) {
    super(`state ${source}: ${message}`);
    this.name = 'StateError';
  }
}

/** The state as format `format` writes it (STATE_FORMAT unless a rollback must still read it). */
export function encodeState(state: AgentState, format = STATE_FORMAT): string {
  if (format !== STATE_FORMAT) throw new Error(`this agent writes state format ${STATE_FORMAT} only, not ${format}`);
  const doc = {
    format,
    min_reader_format: 1,
    written_by: state.writtenBy,
    written_at_ms: state.writtenAt,
    sandbox: state.sandbox,
    storages: state.storages.map((s) => ({ driver: s.driver, mount_point: s.mountPoint, source: s.source, fstype: s.fstype, owners: s.owners, plan: s.plan, created: s.created })),
    containers: state.containers.map((c) => ({
      id: c.id, bundle: c.bundle, state: c.state, created_at_ms: c.createdAt, init: encodeProcess(c.init), execs: c.execs.map(encodeProcess),
    })),
    requests: state.requests.map((r) => ({ request_id: r.requestId, digest: r.digest, result: r.result, at_ms: r.at })),
    last_event_seq: state.lastEventSeq,
  };
  return `${JSON.stringify(doc)}\n`;
}

function encodeProcess(p: ProcessRecord) {
  return {
    exec_id: p.execId, pid: p.pid, pid_start_ticks: p.pidStartTicks, terminal: p.terminal, started_at_ms: p.startedAt, oom_kills_at_start: p.oomKillsAtStart,
    exit: p.exit && { code: p.exit.code, signal: p.exit.signal, core_dumped: p.exit.coreDumped, oom_killed: p.exit.oomKilled, exited_at_ms: p.exit.exitedAt },
    collected: p.collected, fds: p.fds, stdout: p.stdout, stderr: p.stderr, stdin_written: p.stdinWritten,
  };
}

/** What decodeState found besides the state: the format read, and what it ignored. */
export interface Decoded {
  state: AgentState;
  format: number;
  /** Keys this reader does not know (a newer writer's), as paths: kept for the log, not for the state. */
  unknownKeys: string[];
}

export function decodeState(text: string, source: string): Decoded {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StateError(source, `is not JSON (${err instanceof Error ? err.message : String(err)}); it is kept as it is: remove it to start without state`);
  }
  const top = new Reader(source, raw, 'state');
  const format = top.int('format', null);
  const minReader = top.int('min_reader_format', format);
  if (minReader > STATE_FORMAT) {
    throw new StateError(source, `needs a reader of format ${minReader} or later (it is format ${format}, written by agent ${top.peek('written_by')}); ` +
      `this agent reads formats ${OLDEST_READ_FORMAT} to ${STATE_FORMAT}: run a newer agent`);
  }
  if (format < OLDEST_READ_FORMAT) {
    throw new StateError(source, `is format ${format}, older than this agent reads (${OLDEST_READ_FORMAT} to ${STATE_FORMAT}): upgrade through a release that reads it first`);
  }
  const r = format < STATE_FORMAT ? new Reader(source, migrated(source, raw as Record<string, unknown>, format), 'state') : top;
  const state: AgentState = {
    writtenBy: r.str('written_by', 'unknown'),
    writtenAt: r.int('written_at_ms', 0),
    sandbox: r.optional('sandbox', (s) => {
      s.known('id', 'hostname', 'dns');
      return { id: s.str('id', ''), hostname: s.str('hostname', ''), dns: s.bool('dns', false) };
    }),
    storages: r.list('storages', decodeStorage),
    containers: r.list('containers', decodeContainer),
    requests: r.list('requests', decodeRequest),
    lastEventSeq: r.int('last_event_seq', 0),
  };
  r.known('format', 'min_reader_format', 'written_by', 'written_at_ms', 'sandbox', 'storages', 'containers', 'requests', 'last_event_seq');
  return { state, format, unknownKeys: r.unknown };
}

function migrated(source: string, raw: Record<string, unknown>, format: number): Record<string, unknown> {
  try {
    return migrate(raw, format);
  } catch (err) {
    throw new StateError(source, `format ${format} could not be brought up to ${STATE_FORMAT}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function decodeStorage(r: Reader): StorageRecord {
  r.known('driver', 'mount_point', 'source', 'fstype', 'owners', 'plan', 'created');
  return {
    driver: r.str('driver', null), mountPoint: r.str('mount_point', null), source: r.str('source', ''), fstype: r.str('fstype', ''), owners: r.strings('owners'),
    plan: r.peek('plan') ?? null, created: r.peek('created') ?? null,
  };
}

const CONTAINER_STATES = ['created', 'running', 'paused', 'stopped'] as const;

function decodeContainer(r: Reader): ContainerRecord {
  r.known('id', 'bundle', 'state', 'created_at_ms', 'init', 'execs');
  return {
    id: r.str('id', null),
    bundle: r.str('bundle', null),
    state: r.oneOf('state', CONTAINER_STATES),
    createdAt: r.int('created_at_ms', 0),
    init: r.object('init', decodeProcess),
    execs: r.list('execs', decodeProcess),
  };
}

function decodeProcess(r: Reader): ProcessRecord {
  r.known('exec_id', 'pid', 'pid_start_ticks', 'terminal', 'started_at_ms', 'oom_kills_at_start', 'exit', 'collected', 'fds', 'stdout', 'stderr', 'stdin_written');
  return {
    execId: r.str('exec_id', null),
    pid: r.intOrNull('pid'),
    pidStartTicks: r.intOrNull('pid_start_ticks'),
    terminal: r.bool('terminal', false),
    startedAt: r.intOrNull('started_at_ms'),
    oomKillsAtStart: r.intOrNull('oom_kills_at_start'),
    exit: r.optional('exit', decodeExit),
    collected: r.bool('collected', false),
    fds: r.optional('fds', (f) => {
      f.known('stdin', 'stdout', 'stderr', 'pty');
      return { stdin: f.intOrNull('stdin'), stdout: f.intOrNull('stdout'), stderr: f.intOrNull('stderr'), pty: f.intOrNull('pty') };
    }) ?? { stdin: null, stdout: null, stderr: null, pty: null },
    stdout: r.optional('stdout', decodeStream) ?? emptyStream(),
    stderr: r.optional('stderr', decodeStream) ?? emptyStream(),
    stdinWritten: r.int('stdin_written', 0),
  };
}

const emptyStream = (): StreamRecord => ({ start: 0, end: 0, ended: false, readers: {} });

function decodeStream(r: Reader): StreamRecord {
  r.known('start', 'end', 'ended', 'readers');
  const start = r.int('start', 0);
  const end = r.int('end', start);
  if (end < start) r.fail('end', `is ${end}, before start ${start}`);
  return { start, end, ended: r.bool('ended', false), readers: r.numbers('readers') };
}

function decodeExit(r: Reader): ExitRecord {
  r.known('code', 'signal', 'core_dumped', 'oom_killed', 'exited_at_ms');
  return { code: r.intOrNull('code'), signal: r.intOrNull('signal'), coreDumped: r.bool('core_dumped', false), oomKilled: r.bool('oom_killed', false), exitedAt: r.int('exited_at_ms', 0) };
}

function decodeRequest(r: Reader): RequestRecord {
  r.known('request_id', 'digest', 'result', 'at_ms');
  return { requestId: r.str('request_id', null), digest: r.str('digest', null), result: r.peek('result') ?? null, at: r.int('at_ms', 0) };
}

/** Typed access to one JSON object of the document, with its path for errors; collects unknown keys. */
class Reader {
  readonly unknown: string[];
  private readonly obj: Record<string, unknown>;

  constructor(
    private readonly source: string,
    value: unknown,
    private readonly path: string,
    unknown: string[] = [],
  ) {
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new StateError(source, `${path} is not an object`);
    this.obj = value as Record<string, unknown>;
    this.unknown = unknown;
  }

  fail(key: string, problem: string): never {
    throw new StateError(this.source, `${this.path}.${key} ${problem}`);
  }

  peek(key: string): unknown {
    return this.obj[key];
  }

  /** Notes the keys of this object that are none of `keys`. */
  known(...keys: string[]): void {
    for (const k of Object.keys(this.obj)) if (!keys.includes(k)) this.unknown.push(`${this.path}.${k}`);
  }

  /** `fallback` null: the key is required. */
  str(key: string, fallback: string | null): string {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback ?? this.fail(key, 'is missing');
    if (typeof v !== 'string') this.fail(key, `should be a string, not ${excerpt(JSON.stringify(v))}`);
    return v;
  }

  int(key: string, fallback: number | null): number {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback ?? this.fail(key, 'is missing');
    if (!Number.isSafeInteger(v) || (v as number) < 0) this.fail(key, `should be a non-negative integer, not ${excerpt(JSON.stringify(v))}`);
    return v as number;
  }

  intOrNull(key: string): number | null {
    return this.obj[key] === undefined || this.obj[key] === null ? null : this.int(key, null);
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') this.fail(key, `should be true or false, not ${excerpt(JSON.stringify(v))}`);
    return v;
  }

  oneOf<T extends string>(key: string, values: readonly T[]): T {
    const v = this.str(key, null);
    if (!(values as readonly string[]).includes(v)) this.fail(key, `is ${excerpt(v)}, not one of ${values.join(', ')}`);
    return v as T;
  }

  strings(key: string): string[] {
    const v = this.obj[key] ?? [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) this.fail(key, 'should be a list of strings');
    return v as string[];
  }

  numbers(key: string): Record<string, number> {
    const v = this.obj[key] ?? {};
    const r = new Reader(this.source, v, `${this.path}.${key}`, this.unknown);
    return Object.fromEntries(Object.keys(v as object).map((k) => [k, r.int(k, null)]));
  }

  object<T>(key: string, read: (r: Reader) => T): T {
    if (this.obj[key] === undefined || this.obj[key] === null) this.fail(key, 'is missing');
    return read(new Reader(this.source, this.obj[key], `${this.path}.${key}`, this.unknown));
  }

  optional<T>(key: string, read: (r: Reader) => T): T | null {
    return this.obj[key] === undefined || this.obj[key] === null ? null : this.object(key, read);
  }

  list<T>(key: string, read: (r: Reader) => T): T[] {
    const v = this.obj[key] ?? [];
    if (!Array.isArray(v)) this.fail(key, 'should be a list');
    return v.map((x, i) => read(new Reader(this.source, x, `${this.path}.${key}[${i}]`, this.unknown)));
  }
}
