// v2's conventions and its presentation of core records. The core knows none
// of this: an empty sandbox id is "sandbox", an empty CreateContainer exec id
// is the container id, a RemoveContainer timeout of 0 means 10 seconds, a
// ReadOutput reader is "default" unless named (kept in the core under "v2.",
// apart from other versions' readers) and reads 64 KiB chunks unless told
// (at most 1 MiB), and exec ids are taken as they are (no "empty = init").
// Exit statuses, snapshots and events go out with all their parts.
import type { ContainerState as CoreContainerState } from '../../agent/core/container';
import type { ContainerEventState, CoreEvent, Sequenced } from '../../agent/core/events';
import type { ContainerSnapshot, ProcessSnapshot } from '../../agent/core/snapshot';
import { excerpt, invalidArgument } from '../../agent/errors';
import { validateId } from '../../agent/validate';
import type { ExitStatus as CoreExitStatus } from '../../agent/process/exit-status';
import type { StreamState } from '../../agent/stdio/output-stream';
import type { ContainerInfo } from '../../generated/agent/v2/ContainerInfo';
import type { ContainerState } from '../../generated/agent/v2/ContainerState';
import type { ExitStatus } from '../../generated/agent/v2/ExitStatus';
import type { ProcessInfo } from '../../generated/agent/v2/ProcessInfo';
import type { StreamInfo } from '../../generated/agent/v2/StreamInfo';
import type { WatchEventsResponse } from '../../generated/agent/v2/WatchEventsResponse';

export const DEFAULT_SANDBOX_ID = 'sandbox';
export const DEFAULT_REMOVE_TIMEOUT_S = 10;
export const DEFAULT_READER = 'default';
export const DEFAULT_CHUNK_BYTES = 64 * 1024;
export const MAX_CHUNK_BYTES = 1024 * 1024;

/** CreateContainer's init exec id: the one given, or the container id when empty. */
export const initExecIdOf = (req: { container_id: string; exec_id: string }): string => req.exec_id || req.container_id;

/** RemoveContainer's timeout in seconds (0: the default). */
export const removeTimeoutOf = (timeoutSeconds: number): number => timeoutSeconds || DEFAULT_REMOVE_TIMEOUT_S;

/** Where v2's readers are in the core: ReleaseProcess finishes these, and no other version's. */
const READER_PREFIX = 'v2.';

/** The core's reader for a v2 reader name (empty: "default"). */
export function readerOf(reader: string): string {
  const name = reader || DEFAULT_READER;
  validateId('reader', name);
  if (name.length > 128 - READER_PREFIX.length) throw invalidArgument(`reader ${excerpt(name)} is too long: at most ${128 - READER_PREFIX.length} characters`);
  return READER_PREFIX + name;
}

/** A core reader that is v2's (see readerOf). */
export const isV2Reader = (name: string): boolean => name.startsWith(READER_PREFIX);

/** ReadOutput's chunk size: 0 is the default, anything above the maximum is the maximum. */
export const chunkBytesOf = (maxChunkBytes: number): number =>
  maxChunkBytes === 0 ? DEFAULT_CHUNK_BYTES : Math.min(maxChunkBytes, MAX_CHUNK_BYTES);

/** OutputStream (its name, or a number this build does not know) → the core's stream; UNSPECIFIED is refused. */
export function streamFromV2(stream: string | number): 'stdout' | 'stderr' {
  if (stream === 'OUTPUT_STREAM_STDOUT') return 'stdout';
  if (stream === 'OUTPUT_STREAM_STDERR') return 'stderr';
  throw invalidArgument(`stream ${excerpt(stream)} is not an output stream: use OUTPUT_STREAM_STDOUT or OUTPUT_STREAM_STDERR`);
}

/** The arguments of a request as the request-id ledger compares them: everything but request_id. */
export function argumentsOf(req: object): Record<string, unknown> {
  const { request_id: _id, ...args } = req as Record<string, unknown>;
  return args;
}

const STATE: Record<ContainerEventState, ContainerState> = {
  created: 'CONTAINER_STATE_CREATED',
  running: 'CONTAINER_STATE_RUNNING',
  paused: 'CONTAINER_STATE_PAUSED',
  stopped: 'CONTAINER_STATE_STOPPED',
  removed: 'CONTAINER_STATE_REMOVED',
};

export const stateToV2 = (state: CoreContainerState | ContainerEventState): ContainerState => STATE[state];

/** The core's exit status record, every part of it: code or signal (the other 0), core dump, OOM kill, times. */
export function exitStatusToV2(s: CoreExitStatus): ExitStatus {
  return {
    code: s.code ?? 0,
    signal: s.signal ?? 0,
    core_dumped: s.coreDumped,
    oom_killed: s.oomKilled,
    started_at_unix_ms: s.startedAt,
    exited_at_unix_ms: s.exitedAt,
  };
}

export const streamInfoToV2 = (s: StreamState): StreamInfo => ({ start_offset: s.start, end_offset: s.end, ended: s.ended });

export function processInfoToV2(p: ProcessSnapshot): ProcessInfo {
  return {
    exec_id: p.execId,
    pid: p.pid ?? 0,
    running: p.running,
    terminal: p.terminal,
    started_at_unix_ms: p.startedAt ?? 0,
    exit_status: p.exitStatus ? exitStatusToV2(p.exitStatus) : null,
    stdout: streamInfoToV2(p.stdout),
    stderr: streamInfoToV2(p.stderr),
    stdin_offset: p.stdin.written,
  };
}

export function containerInfoToV2(c: ContainerSnapshot): ContainerInfo {
  return {
    container_id: c.id,
    state: stateToV2(c.state),
    created_at_unix_ms: c.createdAt,
    init: processInfoToV2(c.init),
    execs: c.execs.map(processInfoToV2),
  };
}

/** One event of the core's bus as WatchEvents sends it. */
export function eventToV2({ seq, event }: Sequenced<CoreEvent>): WatchEventsResponse {
  switch (event.type) {
    case 'process-started':
      return {
        seq, at_unix_ms: event.at, event: 'process_started',
        process_started: { container_id: event.containerId, exec_id: event.execId, pid: event.pid },
      };
    case 'process-exited':
      return {
        seq, at_unix_ms: event.status.exitedAt, event: 'process_exited',
        process_exited: { container_id: event.containerId, exec_id: event.execId, pid: event.pid, status: exitStatusToV2(event.status) },
      };
    case 'container-state':
      return {
        seq, at_unix_ms: event.at, event: 'container_state',
        container_state: { container_id: event.containerId, state: stateToV2(event.state) },
      };
    case 'oom-kill':
      return { seq, at_unix_ms: event.at, event: 'oom_killed', oom_killed: { container_id: event.containerId } };
  }
}
