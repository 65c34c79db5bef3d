// The stdio of one container process: pipes, or a pass-through pty. The
// agent owns the agent-side ends for the whole life of the process, so output
// survives the OCI runtime's exit and is kept (bounded) until read. Output
// streams and stdin are both counted in absolute byte offsets, so a client
// that lost a reply or its connection resumes exactly where it stopped.
import type { ChildProcess, StdioOptions } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { AgentError, failedPrecondition, invalidArgument, outOfRange } from '../errors';
import { native } from '../../native/native';
import { OutputStream, type StreamState } from '../stdio/output-stream';
import { Pty } from '../stdio/pty';
import { closeQuietly } from './spawn';

/** Where the stdio of a process stands, for a client that attaches again. */
export interface StdioState {
  stdout: StreamState;
  stderr: StreamState;
  /** Bytes of stdin accepted so far: the offset of the next write. */
  stdin: { written: number };
}

/** What ProcessIO.adopted takes: the saved record of a process's stdio, and the output bytes each stream held. */
export interface AdoptedStdio {
  terminal: boolean;
  fds: { stdin: number | null; stdout: number | null; stderr: number | null; pty: number | null };
  stdout: { start: number; end: number; ended: boolean; readers: Record<string, number> };
  stderr: { start: number; end: number; ended: boolean; readers: Record<string, number> };
  stdinWritten: number;
  held: { stdout: Buffer; stderr: Buffer };
}

export class ProcessIO {
  stdout!: OutputStream;
  stderr!: OutputStream;
  /**
   * The agent's end of the stdin pipe, wrapped in a stream only once input
   * is written or ended: most processes never get any, and an idle stream
   * costs ~4 KB of the agent's memory per process (bench/scale.ts).
   */
  private stdin: Writable | null = null;
  private stdinFd: number | null = null;
  /** The process's end of the stdin pipe, from spawnStdio() until attach() has handed it over. */
  private stdinPeerFd: number | null = null;
  /** Bytes of stdin accepted (queued in order) so far. */
  private written_ = 0;
  /** Settles once every write accepted so far has been delivered or has failed; never rejects. */
  private stdinDone: Promise<void> = Promise.resolve();
  /** The first stdin write that failed: stdin is broken from then on. */
  private stdinFailure: Error | null = null;
  /** CloseStdin was asked for (pipes): no write is accepted after it. */
  private stdinClosing = false;
  private readonly pty: Pty | null;
  /** What the process got as fds 0-2, as "dev:ino" (see holders()); null where unknown. */
  private peerEnds: Array<string | null> = [];
  /** Set by attach(): until then the process is still being started and has no streams. */
  private attached_ = false;

  private constructor(
    readonly terminal: boolean,
    private readonly bufferLimit: number,
    adoptedPty?: Pty,
  ) {
    this.pty = adoptedPty ?? (terminal ? new Pty() : null);
  }

  /**
   * The stdio of a process taken over from an earlier agent image: its
   * descriptors (the agent-side pipe ends, or the pty master) as handed
   * over, the output each stream held and where its readers stood, and
   * where stdin stood. A stream that had ended, or whose descriptor is gone,
   * is ended here.
   */
  static adopted(bufferLimit: number, saved: AdoptedStdio): ProcessIO {
    const { fds } = saved;
    if (saved.terminal) {
      if (fds.pty === null) throw new Error('a terminal process was handed over without its pty master');
      const io = new ProcessIO(true, bufferLimit, Pty.adopt(fds.pty));
      io.stdout = OutputStream.restored(saved.stdout.ended ? null : io.pty!.output, bufferLimit, 'stdout', saved.stdout, saved.held.stdout);
      io.stderr = OutputStream.restored(null, bufferLimit, 'stderr', saved.stderr, saved.held.stderr);
      io.finishAdoption(saved.stdinWritten);
      return io;
    }
    const io = new ProcessIO(false, bufferLimit);
    const socket = (fd: number | null, readable: boolean) => (fd === null ? null : new net.Socket({ fd, readable, writable: !readable }));
    const out = saved.stdout.ended ? null : socket(fds.stdout, true);
    const err = saved.stderr.ended ? null : socket(fds.stderr, true);
    // Ended streams' descriptors are not needed any more.
    for (const [ended, fd] of [[saved.stdout.ended, fds.stdout], [saved.stderr.ended, fds.stderr]] as const) if (ended && fd !== null) fs.closeSync(fd);
    io.stdout = OutputStream.restored(out, bufferLimit, 'stdout', saved.stdout, saved.held.stdout);
    io.stderr = OutputStream.restored(err, bufferLimit, 'stderr', saved.stderr, saved.held.stderr);
    io.stdinFd = fds.stdin;
    io.finishAdoption(saved.stdinWritten);
    return io;
  }

