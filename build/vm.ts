// The VM launcher: boots dist/guest/ (vmlinux, initrd.img, rootfs.img) in
// QEMU with the agent as PID 1 — KVM only where a probe boot shows KVM can run
// this guest (accel.ts), TCG otherwise.
// The agent channel is vsock where the host has /dev/vhost-vsock, otherwise
// a virtio-serial port named agent.channel.0 (the Kata name) exposed as a
// unix socket here. A 9p share carries container root file systems and
// bundles; the console goes to a log file.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chooseAccel, type Accel, type AccelChoice } from './accel';

export const REPO = path.resolve(__dirname, '..');
export const GUEST_DIR = path.join(REPO, 'dist', 'guest');

/** Kernel options measured to boot fastest under TCG (docs/machine-facts.md). The image loads its own boot modules. */
export const KERNEL_ARGS = [
  'console=ttyS0', 'panic=-1', 'quiet', 'mitigations=off', 'tsc=reliable', 'no_timer_check', 'i8042.noaux',
  'i8042.nokbd', 'i8042.nopnp', 'i8042.dumbkbd', '8250.nr_uarts=1', 'random.trust_cpu=on', 'nokaslr',
  // The crypto manager's self-tests of every algorithm: ~0.5 s of a TCG boot (bench/guest.ts).
  'cryptomgr.notests',
  // With transparent huge pages on, the kernel keeps 44 MB of a 1 GiB guest free as a reserve
  // (min_free_kbytes raised for them): guest memory in use 171 -> 78 MB (docs/machine-facts.md).
  'transparent_hugepage=never',
];

/** The 9p mount tag of the shared directory (Kata's name). */
export const SHARE_TAG = 'kataShared';

export interface VmOptions {
  /** Host directory shared with the guest over 9p; none by default. */
  sharedDir?: string;
  memoryMiB?: number;
  cpus?: number;
  /** Extra kernel command-line items, e.g. agent.log_level=debug. */
  kernelArgs?: string[];
  /**
   * The whole kernel command line instead of ours (KERNEL_ARGS + kernelArgs):
   * how another launcher would boot the image, e.g. ['console=ttyS0', 'panic=-1'].
   */
  cmdline?: string[];
  /** A virtio-net device on QEMU user networking (restricted: no way out of this host). */
  network?: boolean;
  /** Forward 127.0.0.1:hostPort to guestPort (needs network). */
  forward?: { hostPort: number; guestPort: number };
  /** Where the work files (sockets, console log) go; a temp dir by default. */
  workDir?: string;
  /** Raw disk images attached as further virtio-blk devices (/dev/vdb, /dev/vdc, ... in the guest). */
  disks?: string[];
  /** 'kvm' or 'tcg' instead of the probe's choice (the environment's AGENT_VM_ACCEL does the same). */
  accel?: Accel;
  /** Called with the accelerator chosen and why, before QEMU starts; default: a line on stderr. */
  onAccel?: (choice: AccelChoice) => void;
  /**
   * 'disk' (default): the small initramfs and the read-only root image on virtio-blk.
   * 'initramfs': the fallback without a root disk (initrd-full.img); extra disks start at /dev/vda.
   */
  root?: 'disk' | 'initramfs';
}

