// Builds the guest: dist/guest/vmlinux (kernel), dist/guest/initrd.img (a
// small busybox initramfs that loads the block and ext4 modules and switches
// to the root image), dist/guest/rootfs.img (a read-only ext4 image with
// the agent as /sbin/init, crun, iproute2 and the kernel modules the agent
// loads at boot) and dist/guest/initrd-full.img (the fallback for guests
// without a root disk: the same tree as one initramfs). Root on virtio-blk rather than everything in an initramfs:
// the ~100 MiB runtime is then page cache the guest can drop, not pinned
// RAM, and crun gets a real pivot_root.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CpioWriter } from './cpio.mjs';
import { fetchKernel } from './kernel.mjs';
import { moduleName, moduleTable, resolveModules } from './modules.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(repo, 'dist', 'guest');
const cache = path.join(repo, '.cache', 'guest');

/** Loaded by the initramfs to reach the root file system. */
export const INITRAMFS_MODULES = ['virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4'];
/**
 * Shipped in the root image. The agent loads its default boot set at boot
 * (DEFAULT_KERNEL_MODULES in src/agent/config.ts) unless agent.kernel_modules
 * names others; CreateSandbox may load any of them.
 */
export const ROOT_MODULES = [
  'virtio_pci', 'virtio_console', 'virtio_net', 'virtio_rng', 'vsock', 'vsock_loopback', 'vmw_vsock_virtio_transport',
  '9p', '9pnet_virtio', 'overlay', 'virtiofs', 'virtio_blk', 'ext4', 'veth',
];
/** Programs the agent runs, with their shared libraries. */
const ROOT_PROGRAMS = { '/usr/bin/crun': '/usr/bin/crun', '/usr/sbin/ip': '/usr/sbin/ip' };
const BUSYBOX = '/bin/busybox';

const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', ...opts });

function libraryClosure(binaries) {
  const libs = new Set();
  for (const bin of binaries) {
    for (const line of sh('ldd', [bin]).split('\n')) {
      const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
      if (m) libs.add(m[1]);
    }
  }
  return [...libs];
}

function copyInto(root, file, target = file) {
  const dest = path.join(root, target);
  mkdirSync(path.dirname(dest), { recursive: true });
  copyFileSync(file, dest);
  chmodSync(dest, statSync(file).mode & 0o7777);
}

function busyboxLinks(root, dir) {
  for (const applet of sh(BUSYBOX, ['--list']).split('\n').filter((a) => a && a !== 'busybox')) {
    const link = path.join(root, dir, applet);
    if (!existsSync(link)) symlinkSync('busybox', link);
  }
}

function buildRootTree(kernel, table, agentDir) {
  const root = path.join(cache, 'root');
  rmSync(root, { recursive: true, force: true });
  for (const d of ['bin', 'sbin', 'etc', 'proc', 'sys', 'dev', 'run', 'tmp', 'mnt', 'root', 'var/tmp', 'usr/lib/agent', 'lib64']) {
    mkdirSync(path.join(root, d), { recursive: true });
  }
  // The agent, its addons beside it, and init pointing at it.
  copyInto(root, path.join(agentDir, 'agent'), '/usr/bin/agent');
  for (const addon of ['agent_native.node', 'pty.node']) copyInto(root, path.join(agentDir, addon), `/usr/lib/agent/${addon}`);
  symlinkSync('../usr/bin/agent', path.join(root, 'sbin/init'));
  for (const [from, to] of Object.entries(ROOT_PROGRAMS)) copyInto(root, from, to);
  for (const lib of libraryClosure([path.join(agentDir, 'agent'), ...Object.keys(ROOT_PROGRAMS)])) copyInto(root, lib);
  // busybox: a shell and tools for debugging the guest; never needed by the agent itself.
  copyInto(root, BUSYBOX, '/bin/busybox');
  busyboxLinks(root, 'bin');
  writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n');
  writeFileSync(path.join(root, 'etc/hosts'), '127.0.0.1 localhost\n::1 localhost\n');
  // The agent's default policy (agent.policy= names another; docs/security.md).
  copyInto(root, path.join(repo, 'rootfs', 'policy', 'default.json'), '/etc/agent/policy.json');
  copyInto(root, path.join(repo, 'rootfs', 'policy', 'allow-all.json'), '/etc/agent/policy-allow-all.json');
  symlinkSync('/proc/self/mounts', path.join(root, 'etc/mtab'));
  // The sandbox's DNS settings are written under /run (the root is read-only).
  symlinkSync('/run/agent/sandbox/resolv.conf', path.join(root, 'etc/resolv.conf'));
  // Kernel modules, and depmod's index of just these.
  const modRoot = path.join(root, 'lib/modules', kernel.version);
  for (const file of resolveModules(table, ROOT_MODULES)) copyInto(root, path.join(kernel.modules, file), path.join('/lib/modules', kernel.version, file));
  for (const f of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
    if (existsSync(path.join(kernel.modules, f))) copyFileSync(path.join(kernel.modules, f), path.join(modRoot, f));
  }
  sh('depmod', ['-b', root, kernel.version]);
  return root;
}

