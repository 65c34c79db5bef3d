// Which accelerator QEMU can really use here. A /dev/kvm that opens is not
// proof: on some machines of this kind KVM answers its API version yet QEMU
// aborts at once with `-cpu max`/`-cpu host` (an MSR it cannot set), or starts
// and never runs the guest (docs/machine-facts.md, "KVM"). So KVM is chosen
// only after a probe boot of our own kernel under KVM prints the kernel's
// first console line within a few seconds; otherwise TCG, with the reason.
// The answer is cached per host boot (and per QEMU and kernel file), so a test
// run pays for the probe once.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type Accel = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: Accel;
  /** The -cpu model that goes with it: host for KVM, max for TCG. */
  cpu: string;
  /** Why: the override, the missing device, or what the probe saw. */
  reason: string;
}

const REPO = path.resolve(__dirname, '..');
const CACHE_FILE = path.join(REPO, '.cache', 'accel-probe.json');
const KERNEL = path.join(REPO, 'dist', 'guest', 'vmlinux');
const QEMU = 'qemu-system-x86_64';
/** A working KVM guest prints its banner well within a second; TCG on a loaded machine takes ~2 s. */
const PROBE_TIMEOUT_MS = 8000;

const tcg = (reason: string): AccelChoice => ({ accel: 'tcg', cpu: 'max', reason });
const kvm = (reason: string): AccelChoice => ({ accel: 'kvm', cpu: 'host', reason });

export interface ChooseOptions {
  /** From VmOptions.accel; the environment's AGENT_VM_ACCEL when absent. */
  override?: Accel;
  env?: NodeJS.ProcessEnv;
  /** For tests: skip the cache. */
  noCache?: boolean;
}

export async function chooseAccel(options: ChooseOptions = {}): Promise<AccelChoice> {
  const env = options.env ?? process.env;
  const wanted = options.override ?? parseOverride(env.AGENT_VM_ACCEL);
  if (wanted === 'tcg') return tcg(options.override ? 'asked for by the caller' : 'AGENT_VM_ACCEL=tcg');
  if (wanted === 'kvm') return kvm(options.override ? 'asked for by the caller' : 'AGENT_VM_ACCEL=kvm (no probe)');
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    return tcg(`no usable /dev/kvm (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const key = cacheKey();
  if (!options.noCache && key) {
    const cached = readCache(key);
    if (cached) return { ...cached, reason: `${cached.reason} (probed earlier this boot)` };
  }
  const choice = await probeKvm();
  if (key) writeCache(key, choice);
  return choice;
}

function parseOverride(value: string | undefined): Accel | undefined {
  if (value === undefined || value === '' || value === 'auto') return undefined;
  if (value === 'kvm' || value === 'tcg') return value;
  throw new Error(`AGENT_VM_ACCEL=${JSON.stringify(value)} is not kvm, tcg or auto`);
}

/** Boots our kernel alone under KVM (it panics without a root, which is fine) and waits for its banner. */
export async function probeKvm(kernel = KERNEL, timeoutMs = PROBE_TIMEOUT_MS): Promise<AccelChoice> {
  if (!fs.existsSync(kernel)) return tcg(`cannot probe KVM: ${kernel} is missing`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'accel-probe-'));
  const consoleFile = path.join(dir, 'console.log');
  fs.writeFileSync(consoleFile, '');
  const args = [
    '-machine', 'q35', '-accel', 'kvm', '-cpu', 'host', '-m', '256M', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-kernel', kernel, '-append', 'console=ttyS0 panic=-1 earlyprintk=ttyS0',
    '-serial', `file:${consoleFile}`,
  ];
  const child = spawn(QEMU, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  let exit: { code: number | null; signal: string | null } | null = null;
  child.once('exit', (code, signal) => (exit = { code, signal }));
  child.once('error', (err) => (stderr += err.message));
  const started = Date.now();
  try {
    for (;;) {
      if (/Linux version/.test(fs.readFileSync(consoleFile, 'utf8'))) {
        return kvm(`a probe boot under KVM printed the kernel banner after ${Date.now() - started} ms`);
      }
      if (exit) {
        const first = stderr.split('\n').map((l) => l.trim()).find(Boolean) ?? `exit code ${String((exit as { code: number | null }).code)}`;
        return tcg(`QEMU with KVM failed at once: ${first.slice(0, 300)}`);
      }
      if (Date.now() - started > timeoutMs) {
        return tcg(`QEMU with KVM showed no kernel output within ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    if (!exit && child.pid !== undefined) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** This host boot, this QEMU, this kernel: a changed one invalidates the cached answer. */
function cacheKey(): string | null {
  try {
    const bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stamp = (p: string) => {
      const s = fs.statSync(p);
      return `${s.size}:${s.mtimeMs}`;
    };
    const qemuPath = ['/usr/bin', '/usr/local/bin'].map((d) => path.join(d, QEMU)).find((p) => fs.existsSync(p));
    return [bootId, qemuPath ? stamp(qemuPath) : 'no-qemu', fs.existsSync(KERNEL) ? stamp(KERNEL) : 'no-kernel'].join('|');
  } catch {
    return null;
  }
}

function readCache(key: string): AccelChoice | null {
  try {
    const c = JSON.parse(fs.readFileSync(CACHE_FILE, 'utf8')) as { key: string; choice: AccelChoice };
    return c.key === key ? c.choice : null;
  } catch {
    return null;
  }
}

function writeCache(key: string, choice: AccelChoice): void {
  try {
    fs.mkdirSync(path.dirname(CACHE_FILE), { recursive: true });
    fs.writeFileSync(`${CACHE_FILE}.tmp`, JSON.stringify({ key, choice }));
    fs.renameSync(`${CACHE_FILE}.tmp`, CACHE_FILE);
  } catch {
    // Only a cache: the next run probes again.
  }
}
