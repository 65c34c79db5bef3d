// A minimal writer of "newc" cpio archives, the format the kernel unpacks
// as an initramfs. Entries: directories, files and symlinks, owned by root.
import { readFileSync } from 'node:fs';

const hex = (n) => n.toString(16).padStart(8, '0');
const pad4 = (n) => Buffer.alloc((4 - (n % 4)) % 4);

export class CpioWriter {
  parts = [];
  ino = 1;

  add(name, mode, data = Buffer.alloc(0)) {
    const nameBuf = Buffer.from(`${name}\0`);
    const header = '070701' + [this.ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBuf.length, 0].map(hex).join('');
    this.parts.push(Buffer.from(header), nameBuf, pad4(110 + nameBuf.length), data, pad4(data.length));
  }

  dir(name) { this.add(name, 0o040755); }
  file(name, source, mode = 0o100644) { this.add(name, mode, Buffer.isBuffer(source) ? source : readFileSync(source)); }
  symlink(name, target) { this.add(name, 0o120777, Buffer.from(target)); }

  finish() {
    this.add('TRAILER!!!', 0);
    return Buffer.concat(this.parts);
  }
}
