// Structured logs: pino JSON lines on stderr (the console when the agent is
// PID 1). Synchronous writes, so nothing is lost if the process is replaced
// or dies right after logging.
import pino from 'pino';
import type { LogLevel } from './config';

export type Logger = pino.Logger;

export function createLogger(level: LogLevel, fd = 2): Logger {
  return pino(
    { level, base: { name: 'agent', pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd, sync: true }),
  );
}

/** A logger that drops everything, for unit tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
