// The agent's saved state: everything a new agent image needs to take over a
// running sandbox (docs/upgrade.md). Plain data, version-free like the core;
// the wire format (JSON, snake_case, `format`/`min_reader_format`) is
// codec.ts's. Fields are only ever added: a reader of an earlier format
// ignores what it does not know, and fills in what an earlier writer did
// not write.

/** The format this agent writes once an upgrade to it commits. */
export const STATE_FORMAT = 1;
/** The oldest format this agent reads (migrations.ts brings it up to STATE_FORMAT). */
export const OLDEST_READ_FORMAT = 1;

export interface StreamRecord {
  /** First offset still held, one past the last byte received, end of stream seen. */
  start: number;
  end: number;
  ended: boolean;
  /** Each reader's place (a reader needs nothing before it). */
  readers: Record<string, number>;
}

export interface ExitRecord {
  code: number | null;
  signal: number | null;
  coreDumped: boolean;
  oomKilled: boolean;
  exitedAt: number;
}

export interface ProcessRecord {
  execId: string;
  /** null before the runtime reported it. */
  pid: number | null;
  /** The process's start time in clock ticks since boot (/proc/PID/stat field 22): a reused pid is never taken for it. */
  pidStartTicks: number | null;
  terminal: boolean;
  startedAt: number | null;
  /** The container cgroup's OOM kill count when it started (an OOM kill after that is its); null when unknown. */
  oomKillsAtStart: number | null;
  exit: ExitRecord | null;
  /** The status was collected (v1 wait) or released (v2): it is not kept for anyone. */
  collected: boolean;
  /** The descriptors the agent holds for the process's stdio, handed over across an exec in place. */
  fds: { stdin: number | null; stdout: number | null; stderr: number | null; pty: number | null };
  stdout: StreamRecord;
  stderr: StreamRecord;
  stdinWritten: number;
}

export interface ContainerRecord {
  id: string;
  bundle: string;
  state: 'created' | 'running' | 'paused' | 'stopped';
  createdAt: number;
  init: ProcessRecord;
  execs: ProcessRecord[];
}

export interface StorageRecord {
  driver: string;
  mountPoint: string;
  source: string;
  fstype: string;
  /** Who uses it (container ids, "sandbox"): it is unmounted when the last one lets go. */
  owners: string[];
  /** The storage manager's own record of it (its mount plan, what it created): plain JSON the codec does not look into. */
  plan: unknown;
  created: unknown;
}

export interface RequestRecord {
  requestId: string;
  digest: string;
  /** The first call's result, as the handler's core call returned it (plain data). */
  result: unknown;
  at: number;
}

export interface AgentState {
  /** Who wrote it, for messages ("written by agent 0.4.0"). */
  writtenBy: string;
  writtenAt: number;
  /** `dns`: CreateSandbox named DNS servers (containers get the sandbox's resolv.conf). */
  sandbox: { id: string; hostname: string; dns: boolean } | null;
  storages: StorageRecord[];
  containers: ContainerRecord[];
  requests: RequestRecord[];
  /** The last event sequence number handed out: the new image goes on after it. */
  lastEventSeq: number;
}

export const emptyState = (writtenBy: string, writtenAt = Date.now()): AgentState => ({
  writtenBy,
  writtenAt,
  sandbox: null,
  storages: [],
  containers: [],
  requests: [],
  lastEventSeq: 0,
});
