// The new image's side of an in-place upgrade: find the handover the old
// image left (AGENT_HANDOVER), adopt the descriptors it names, and give main
// what it needs to restore the core (state/document.ts turned into the
// core's restore inputs) and to serve on the inherited listeners. A handover
// that cannot be read is logged and the agent starts afresh: PID 1 must
// serve whatever the old image left.
import fs from 'node:fs';
import type { RestoredContainer, RestoredProcess } from '../core/container';
import type { CoreEvent, Sequenced } from '../core/events';
import type { SettledRequest } from '../core/requests';
import { revived } from '../state/capture';
import type { Logger } from '../log';
import { ProcessIO } from '../process/process-io';
import type { AgentState, ContainerRecord, ProcessRecord } from '../state/document';
import type { SavedStorage } from '../storage/manager';
import { adoptHandover } from './handover';
import { HANDOVER_ENV, inputKey, outputKey, readHandover, type HandoverFile } from './handover-file';
import type { InheritedPort } from '../server/serial-port';
import { stdioFdName } from './exec-in-place';

export interface Takeover {
  from: string;
  state: AgentState;
  /** The request ids the previous image answered, their results as they were (what RequestLedger.restore takes). */
  requests: SettledRequest[];
  /** The counters the previous image passed on for this one. */
  image: HandoverFile['image'];
  /** The events the previous image's bus held (what EventBus restored takes). */
  events: Sequenced<CoreEvent>[];
  previous: HandoverFile['previous'];
  /** The listening fd handed over for `address`, if any. */
  listenerFd(address: string): number | undefined;
  /** The serial port handed over open for `address` (serial:NAME), with the host input it kept, if any. */
  port(address: string): InheritedPort | undefined;
  /** The addresses whose listening sockets were handed over. */
  inherited: string[];
  /** This takeover is an upgrade (not a rollback, nor an image taking its own handover back): it may be rolled back. */
  rollbackAllowed: boolean;
  /** The upgrade is kept: the handover is marked committed. */
  commit(): void;
  /** What Sandbox.restore takes. */
  sandbox: { id: string | null; dnsGiven: boolean; storages: SavedStorage[]; containers: RestoredContainer[] };
  /** The stdio of a process, from the descriptors handed over and the output its streams held. */
  stdio(containerId: string, execId: string): ProcessIO;
}

export function takeOver(env: NodeJS.ProcessEnv, outputBufferBytes: number, log: Logger): Takeover | null {
  const file = env[HANDOVER_ENV];
  if (!file) return null;
  // Not for the runtimes and helpers this image spawns.
  delete env[HANDOVER_ENV];
  let read: ReturnType<typeof readHandover>;
  try {
    read = readHandover(file);
  } catch (err) {
    log.error({ err, handover: file }, 'the handover of the previous agent image cannot be read: starting afresh (its containers run on unmanaged)');
    return null;
  }
  const { handover, held } = read;
  log.info({ handover: file, from: handover.from, fds: handover.fds.fds.length, containers: handover.state.containers.length }, 'taking over from the previous agent image');
  const adopted = adoptHandover(handover.fds);
  for (const r of adopted.refused) log.error({ fd: r.fd, name: r.name, why: r.why }, 'a descriptor handed over is not what the handover says: not used');
  if (adopted.closed.length > 0) log.info({ fds: adopted.closed }, 'descriptors nobody claimed were closed');
  const taken = `${file}.taken`;
  fs.renameSync(file, taken);
  const records = new Map<string, ProcessRecord>();
  for (const c of handover.state.containers) for (const p of [c.init, ...c.execs]) records.set(`${c.id}/${p.execId}`, p);
  const fd = (containerId: string, execId: string, which: string) => adopted.fds.get(stdioFdName(containerId, execId, which)) ?? null;
  return {
    from: handover.from,
    state: handover.state,
    requests: handover.state.requests.map((r) => ({ ...r, result: revived(r.result) })),
    image: handover.image,
    events: heldEvents(handover.events, handover.state.lastEventSeq, log),
    previous: handover.previous,
    inherited: Object.keys(handover.listeners),
    rollbackAllowed: handover.image.upgradeId !== '',
    commit: () => {
      try {
        fs.renameSync(taken, `${file}.committed`);
      } catch (err) {
        log.warn({ err, handover: taken }, 'cannot mark the handover committed');
      }
    },
    listenerFd: (address) => {
      const name = handover.listeners[address];
      return name === undefined ? undefined : adopted.fds.get(name);
    },
    port: (address) => {
      const name = handover.ports[address];
      const fd = name === undefined ? undefined : adopted.fds.get(name);
      return fd === undefined ? undefined : { fd, input: held(inputKey(address)) };
    },
    sandbox: {
      id: handover.state.sandbox?.id ?? null,
      dnsGiven: handover.state.sandbox?.dns ?? false,
      storages: handover.state.storages.map((s) => ({ ...s, plan: s.plan as SavedStorage['plan'], created: s.created as SavedStorage['created'] })),
      containers: handover.state.containers.map(restoredContainer),
    },
    stdio(containerId, execId) {
      const p = records.get(`${containerId}/${execId}`);
      if (!p) throw new Error(`no stdio was handed over for ${containerId}/${execId}`);
      return ProcessIO.adopted(outputBufferBytes, {
        terminal: p.terminal,
        fds: { stdin: fd(containerId, execId, 'stdin'), stdout: fd(containerId, execId, 'stdout'), stderr: fd(containerId, execId, 'stderr'), pty: fd(containerId, execId, 'pty') },
        stdout: p.stdout,
        stderr: p.stderr,
        stdinWritten: p.stdinWritten,
        held: { stdout: held(outputKey(containerId, execId, 'stdout')), stderr: held(outputKey(containerId, execId, 'stderr')) },
      });
    },
  };
}

/** The events handed over, if they are what the bus can take (consecutive seqs ending at the last one); none otherwise. */
function heldEvents(raw: unknown[], lastSeq: number, log: Logger): Sequenced<CoreEvent>[] {
  const events = raw as Array<Sequenced<CoreEvent>>;
  const ok = events.every((e, i) => e && typeof e === 'object' && e.seq === lastSeq - events.length + 1 + i && typeof e.event?.type === 'string');
  if (!ok) {
    log.warn({ events: raw.length, lastSeq }, 'the events handed over are not a run of seqs ending at the last one: not kept (cursors from before the exec are out of range)');
    return [];
  }
  return events;
}

function restoredContainer(c: ContainerRecord): RestoredContainer {
  return { id: c.id, bundle: c.bundle, state: c.state, createdAt: c.createdAt, init: restoredProcess(c.init), execs: c.execs.map(restoredProcess) };
}

function restoredProcess(p: ProcessRecord): RestoredProcess {
  return {
    execId: p.execId,
    pid: p.pid,
    startedAt: p.startedAt,
    startTicks: p.pidStartTicks,
    status: p.exit && { ...p.exit, startedAt: p.startedAt ?? p.exit.exitedAt },
    collected: p.collected,
    oomKillsAtStart: p.oomKillsAtStart,
  };
}
