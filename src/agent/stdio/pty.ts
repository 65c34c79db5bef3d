// Pseudo-terminals for TTY processes, allocated with node-pty's native
// module (pty.node; only its open() and resize() are used, not node-pty's JS). node-pty's spawn() ties the terminal's life to its direct child,
// but our direct child is the OCI runtime, which exits as soon as the
// container process runs. So the agent allocates the pty itself and hands
// the slave to the runtime ("pass-through" terminal, as runc calls it).
// This is the only module that reaches into node-pty's internals.
import fs from 'node:fs';
import tty from 'node:tty';
import { failedPrecondition } from '../errors';
import { loadAddon } from '../../native/addon-loader';

interface NativePty {
  open(cols: number, rows: number): { master: number; slave: number; pty: string };
  resize(fd: number, cols: number, rows: number): void;
}

let nativePty: NativePty | undefined;
function load(): NativePty {
  nativePty ??= loadAddon<NativePty>('pty.node');
  return nativePty;
}

export class Pty {
  readonly output: tty.ReadStream;
  private slave: number | null;
  private closed = false;

  constructor(cols = 80, rows = 24, adopted?: number) {
    if (adopted !== undefined) {
      // A master taken over from an earlier agent image: its slave is the process's alone.
      this.slave = null;
      this.masterFd = adopted;
    } else {
      const { master, slave } = load().open(cols, rows);
      this.slave = slave;
      this.masterFd = master;
    }
    this.output = new tty.ReadStream(this.masterFd);
  }

  /** The pty whose master is `fd`, handed over across an exec in place. */
  static adopt(fd: number): Pty {
    return new Pty(0, 0, fd);
  }

  readonly masterFd: number;

  /** The slave end, to pass as stdio to the runtime; close it once spawned. */
  get slaveFd(): number {
    if (this.slave === null) throw new Error('pty slave already closed');
    return this.slave;
  }

  /** Closes the agent's copy of the slave, so end of output can be seen. */
  closeSlave(): void {
    if (this.slave !== null) fs.closeSync(this.slave);
    this.slave = null;
  }

  resize(cols: number, rows: number): void {
    this.requireOpen('resize it');
    load().resize(this.masterFd, cols, rows);
  }

  /** Writes everything, waiting while the terminal's input queue is full. */
  async write(data: Buffer): Promise<void> {
    let off = 0;
    while (off < data.length) {
      // Checked before every attempt, including after each wait: once closed,
      // the master's fd number can already belong to another file.
      this.requireOpen(off === 0 ? 'write to it' : `write the remaining ${data.length - off} of ${data.length} bytes`);
      try {
        off += fs.writeSync(this.masterFd, data, off);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }

  private requireOpen(what: string): void {
    if (this.closed) {
      throw failedPrecondition(`the terminal is closed (its process exited or was removed): cannot ${what}`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeSlave();
    this.output.destroy(); // closes the master fd
  }
}
