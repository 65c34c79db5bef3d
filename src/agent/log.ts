// Structured logs: pino JSON lines on stderr (the console when the agent is
// PID 1). Synchronous writes, so nothing is lost if the process is replaced
// or dies right after logging.
import pino from 'pino';
import type { LogLevel } from './config';

export type Logger = pino.Logger;

export interface AgentLog {
  log: Logger;
  /**
   * Sends every later line to `stream` too, e.g. the host's log port over
   * vsock (agent.log_vport), which exists only once the vsock module is loaded.
   */
  addDestination(stream: NodeJS.WritableStream): void;
}

export function createLogger(level: LogLevel, fd = 2): AgentLog {
  const out = pino.multistream([{ stream: pino.destination({ fd, sync: true }), level }]);
  const log = pino({ level, base: { name: 'agent', pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, out);
  return { log, addDestination: (stream) => out.add({ stream, level }) };
}

/** A logger that drops everything, for unit tests. It opens no destination (none of stdout's state at load time). */
export const silentLogger: Logger = pino({ level: 'silent' }, { write() {} });