export interface Vm {
  pid: number;
  /** The accelerator QEMU runs with, and why it was chosen. */
  accel: AccelChoice;
  /** Agent address on this host: unix://SOCKET of the serial channel (or vsock://CID:1024). */
  agentAddr: string;
  consoleLog: string;
  workDir: string;
  console(): string;
  /** Resolves when the console shows `pattern`; rejects on timeout or QEMU exit. */
  waitForConsole(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** QEMU's exit code once it has exited. */
  exited: Promise<number | null>;
  /** Kills QEMU (by its pid) if it still runs, and removes the work dir. */
  stop(): Promise<void>;
}

export function qemuArgs(o: VmOptions & { workDir: string; channel: string; console: string; chosen: AccelChoice }): string[] {
  const guest = (f: string) => {
    const p = path.join(GUEST_DIR, f);
    if (!fs.existsSync(p)) throw new Error(`${p} is missing: run npm run build:image`);
    return p;
  };
  const hasVhostVsock = fs.existsSync('/dev/vhost-vsock');
  const append = o.cmdline ?? [...KERNEL_ARGS, ...(o.kernelArgs ?? [])];
  const args = [
    '-machine', 'q35', '-accel', o.chosen.accel, '-cpu', o.chosen.cpu, '-m', `${o.memoryMiB ?? 1024}M`, '-smp', String(o.cpus ?? 2),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-kernel', guest('vmlinux'), '-initrd', guest(o.root === 'initramfs' ? 'initrd-full.img' : 'initrd.img'), '-append', append.join(' '),
    '-chardev', `file,id=con0,path=${o.console}`, '-serial', 'chardev:con0',
    '-device', 'virtio-rng-pci',
    '-device', 'virtio-serial-pci',
    '-chardev', `socket,id=ch0,path=${o.channel},server=on,wait=off`,
    '-device', 'virtserialport,chardev=ch0,name=agent.channel.0',
  ];
  if (o.root !== 'initramfs') {
    args.push('-drive', `file=${guest('rootfs.img')},if=none,id=root,format=raw,readonly=on`, '-device', 'virtio-blk-pci,drive=root');
  }
  if (hasVhostVsock) args.push('-device', 'vhost-vsock-pci,guest-cid=3');
  for (const [i, disk] of (o.disks ?? []).entries()) {
    args.push('-drive', `file=${disk},if=none,id=disk${i},format=raw`, '-device', `virtio-blk-pci,drive=disk${i}`);
  }
  if (o.sharedDir) {
    args.push('-fsdev', `local,id=fs0,path=${o.sharedDir},security_model=none`, '-device', `virtio-9p-pci,fsdev=fs0,mount_tag=${SHARE_TAG}`);
  }
  if (o.network) {
    const fwd = o.forward ? `,hostfwd=tcp:127.0.0.1:${o.forward.hostPort}-:${o.forward.guestPort}` : '';
    args.push('-netdev', `user,id=n0,restrict=on${fwd}`, '-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56');
  }
  return args;
}

export async function startVm(options: VmOptions = {}): Promise<Vm> {
  const workDir = options.workDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'agent-vm-'));
  fs.mkdirSync(workDir, { recursive: true });
  const channel = path.join(workDir, 'agent.channel.0.sock');
  const consoleLog = path.join(workDir, 'console.log');
  fs.writeFileSync(consoleLog, '');
  const accel = await chooseAccel({ override: options.accel });
  (options.onAccel ?? ((c) => process.stderr.write(`vm: ${c.accel} (-cpu ${c.cpu}): ${c.reason}\n`)))(accel);
  const args = qemuArgs({ ...options, workDir, channel, console: consoleLog, chosen: accel });
  const child: ChildProcess = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  const readConsole = () => fs.readFileSync(consoleLog, 'utf8');

  // QEMU creates the channel socket at start-up.
  for (let i = 0; i < 200 && !fs.existsSync(channel); i++) {
    if (done) throw new Error(`QEMU exited at start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    pid: child.pid!,
    accel,
    agentAddr: `unix://${channel}`,
    consoleLog,
    workDir,
    console: readConsole,
    exited,
    async waitForConsole(pattern, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const text = readConsole();
        if (pattern.test(text)) return text;
        if (done) throw new Error(`QEMU exited before the console showed ${pattern}:\n${text.slice(-3000)}\n${stderr}`);
        if (Date.now() > deadline) throw new Error(`console did not show ${pattern} within ${timeoutMs} ms:\n${text.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
      if (!options.workDir) fs.rmSync(workDir, { recursive: true, force: true });
    },
  };
}
