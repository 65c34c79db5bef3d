// The one file an agent image leaves for the next one when it execs in place:
// STATE_DIR/handover/handover.json with the state (state/document.ts, in the
// codec's JSON), the descriptors it hands over (handover.ts), the addresses
// its listeners served, and beside it the output each process stream held,
// one file per stream (and the host input a serial port kept). Written before
// the exec, atomically; read once by the new image (AGENT_HANDOVER names the
// file), which renames it to handover.json.taken.
import fs from 'node:fs';
import path from 'node:path';
import type { AgentState } from '../state/document';
import { decodeState, encodeState } from '../state/codec';
import { writeSynced } from '../state/store';
import type { HandoverRecord } from './handover';

export const HANDOVER_ENV = 'AGENT_HANDOVER';
export const HANDOVER_FORMAT = 1;

export interface HandoverFile {
  /** The agent version that wrote it. */
  from: string;
  state: AgentState;
  fds: HandoverRecord;
  /** Listening fds by address (as the listeners print it): name of the fd in `fds`. */
  listeners: Record<string, string>;
  /** Serial ports handed over open, by address (serial:NAME): name of the fd in `fds`; their kept input is the file of inputKey(address). */
  ports: Record<string, string>;
  /** The files beside the handover file, by outputKey() or inputKey(). */
  output: Record<string, string>;
  /** How to run the image that wrote it again (a rollback), and what it can take over. */
  previous: { binary: string; argv: string[]; adopts?: string[] };
  /** The events its bus held, oldest first (core/events.ts Sequenced<CoreEvent>, as JSON). */
  events: unknown[];
  /** The counters as the image taking over is to show them. */
  image: { upgrades: number; failedUpgrades: number; upgradeId: string };
}

export const outputKey = (containerId: string, execId: string, stream: 'stdout' | 'stderr') => `${containerId}/${execId}/${stream}`;
/** A serial port's kept host input (no container id has a colon: the keys never meet). */
export const inputKey = (address: string) => `input:${address}`;

export function handoverDir(stateDir: string): string {
  return path.join(stateDir, 'handover');
}

/** Writes the handover (output files first, then the document, fsync'd and renamed into place); returns the document's path. */
export function writeHandover(stateDir: string, h: Omit<HandoverFile, 'output'>, held: Map<string, Buffer>): string {
  const dir = handoverDir(stateDir);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const output: Record<string, string> = {};
  let n = 0;
  for (const [key, bytes] of held) {
    if (bytes.length === 0) continue;
    const name = `out-${n++}`;
    writeSynced(path.join(dir, name), bytes);
    output[key] = name;
  }
  const doc = { format: HANDOVER_FORMAT, from: h.from, state: JSON.parse(encodeState(h.state)), fds: h.fds, listeners: h.listeners, ports: h.ports, output, previous: h.previous, events: h.events, image: h.image };
  const file = path.join(dir, 'handover.json');
  writeSynced(`${file}.tmp`, Buffer.from(JSON.stringify(doc)));
  fs.renameSync(`${file}.tmp`, file);
  return file;
}

/** Reads the handover a previous image left; throws with what is wrong (a StateError for the state). */
export function readHandover(file: string): { handover: HandoverFile; held: (key: string) => Buffer } {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  if (doc.format !== HANDOVER_FORMAT) throw new Error(`${file}: handover format ${String(doc.format)}, this agent reads ${HANDOVER_FORMAT}`);
  const { state } = decodeState(JSON.stringify(doc.state), `${file} (state)`);
  const handover: HandoverFile = {
    from: String(doc.from),
    state,
    fds: doc.fds as HandoverRecord,
    listeners: (doc.listeners ?? {}) as Record<string, string>,
    ports: (doc.ports ?? {}) as Record<string, string>,
    output: (doc.output ?? {}) as Record<string, string>,
    previous: doc.previous as HandoverFile['previous'],
    events: Array.isArray(doc.events) ? doc.events : [],
    image: imageOf(doc.image),
  };
  const dir = path.dirname(file);
  const held = (key: string) => {
    const name = handover.output[key];
    return name ? fs.readFileSync(path.join(dir, path.basename(name))) : Buffer.alloc(0);
  };
  return { handover, held };
}

function imageOf(raw: unknown): HandoverFile['image'] {
  const o = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const count = (v: unknown) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : 0);
  return { upgrades: count(o.upgrades), failedUpgrades: count(o.failedUpgrades), upgradeId: typeof o.upgradeId === 'string' ? o.upgradeId : '' };
}