  private finishAdoption(stdinWritten: number): void {
    this.written_ = stdinWritten;
    this.peerEnds = [null, null, null];
    this.attached_ = true;
  }

  static pipes(bufferLimit: number): ProcessIO {
    return new ProcessIO(false, bufferLimit);
  }

  static terminal(bufferLimit: number): ProcessIO {
    return new ProcessIO(true, bufferLimit);
  }

  /** The stdio option for spawning the runtime that starts this process (once: it makes the stdin pipe). */
  spawnStdio(): StdioOptions {
    if (this.pty) return [this.pty.slaveFd, this.pty.slaveFd, this.pty.slaveFd];
    [this.stdinFd, this.stdinPeerFd] = native.socketpair();
    return [this.stdinPeerFd, 'pipe', 'pipe'];
  }

  /** Takes over the agent-side ends once the runtime has been spawned. */
  attach(child: ChildProcess): void {
    this.attached_ = true;
    if (this.pty) {
      const slave = identify(this.pty.slaveFd);
      this.peerEnds = [slave, slave, slave];
      this.pty.closeSlave();
      this.stdout = new OutputStream(this.pty.output, this.bufferLimit, 'stdout');
      // A terminal has one output stream; stderr is empty from the start.
      const none = new PassThrough();
      none.end();
      this.stderr = new OutputStream(none, this.bufferLimit, 'stderr');
      return;
    }
    // The spawn makes each 'pipe' a socketpair and keeps the first socket;
    // socketpair(2) allocates the child's socket right after it, so its inode
    // is ours + 1 (the kernel shows a unix socket's peer only over netlink).
    // The fds are libuv internals (the handle's fd); without them holders() finds nothing.
    // The stdin pipe is ours: its child end is known, and closed here now that the runtime has it.
    this.peerEnds = [this.stdinPeerFd === null ? null : identify(this.stdinPeerFd), ...[child.stdout, child.stderr].map((stream) => {
      const fd = (stream as unknown as { _handle?: { fd?: number } } | null)?._handle?.fd;
      const own = typeof fd === 'number' && fd >= 0 ? identify(fd) : null;
      if (own === null) return null;
      const [dev, ino] = own.split(':');
      return `${dev}:${Number(ino) + 1}`;
    })];
    this.stdinPeerFd = release(this.stdinPeerFd);
    this.stdout = new OutputStream(child.stdout as Readable, this.bufferLimit, 'stdout');
    this.stderr = new OutputStream(child.stderr as Readable, this.bufferLimit, 'stderr');
  }

  /**
   * The descriptors the agent holds for the process's stdio (the agent-side
   * ends of its pipes, or the pty master), for a handover across an exec in
   * place; null where there is none (closed, or not yet attached).
   */
  descriptors(): { stdin: number | null; stdout: number | null; stderr: number | null; pty: number | null } {
    if (this.pty) return { stdin: null, stdout: null, stderr: null, pty: this.pty.masterFd };
    const fdOf = (stream: unknown) => {
      const fd = (stream as { _handle?: { fd?: number } } | null | undefined)?._handle?.fd;
      return typeof fd === 'number' && fd >= 0 ? fd : null;
    };
    const source = (out: OutputStream | undefined) => (out ? fdOf(out.sourceStream) : null);
    return { stdin: this.stdin ? fdOf(this.stdin) : this.stdinFd, stdout: source(this.stdout), stderr: source(this.stderr), pty: null };
  }

  /** The streams exist: the runtime was handed the stdio (attach), or it was taken over (adopted). */
  get attached(): boolean {
    return this.attached_;
  }

  /** Bytes of stdin accepted so far: the offset the next write starts at. */
  get written(): number {
    return this.written_;
  }

  /**
   * Refuses stdio use while the runtime is still starting the process (its
   * id is reserved before its streams exist): a retryable UNAVAILABLE, not a crash.
   */
  requireStarted(what: string): void {
    if (!this.attached_) throw new AgentError('unavailable', `${what}: the process is still being started; try again in a moment`);
  }

  snapshot(): StdioState {
    return { stdout: this.stdout.snapshot(), stderr: this.stderr.snapshot(), stdin: { written: this.written_ } };
  }

  /** Writes `data` after what was written before (v1's WriteStdin); resolves with its length once delivered. */
  async writeStdin(data: Buffer): Promise<number> {
    await this.writeStdinAt(this.written_, data);
    return data.length;
  }

