// Runs a short-lived helper command (ip, mount, modprobe, ...) to completion:
// output collected, a deadline, cancellation, and a typed error on failure.
// The child is started through a Spawner, normally the agent's Reaper
// (process/spawn.ts), which also learns its exit.
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { AgentError, failedPrecondition, resourceExhausted } from '../errors';

/** What starts the child; the Reaper satisfies it. */
export interface Spawner {
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess;
}

export interface CommandOutput {
  stdout: string;
  stderr: string;
}

/** Everything known about a run that did not exit with 0. */
export interface CommandFailure extends CommandOutput {
  command: string;
  args: readonly string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  cancelled: boolean;
  outputTooLarge: boolean;
  /** "ip link set ... exited with 2: <last stderr lines>", for error messages. */
  summary: string;
}

export interface RunOptions {
  /** Written to the child's stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string | Buffer;
  /** Kill the child (SIGKILL) after this long; 0 or absent means no deadline. */
  timeoutMs?: number;
  /** Kill the child when aborted. */
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Combined stdout+stderr bytes kept before the child is killed; default 16 MiB. */
  maxOutputBytes?: number;
  /** Exit codes that count as success besides 0. */
  okCodes?: readonly number[];
  /** Maps a failed run to the error thrown; default: failedPrecondition with the summary. */
  onFailure?: (failure: CommandFailure) => Error;
  /** Appended to the error when the command cannot be started, e.g. "install iproute2". */
  spawnHint?: string;
}

const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;

/** Runs `command args` to completion and resolves with its output, or rejects with a typed error. */
export function runCommand(
  spawner: Spawner,
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandOutput> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new AgentError('unavailable', `${command} was not run: the call was cancelled`));
      return;
    }
    let child: ChildProcess;
    try {
      child = spawner.spawn(command, args, {
        stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: options.env,
        cwd: options.cwd,
      });
    } catch (err) {
      reject(spawnFailure(command, err as Error, options.spawnHint));
      return;
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let settled = false;
    let outputTooLarge = false;
    const max = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const collect = (into: Buffer[]) => (b: Buffer) => {
      bytes += b.length;
      if (bytes > max) {
        outputTooLarge = true;
        killChild(child);
        return;
      }
      into.push(b);
    };
    if (child.pid === undefined || !child.stdout || !child.stderr) {
      // Not started (no such binary, no descriptors left for its pipes): 'error' says why.
      child.once('error', (e) => reject(spawnFailure(command, e, options.spawnHint)));
      return;
    }
    child.stdout.on('data', collect(out));
    child.stderr.on('data', collect(err));

    const deadline = superviseChild(child, options);
    const done = () => {
      settled = true;
      deadline.clear();
    };

    child.once('error', (e) => {
      if (settled) return;
      done();
      reject(spawnFailure(command, e, options.spawnHint));
    });
    child.once('close', (code, signal) => {
      if (settled) return;
      done();
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      const { timedOut, cancelled } = deadline;
      const ok = !timedOut && !cancelled && !outputTooLarge && code !== null &&
        (code === 0 || (options.okCodes?.includes(code) ?? false));
      if (ok) return resolve({ stdout, stderr });
      const failure: CommandFailure = {
        command, args, code, signal, stdout, stderr, timedOut, cancelled, outputTooLarge,
        summary: summarize(command, args, { code, signal, stderr, stdout, timedOut, cancelled, outputTooLarge, timeoutMs: options.timeoutMs, max }),
      };
      if (cancelled) return reject(new AgentError('unavailable', failure.summary));
      reject(options.onFailure ? options.onFailure(failure) : failedPrecondition(failure.summary));
    });

    if (options.input !== undefined) {
      child.stdin!.on('error', () => {
        // EPIPE when the child exits without reading: its exit status tells the story.
      });
      child.stdin!.end(options.input);
    }
  });
}

/** What superviseChild did: set once it has killed the child. */
export interface ChildDeadline {
  readonly timedOut: boolean;
  readonly cancelled: boolean;
  /** Call once the child has exited: no kill after that. */
  clear(): void;
}

/**
 * Kills `child` (SIGKILL) once `timeoutMs` passes (0 or absent: never) or
 * `signal` aborts. For every caller that waits for a child in its own way
 * (runCommand collects output; the OCI runtime driver hands stdio to a
 * container process), so there is one deadline mechanism.
 */
export function superviseChild(child: ChildProcess, options: { timeoutMs?: number; signal?: AbortSignal }): ChildDeadline {
  const state = { timedOut: false, cancelled: false };
  const timer = options.timeoutMs
    ? setTimeout(() => {
        state.timedOut = true;
        killChild(child);
      }, options.timeoutMs)
    : undefined;
  const onAbort = () => {
    state.cancelled = true;
    killChild(child);
  };
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  return {
    get timedOut() {
      return state.timedOut;
    },
    get cancelled() {
      return state.cancelled;
    },
    clear() {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    },
  };
}

function killChild(child: ChildProcess): void {
  try {
    child.kill('SIGKILL');
  } catch {
    // Already gone.
  }
}

function spawnFailure(command: string, err: Error, hint?: string): AgentError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EMFILE' || code === 'ENFILE' || code === 'EAGAIN') {
    return resourceExhausted(`cannot run ${command}: ${err.message} (the agent is out of descriptors or processes); release or remove processes, or raise the limit`);
  }
  return failedPrecondition(`cannot run ${command}: ${err.message}${hint ? `; ${hint}` : ''}`, err);
}

function summarize(
  command: string,
  args: readonly string[],
  r: {
    code: number | null; signal: string | null; stderr: string; stdout: string;
    timedOut: boolean; cancelled: boolean; outputTooLarge: boolean; timeoutMs?: number; max: number;
  },
): string {
  const how = r.timedOut
    ? `timed out after ${r.timeoutMs} ms`
    : r.cancelled
      ? 'was cancelled'
      : r.outputTooLarge
        ? `wrote more than ${r.max} bytes of output`
        : r.signal
          ? `was killed by ${r.signal}`
          : `exited with ${r.code}`;
  const detail = lastLines(r.stderr) || lastLines(r.stdout);
  return `${[command, ...args].join(' ')} ${how}: ${detail || 'no error output'}`;
}

/** The last few non-empty lines of `text`, joined, at most 1000 characters. */
export function lastLines(text: string, count = 3): string {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).slice(-count).join('; ').slice(0, 1000);
}
