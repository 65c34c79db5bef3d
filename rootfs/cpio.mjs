// A minimal writer of "newc" cpio archives, the format the kernel unpacks
// as an initramfs. Entries: directories, files and symlinks, owned by root.
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';

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

  /** Everything below `dir`, as it is on disk (modes kept, owners root), under `prefix`. */
  tree(dir, prefix = '') {
    for (const name of readdirSync(dir).sort()) {
      const full = path.join(dir, name);
      const entry = prefix ? `${prefix}/${name}` : name;
      const st = lstatSync(full);
      if (st.isSymbolicLink()) this.symlink(entry, readlinkSync(full));
      else if (st.isDirectory()) {
        this.add(entry, 0o040000 | (st.mode & 0o7777));
        this.tree(full, entry);
      } else if (st.isFile()) this.file(entry, full, 0o100000 | (st.mode & 0o7777));
    }
  }

  finish() {
    this.add('TRAILER!!!', 0);
    return Buffer.concat(this.parts);
  }
}
