// v1's conventions, which the core does not share: an empty exec id names
// the container's init process, an empty sandbox id is "sandbox", a remove
// timeout of 0 means 10 seconds, and ListProcesses answers a text table or a
// JSON array of pids.
import type { Container } from '../../agent/core/container';
import { excerpt, invalidArgument } from '../../agent/errors';

export const DEFAULT_SANDBOX_ID = 'sandbox';
export const DEFAULT_REMOVE_TIMEOUT_S = 10;

/** The exec id v1 means: its own, or the init's when empty. */
export function execIdOf(container: Container, execId: string): string {
  return execId === '' ? container.init.execId : execId;
}

/** ListProcesses' process_list: "table" (the default) or "json". */
export function formatProcessList(format: string, processes: ReadonlyArray<{ pid: number; args: readonly string[] }>): Buffer {
  if (format === 'json') return Buffer.from(JSON.stringify(processes.map((p) => p.pid)));
  if (format !== '' && format !== 'table') throw invalidArgument(`format ${excerpt(format)} is not "table" or "json"`);
  const rows = processes.map((p) => `${String(p.pid).padStart(7)} ${p.args.join(' ')}`);
  return Buffer.from(['    PID CMD', ...rows].join('\n') + '\n');
}
