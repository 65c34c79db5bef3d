// The core as a state document (document.ts): what a new agent image needs
// to take over. Read-only: capturing changes nothing, and may run at any
// moment (every save is a fresh capture of the latest state).
import os from 'node:os';
import type { Container } from '../core/container';
import type { EventBus } from '../core/events';
import type { RequestLedger } from '../core/requests';
import type { Sandbox } from '../core/sandbox';
import type { ContainerProcess } from '../process/container-process';
import type { OutputStream } from '../stdio/output-stream';
import type { AgentState, ContainerRecord, ProcessRecord, StreamRecord } from './document';

export interface StateSources {
  sandbox: Sandbox;
  requests: RequestLedger;
  events: EventBus;
  agentVersion: string;
}

export function captureState(src: StateSources, now = Date.now()): AgentState {
  return {
    writtenBy: src.agentVersion,
    writtenAt: now,
    sandbox: src.sandbox.id === null ? null : { id: src.sandbox.id, hostname: os.hostname(), dns: src.sandbox.dnsConfigured },
    storages: src.sandbox.storage.saved(),
    containers: src.sandbox.list().map(captureContainer),
    requests: src.requests.settled().map((r) => ({ ...r, result: plain(r.result) })),
    lastEventSeq: src.events.lastSeq,
  };
}

function captureContainer(c: Container): ContainerRecord {
  return { id: c.id, bundle: c.bundle, state: c.state, createdAt: c.createdAt, init: captureProcess(c.init), execs: c.execProcesses().map(captureProcess) };
}

function captureProcess(p: ContainerProcess): ProcessRecord {
  const attached = p.io.attached;
  const s = p.status;
  return {
    execId: p.execId,
    pid: p.pid,
    pidStartTicks: p.startTicks,
    terminal: p.io.terminal,
    startedAt: p.startedAt,
    oomKillsAtStart: p.oomKillsAtStart,
    exit: s && { code: s.code, signal: s.signal, coreDumped: s.coreDumped, oomKilled: s.oomKilled, exitedAt: s.exitedAt },
    collected: p.collected,
    fds: attached ? p.io.descriptors() : { stdin: null, stdout: null, stderr: null, pty: null },
    stdout: attached ? captureStream(p.io.stdout) : emptyStream(),
    stderr: attached ? captureStream(p.io.stderr) : emptyStream(),
    stdinWritten: p.io.written,
  };
}

const emptyStream = (): StreamRecord => ({ start: 0, end: 0, ended: false, readers: {} });

function captureStream(out: OutputStream): StreamRecord {
  return { ...out.snapshot(), readers: out.readerPlaces() };
}

/** A request's result as JSON keeps it: bytes as base64 under "$bytes" (codec.ts does not look inside results). */
function plain(v: unknown): unknown {
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('base64') };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** The inverse of plain(): a saved request result with its bytes back as Buffers. */
export function revived(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(revived);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (Object.keys(o).length === 1 && typeof o.$bytes === 'string') return Buffer.from(o.$bytes, 'base64');
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, revived(x)]));
  }
  return v;
}
