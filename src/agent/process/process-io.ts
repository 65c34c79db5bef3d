// The stdio of one container process: pipes, or a pass-through pty. The
// agent owns the agent-side ends for the whole life of the process, so output
// survives the OCI runtime's exit and is kept (bounded) until read.
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { failedPrecondition } from '../errors';
import { OutputBuffer } from '../stdio/output-buffer';
import { Pty } from '../stdio/pty';

export class ProcessIO {
  stdout!: OutputBuffer;
  stderr!: OutputBuffer;
  private stdin: Writable | null = null;
  private readonly pty: Pty | null;

  private constructor(
    readonly terminal: boolean,
    private readonly bufferLimit: number,
  ) {
    this.pty = terminal ? new Pty() : null;
  }

  static pipes(bufferLimit: number): ProcessIO {
    return new ProcessIO(false, bufferLimit);
  }

  static terminal(bufferLimit: number): ProcessIO {
    return new ProcessIO(true, bufferLimit);
  }

  /** The stdio option for spawning the runtime that starts this process. */
  spawnStdio(): StdioOptions {
    if (this.pty) return [this.pty.slaveFd, this.pty.slaveFd, this.pty.slaveFd];
    return ['pipe', 'pipe', 'pipe'];
  }

  /** Takes over the agent-side ends once the runtime has been spawned. */
  attach(child: ChildProcess): void {
    if (this.pty) {
      this.pty.closeSlave();
      this.stdout = new OutputBuffer(this.pty.output, this.bufferLimit);
      // A terminal has one output stream; stderr is empty from the start.
      const none = new PassThrough();
      none.end();
      this.stderr = new OutputBuffer(none, this.bufferLimit);
      return;
    }
    this.stdin = child.stdin;
    // Node destroys a child's stdin when that child exits, but the child here
    // is the runtime, which exits at once; the container process keeps reading.
    child.stdin = null;
    // EPIPE when the process has closed stdin is reported on the write call.
    this.stdin!.on('error', () => {});
    this.stdout = new OutputBuffer(child.stdout as Readable, this.bufferLimit);
    this.stderr = new OutputBuffer(child.stderr as Readable, this.bufferLimit);
  }

  async writeStdin(data: Buffer): Promise<number> {
    if (this.pty) {
      await this.pty.write(data);
      return data.length;
    }
    const stdin = this.stdin;
    if (!stdin || stdin.writableEnded || stdin.destroyed) {
      throw failedPrecondition('stdin is closed');
    }
    await new Promise<void>((resolve, reject) =>
      stdin.write(data, (err) => (err ? reject(failedPrecondition(`stdin write failed: ${err.message}`)) : resolve())),
    );
    return data.length;
  }

  closeStdin(): void {
    if (this.pty) {
      // End of input on a terminal is the EOF character, as if typed. A
      // terminal already closed has no input left to end: nothing to report.
      this.pty.write(Buffer.from([4])).catch(() => {});
      return;
    }
    this.stdin?.end();
  }

  resize(columns: number, rows: number): void {
    if (!this.pty) throw failedPrecondition('the process has no terminal to resize');
    this.pty.resize(columns, rows);
  }

  /** Releases the agent's ends; unread output is dropped with them. */
  close(): void {
    this.pty?.close();
    this.stdin?.destroy();
  }
}
