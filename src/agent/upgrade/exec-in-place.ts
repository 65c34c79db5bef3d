// The old image's side of an in-place upgrade: drain, hand over, execve.
// Listeners stop accepting but keep listening (clients that connect meanwhile
// wait in the kernel's backlog for the new image); calls in flight get
// `drainMs` to finish, then their connections are closed (clients retry, by
// request id); every output stream takes in what its source had read and
// stops reading; the state is captured, the output each stream held is
// written beside it, the descriptors are made inheritable, and the process
// becomes the new image with the same pid and children.
import type { Container } from '../core/container';
import type { Logger } from '../log';
import { native } from '../../native/native';
import type { ContainerProcess } from '../process/container-process';
import type { AgentServer } from '../server/server';
import { captureState, type StateSources } from '../state/capture';
import { prepareHandover } from './handover';
import { HANDOVER_ENV, inputKey, outputKey, writeHandover } from './handover-file';

export interface ExecTarget {
  /** The executable to exec (a path, never execPath's "(deleted)"). */
  binary: string;
  /** Its full argv, argv[0] included. */
  argv: string[];
  /** What it can take over beyond listening sockets and stdio (its pre-flight report's `adopts`; handover.ts ADOPTS). */
  adopts?: string[];
}

export interface ExecInPlaceDeps {
  server: AgentServer;
  sources: StateSources;
  stateDir: string;
  log: Logger;
  /** How long calls in flight get before their connections are closed. */
  drainMs: number;
  /** How to run this image again (a rollback, or when the new one cannot be exec'd). */
  self: ExecTarget;
  /** The counters the target is to show (Discovery), and those this image shows if it has to take itself back. */
  next: ImageCounters;
  fallback: ImageCounters;
}

export interface ImageCounters {
  upgrades: number;
  failedUpgrades: number;
  upgradeId: string;
}

/** Every process of every container, with its container. */
function processes(containers: Container[]): Array<{ container: Container; proc: ContainerProcess }> {
  return containers.flatMap((container) => [container.init, ...container.execProcesses()].map((proc) => ({ container, proc })));
}

/**
 * Drains and execs `target` in place. Returns only if neither `target` nor
 * this image itself (tried next, with the same handover) could be exec'd:
 * the error, the agent then serving nothing. Never resolves otherwise.
 */
export async function execInPlace(target: ExecTarget, deps: ExecInPlaceDeps): Promise<Error> {
  const { server, sources, log } = deps;
  // A serial port handed over stays open, so the guest kernel keeps what a host sends during the exec;
  // only an image that knows how to take it over may get it (one that does not would find the port busy).
  const detached = server.listeners.detach({ ports: target.adopts?.includes('serial-port') ?? false });
  // Streams never finish on their own: they end now, and their clients re-attach to the new image at their offsets.
  server.endStreams(`the agent is replacing itself in place (version ${sources.agentVersion} execs ${target.binary}); reconnect and re-attach at your offset`);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.server.forceShutdown();
      resolve();
    }, deps.drainMs);
    server.server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  // From here on nothing awaits: no byte may arrive between the capture and the exec.
  const all = processes(sources.sandbox.list());
  for (const { proc } of all) {
    if (!proc.io.attached) continue;
    proc.io.stdout.absorbBuffered();
    proc.io.stderr.absorbBuffered();
  }
  const state = captureState(sources);
  const held = new Map<string, Buffer>();
  const named: Array<{ name: string; fd: number }> = [];
  const listeners: Record<string, string> = {};
  for (const l of detached.sockets) {
    const name = `listener:${l.address}`;
    named.push({ name, fd: l.fd });
    listeners[l.address] = name;
  }
  const ports: Record<string, string> = {};
  for (const p of detached.ports) {
    const { fd, input } = p.take();
    const name = `port:${p.address}`;
    named.push({ name, fd });
    ports[p.address] = name;
    held.set(inputKey(p.address), input);
  }
  for (const { container, proc } of all) {
    if (!proc.io.attached) continue;
    for (const stream of ['stdout', 'stderr'] as const) held.set(outputKey(container.id, proc.execId, stream), proc.io[stream].held());
    for (const [which, fd] of Object.entries(proc.io.descriptors())) {
      if (fd !== null) named.push({ name: stdioFdName(container.id, proc.execId, which), fd });
    }
  }
  const fds = prepareHandover(named);
  // stdin, stdout and stderr (the console, or the pipes a supervisor reads) go on into the new image:
  // Node may have marked them close-on-exec, and a new image started without them writes its logs to /dev/null.
  for (const fd of [0, 1, 2]) {
    try {
      native.clearCloexec(fd);
    } catch {
      // Not open: the new image gets /dev/null there, as any process does.
    }
  }
  const handover = (image: ImageCounters) =>
    writeHandover(deps.stateDir, { from: sources.agentVersion, state, fds, listeners, ports, previous: deps.self, events: sources.events.held(), image }, held);
  const file = handover(deps.next);
  const env = [...Object.entries(process.env).filter(([k]) => k !== HANDOVER_ENV).map(([k, v]) => `${k}=${v}`), `${HANDOVER_ENV}=${file}`];
  log.info({ binary: target.binary, handover: file, fds: named.length, containers: state.containers.length }, 'exec in place');
  let failure: Error;
  try {
    native.execve(target.binary, target.argv, env);
  } catch (err) {
    failure = err instanceof Error ? err : new Error(String(err));
    log.error({ err, binary: target.binary }, 'exec in place failed; this image takes its own handover back');
  }
  try {
    // The same state, counted as a failed upgrade.
    handover(deps.fallback);
    native.execve(deps.self.binary, deps.self.argv, env);
  } catch (err) {
    log.fatal({ err, binary: deps.self.binary }, 'exec of this image failed too: the agent serves nothing now');
  }
  return failure!;
}

/** The name an fd of a process's stdio is handed over under (takeover.ts looks it up the same way). */
export const stdioFdName = (containerId: string, execId: string, which: string) => `stdio:${containerId}/${execId}:${which}`;
