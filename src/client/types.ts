// The typed API's shapes (camelCase, numbers, Buffers) and their conversions
// from v2's wire messages. v1 has no listing, no events and no offsets, so
// only the inputs below have v1 conversions.
import type { ContainerInfo__Output } from '../generated/agent/v2/ContainerInfo';
import type { ProcessInfo__Output } from '../generated/agent/v2/ProcessInfo';
import type { StreamInfo__Output } from '../generated/agent/v2/StreamInfo';
import type { WatchEventsResponse__Output } from '../generated/agent/v2/WatchEventsResponse';
import { exitStatusFromV2, type ExitStatus } from './exit-status';
import type { OutputStreamName } from './resume';

/** A file system for the agent to mount (both versions carry the same fields). */
export interface Storage {
  /** "9p", "virtio-blk", "virtio-fs", "tmpfs", "bind", "overlay", "local". */
  driver: string;
  driverOptions?: string[];
  source?: string;
  fstype?: string;
  options?: string[];
  /** Where to mount it, inside the agent's storage root. */
  mountPoint: string;
}

export interface KernelModule {
  name: string;
  parameters?: string[];
}

/** A process: its container, and its exec id (omitted: the container's init process). */
export interface ProcessRef {
  containerId: string;
  execId?: string;
}

/** Options every mutating call takes: the request id makes a retry safe (v2; v1 ignores it). Omitted: a random one. */
export interface Mutation {
  requestId?: string;
}

/** One piece of a process's output. */
export interface OutputChunk {
  /** The stream offset of data's first byte (v1: counted by this client). */
  offset: number;
  data: Buffer;
  /** End of stream: offset + data.length is the final offset (data is then usually empty). */
  eof: boolean;
}

export type ContainerStateName = 'unspecified' | 'created' | 'running' | 'paused' | 'stopped' | 'removed';

export interface StreamInfo {
  /** The bytes the agent still holds are [startOffset, endOffset). */
  startOffset: number;
  endOffset: number;
  /** End of stream seen: endOffset is final. */
  ended: boolean;
}

export interface ProcessInfo {
  execId: string;
  /** 0 before the process started. */
  pid: number;
  running: boolean;
  terminal: boolean;
  startedAtMs: number | null;
  /** Set once the process has exited. */
  exitStatus: ExitStatus | null;
  stdout: StreamInfo | null;
  stderr: StreamInfo | null;
  /** Bytes of input written so far: the offset of the next write. */
  stdinOffset: number;
}

export interface ContainerInfo {
  containerId: string;
  state: ContainerStateName;
  createdAtMs: number | null;
  init: ProcessInfo | null;
  execs: ProcessInfo[];
}

interface EventBase {
  /** The event's sequence number: resume after it with watchEvents({ afterSeq }). */
  seq: number;
  atMs: number;
}

/** One event of WatchEvents. "unknown" is a kind this client does not know (a newer agent's). */
export type AgentEvent = EventBase &
  (
    | { type: 'process_started'; containerId: string; execId: string; pid: number }
    | { type: 'process_exited'; containerId: string; execId: string; pid: number; status: ExitStatus | null }
    | { type: 'container_state'; containerId: string; state: ContainerStateName }
    | { type: 'oom_killed'; containerId: string }
    | { type: 'unknown' }
  );

export function stateName(wire: string | number): ContainerStateName {
  const name = String(wire).replace(/^CONTAINER_STATE_/, '').toLowerCase();
  return (['created', 'running', 'paused', 'stopped', 'removed'] as const).find((s) => s === name) ?? 'unspecified';
}

export const wireStream = (s: OutputStreamName) => (s === 'stderr' ? 'OUTPUT_STREAM_STDERR' : 'OUTPUT_STREAM_STDOUT');

function streamInfo(s: StreamInfo__Output | null | undefined): StreamInfo | null {
  return s ? { startOffset: s.start_offset, endOffset: s.end_offset, ended: s.ended } : null;
}

export function processInfoFromV2(p: ProcessInfo__Output): ProcessInfo {
  return {
    execId: p.exec_id,
    pid: p.pid,
    running: p.running,
    terminal: p.terminal,
    startedAtMs: p.started_at_unix_ms || null,
    exitStatus: p.exit_status ? exitStatusFromV2(p.exit_status) : null,
    stdout: streamInfo(p.stdout),
    stderr: streamInfo(p.stderr),
    stdinOffset: p.stdin_offset,
  };
}

export function containerInfoFromV2(c: ContainerInfo__Output): ContainerInfo {
  return {
    containerId: c.container_id,
    state: stateName(c.state),
    createdAtMs: c.created_at_unix_ms || null,
    init: c.init ? processInfoFromV2(c.init) : null,
    execs: c.execs.map(processInfoFromV2),
  };
}

export function eventFromV2(e: WatchEventsResponse__Output): AgentEvent {
  const base = { seq: e.seq, atMs: e.at_unix_ms };
  switch (e.event) {
    case 'process_started': {
      const p = e.process_started!;
      return { ...base, type: 'process_started', containerId: p.container_id, execId: p.exec_id, pid: p.pid };
    }
    case 'process_exited': {
      const p = e.process_exited!;
      return { ...base, type: 'process_exited', containerId: p.container_id, execId: p.exec_id, pid: p.pid, status: p.status ? exitStatusFromV2(p.status) : null };
    }
    case 'container_state': {
      const c = e.container_state!;
      return { ...base, type: 'container_state', containerId: c.container_id, state: stateName(c.state) };
    }
    case 'oom_killed':
      return { ...base, type: 'oom_killed', containerId: e.oom_killed!.container_id };
    default:
      return { ...base, type: 'unknown' };
  }
}

/** Storages as both versions' wire messages spell them. */
export function storageToWire(s: Storage) {
  return {
    driver: s.driver,
    driver_options: s.driverOptions ?? [],
    source: s.source ?? '',
    fstype: s.fstype ?? '',
    options: s.options ?? [],
    mount_point: s.mountPoint,
  };
}

export function kernelModuleToWire(m: KernelModule) {
  return { name: m.name, parameters: m.parameters ?? [] };
}

/** A JSON field given as an object or as its JSON text. */
export const jsonText = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));
