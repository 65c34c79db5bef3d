// The guest kernel: Debian's linux-image package, downloaded and unpacked
// into a cache — never installed on this machine. The compressed bzImage is
// unpacked to its ELF vmlinux, which QEMU boots directly (PVH) and faster.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });

function aptDownload(pkg, dir) {
  try {
    run('apt-get', ['download', pkg], { cwd: dir });
  } catch {
    // Package lists may be missing on a fresh machine.
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['download', pkg], { cwd: dir });
  }
  const deb = readdirSync(dir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${pkg} produced no .deb in ${dir}`);
  return path.join(dir, deb);
}

/** Unpacks vmlinux from a bzImage: the XZ stream after its magic bytes. */
function extractVmlinux(vmlinuz, out) {
  const data = readFileSync(vmlinuz);
  const magic = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
  const tail = `${out}.xz`;
  for (let at = data.indexOf(magic); at >= 0; at = data.indexOf(magic, at + 1)) {
    try {
      // From a file, not stdin: xz stops reading at the end of its stream, and
      // unread piped input makes the write fail (EPIPE) on newer Node.
      writeFileSync(tail, data.subarray(at));
      const elf = execFileSync('xz', ['-dc', '--single-stream', tail], { maxBuffer: 512 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] });
      if (elf.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
        writeFileSync(out, elf);
        rmSync(tail, { force: true });
        return;
      }
    } catch {
      // Not the stream we want; keep looking.
    }
  }
  rmSync(tail, { force: true });
  throw new Error(`no XZ-compressed ELF kernel found in ${vmlinuz}`);
}

/** Returns { version, vmlinux, modules } from the cache, fetching on first use. */
export function fetchKernel(cacheDir) {
  const marker = path.join(cacheDir, 'kernel.json');
  if (existsSync(marker)) return JSON.parse(readFileSync(marker, 'utf8'));
  const dl = path.join(cacheDir, 'download');
  rmSync(dl, { recursive: true, force: true });
  mkdirSync(dl, { recursive: true });
  // linux-image-amd64 is a meta package: its dependency is the real kernel.
  const meta = aptDownload('linux-image-amd64', dl);
  const dep = run('dpkg-deb', ['-f', meta, 'Depends']).split(',').map((s) => s.trim().split(' ')[0]).find((d) => d.startsWith('linux-image-'));
  if (!dep) throw new Error(`cannot tell the kernel package from ${meta}`);
  const deb = aptDownload(dep, dl);
  const tree = path.join(cacheDir, 'tree');
  rmSync(tree, { recursive: true, force: true });
  run('dpkg-deb', ['-x', deb, tree]);
  const version = readdirSync(path.join(tree, 'lib/modules'))[0];
  const vmlinux = path.join(cacheDir, 'vmlinux');
  extractVmlinux(path.join(tree, 'boot', `vmlinuz-${version}`), `${vmlinux}.tmp`);
  renameSync(`${vmlinux}.tmp`, vmlinux);
  const info = { version, package: dep, vmlinux, modules: path.join(tree, 'lib/modules', version) };
  rmSync(dl, { recursive: true, force: true });
  writeFileSync(marker, JSON.stringify(info, null, 2));
  return info;
}