  /**
   * Writes `data` as the stdin bytes from `offset` on, each byte once: at
   * `written` it is written; bytes before `written` were already applied (a
   * retried write) and are not written again, only the tail after them is;
   * past `written` is out of range (a gap). Resolves, with the offset after
   * `data`, once its bytes are delivered to the process (the pipe or the
   * terminal). Writes are delivered in the order they are accepted.
   */
  async writeStdinAt(offset: number, data: Buffer): Promise<number> {
    this.requireStarted('writing to stdin');
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw invalidArgument(`stdin offset ${offset} is not a byte offset (a non-negative integer)`);
    }
    const written = this.written_;
    if (offset > written) {
      throw outOfRange(`stdin offset ${offset} is past the input written so far (${written} bytes); write from ${written}`, {
        written: String(written),
      });
    }
    const after = offset + data.length;
    const fresh = after > written ? data.subarray(written - offset) : null;
    if (fresh) this.refuseClosedStdin();
    if (fresh) this.written_ = after;
    // Waits for the writes accepted before, then (if anything is new) delivers this one.
    const previous = this.stdinDone;
    const delivery = previous.then(() => {
      if (this.stdinFailure) throw this.stdinFailure;
      return fresh ? this.deliver(fresh) : undefined;
    });
    this.stdinDone = delivery.catch((err: unknown) => {
      this.stdinFailure ??= err instanceof Error ? err : new Error(String(err));
    });
    await delivery;
    return after;
  }

  private refuseClosedStdin(): void {
    if (this.pty) return;
    const stdin = this.stdin;
    const open = stdin ? !(stdin.writableEnded || stdin.destroyed) : this.stdinFd !== null;
    if (!open || this.stdinClosing) throw failedPrecondition('stdin is closed');
  }

  /** The stdin stream, made on first use from the agent's end of the pipe; null once closed. */
  private stdinStream(): Writable | null {
    if (!this.stdin && this.stdinFd !== null) {
      this.stdin = new net.Socket({ fd: this.stdinFd, readable: false, writable: true });
      this.stdinFd = null;
      // EPIPE when the process has closed stdin is reported on the write call.
      this.stdin.on('error', () => {});
    }
    return this.stdin;
  }

  private async deliver(data: Buffer): Promise<void> {
    if (this.pty) return this.pty.write(data);
    const stdin = this.stdinStream();
    if (!stdin || stdin.writableEnded || stdin.destroyed) throw failedPrecondition('stdin is closed');
    await new Promise<void>((resolve, reject) =>
      stdin.write(data, (err) => (err ? reject(failedPrecondition(`stdin write failed: ${err.message}`)) : resolve())),
    );
  }

  closeStdin(): void {
    this.requireStarted('closing stdin');
    // After every write accepted before it.
    const done = this.stdinDone;
    if (this.pty) {
      // End of input on a terminal is the EOF character, as if typed. A
      // terminal already closed has no input left to end: nothing to report.
      const pty = this.pty;
      this.stdinDone = done.then(() => pty.write(Buffer.from([4]))).catch(() => {});
      return;
    }
    this.stdinClosing = true;
    // Input never written has no stream: closing the agent's end is the end of input.
    void done.then(() => (this.stdin ? this.stdin.end() : (this.stdinFd = release(this.stdinFd))));
  }

  resize(columns: number, rows: number): void {
    this.requireStarted('resizing the terminal');
    if (!this.pty) throw failedPrecondition('the process has no terminal to resize');
    this.pty.resize(columns, rows);
  }

  /**
   * Pids of the processes (other than the agent) that hold this stdio as
   * their own: the process the runtime started and whatever it forked with
   * the same stdio. Nobody else has this terminal or these sockets, so this
   * finds a process whose pid the runtime failed to report. A pty slave is
   * matched exactly; pipes by the peer inodes guessed in attach(), and then
   * only a process holding two of them in place (fds 1 and 2, say), so a
   * wrong guess finds nobody rather than someone else. A /proc scan, for
   * failure paths only.
   */
  holders(): number[] {
    const wanted = this.terminal ? 1 : 2;
    if (this.peerEnds.filter((e) => e !== null).length < wanted) return [];
    const out: number[] = [];
    for (const name of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      let matches = 0;
      for (const fd of [0, 1, 2]) {
        try {
          // stat through the magic link: the open file itself, also across mount namespaces.
          const st = fs.statSync(`/proc/${name}/fd/${fd}`);
          if (this.peerEnds[fd] === `${st.dev}:${st.ino}`) matches++;
        } catch {
          // Gone, no such fd, or not ours to look at.
        }
      }
      if (matches >= wanted) out.push(Number(name));
    }
    return out;
  }

  /** Releases the agent's ends; unread output is dropped with them. */
  close(): void {
    this.pty?.close();
    this.stdin?.destroy();
    this.stdinFd = release(this.stdinFd);
    this.stdinPeerFd = release(this.stdinPeerFd);
  }
}

/** Closes a held fd, if any; null, for the field that held it. */
function release(fd: number | null): null {
  if (fd !== null) closeQuietly(fd);
  return null;
}

/** "dev:ino" of an open fd; null if it cannot be stat'ed. */
function identify(fd: number): string | null {
  try {
    const st = fs.fstatSync(fd);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}