function buildRootImage(root) {
  const image = path.join(out, 'rootfs.img');
  const usedKiB = Number(sh('du', ['-sk', root]).split('\t')[0]);
  const sizeMiB = Math.ceil((usedKiB * 1.1) / 1024) + 32;
  rmSync(image, { force: true });
  // -d fills the file system from the directory: no loop mount, no root needed for mounting.
  sh('mkfs.ext4', ['-q', '-F', '-L', 'agent-root', '-O', '^has_journal', '-E', 'root_owner=0:0', '-d', root, image, `${sizeMiB}M`]);
  return { image, sizeMiB };
}

const INIT_SCRIPT = `#!/bin/busybox sh
# Stage one: load the block and ext4 modules, mount the root image read-only
# and hand over to the agent (/sbin/init on the root image) with switch_root.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Where the boot's time goes (bench/guest.ts reads these two lines).
echo "initramfs: started at uptime $(cut -d' ' -f1 /proc/uptime) s" > /dev/console
for m in $(cat /modules/order); do insmod /modules/$m.ko 2>/dev/null; done
root=$(sed -n 's/.*agent\\.root=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
root=\${root:-/dev/vda}
i=0
while [ ! -b "$root" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
if ! mount -t ext4 -o ro "$root" /newroot; then
  echo "initramfs: cannot mount the root image $root; powering off" > /dev/console
  poweroff -f
fi
echo "initramfs: root $root mounted at uptime $(cut -d' ' -f1 /proc/uptime) s" > /dev/console
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
`;

const FULL_INIT_SCRIPT = `#!/bin/busybox sh
# The initramfs-only fallback, for guests without a root disk: the whole root
# tree is in this archive. crun cannot pivot_root out of an initramfs, so copy
# it into a tmpfs and switch_root there (switch_root frees the initramfs).
export PATH=/bin
mount -t tmpfs -o mode=0755 tmpfs /newroot
for entry in /*; do
  case "$entry" in /newroot|/init|/proc|/sys|/dev) ;; *) cp -a "$entry" /newroot/ ;; esac
done
mkdir -p /newroot/proc /newroot/sys /newroot/dev
exec switch_root /newroot /sbin/init
`;

/** The fallback image: the root tree and FULL_INIT_SCRIPT in one initramfs. */
function buildFullInitramfs(root) {
  const cpio = new CpioWriter();
  cpio.tree(root);
  cpio.dir('newroot');
  cpio.file('init', Buffer.from(FULL_INIT_SCRIPT), 0o100755);
  const initrd = path.join(out, 'initrd-full.img');
  writeFileSync(initrd, cpio.finish());
  return initrd;
}

function buildInitramfs(kernel, table) {
  const cpio = new CpioWriter();
  for (const d of ['bin', 'dev', 'proc', 'sys', 'newroot', 'modules']) cpio.dir(d);
  cpio.file('bin/busybox', BUSYBOX, 0o100755);
  cpio.file('init', Buffer.from(INIT_SCRIPT), 0o100755);
  const files = resolveModules(table, INITRAMFS_MODULES);
  for (const f of files) cpio.file(`modules/${moduleName(f)}.ko`, path.join(kernel.modules, f));
  cpio.file('modules/order', Buffer.from(files.map(moduleName).join('\n') + '\n'));
  const initrd = path.join(out, 'initrd.img');
  // Uncompressed: under TCG, decompressing costs more than reading.
  writeFileSync(initrd, cpio.finish());
  return { initrd, modules: files.map(moduleName) };
}

const agentDir = out;
if (!existsSync(path.join(agentDir, 'agent'))) throw new Error('dist/guest/agent is missing: run node build/sea.mjs first');
mkdirSync(out, { recursive: true });
const kernel = fetchKernel(cache);
const table = moduleTable(kernel);
copyFileSync(kernel.vmlinux, path.join(out, 'vmlinux'));
const root = buildRootTree(kernel, table, agentDir);
const { image, sizeMiB } = buildRootImage(root);
const { initrd, modules } = buildInitramfs(kernel, table);
const initrdFull = buildFullInitramfs(root);
writeFileSync(path.join(out, 'image.json'), JSON.stringify({ kernel: kernel.version, rootModules: ROOT_MODULES, initramfsModules: modules }, null, 2));

const mib = (f) => `${(statSync(f).size / 1048576).toFixed(1)} MiB`;
console.log(`guest image in ${path.relative(repo, out)}/ (kernel ${kernel.version} from ${kernel.package}):
  vmlinux      ${mib(path.join(out, 'vmlinux'))}  ELF kernel, booted directly (PVH)
  initrd.img   ${mib(initrd)}  busybox + ${modules.join(' ')}
  rootfs.img   ${mib(image)}  ext4, read-only, ${sizeMiB} MiB file system:
               /sbin/init -> /usr/bin/agent (${mib(path.join(agentDir, 'agent'))}, Node SEA), /usr/lib/agent/{agent_native,pty}.node,
               crun, ip (iproute2) and their libraries, busybox, ${ROOT_MODULES.length} kernel modules with dependencies
  initrd-full.img ${mib(initrdFull)}  fallback without a root disk: the same tree, copied to a tmpfs at boot`);
