// The main job, for now on this machine: start the bundled agent in private
// namespaces, then drive a busybox container through it with agentctl and
// show each command with its output. (The guest issue moves this into a VM.)
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-demo-'));
const shared = path.join(dir, 'shared');
const rootfs = path.join(shared, 'busybox');
const sock = path.join(dir, 'agent.sock');
const addr = `unix://${sock}`;

// A busybox root file system: Debian's static busybox and its applet links.
for (const d of ['bin', 'proc', 'dev', 'tmp', 'etc']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
fs.chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
for (const a of execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter((x) => x && x !== 'busybox')) {
  fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
}

const spec = {
  ociVersion: '1.0.2',
  process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['sh', '-c', 'echo "hello from $(hostname)"; sleep 1000'], env: ['PATH=/bin'], cwd: '/' },
  root: { path: 'busybox', readonly: true },
  hostname: 'demo',
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['newinstance', 'ptmxmode=0666'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs' },
  ],
  linux: { namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }] },
};
const specFile = path.join(dir, 'config.json');
fs.writeFileSync(specFile, JSON.stringify(spec));

console.log('== starting the agent (bundled dist/agent.cjs) in a private mount and UTS namespace');
const agentArgs = [path.join(repo, 'dist/agent.cjs'), '--server-addr', addr, '--state-dir', path.join(dir, 'state'),
  '--shared-dir', shared, '--oci-runtime-arg=--cgroup-manager=disabled'];
const agent = spawn('unshare', ['-m', '-u', '--propagation', 'private', 'sh', '-c',
  `mount -t cgroup2 none /sys/fs/cgroup && exec ${[process.execPath, ...agentArgs].map((a) => `'${a}'`).join(' ')}`],
  { stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'agent.log'), 'w')] });
const cleanup = () => {
  try { agent.kill('SIGTERM'); } catch { /* gone */ }
  fs.rmSync(dir, { recursive: true, force: true });
};
process.on('exit', cleanup);

const ctl = (...args) => {
  console.log(`\n$ agentctl ${args.map((a) => (/[\s"{]/.test(a) ? `'${a}'` : a)).join(' ')}`);
  try {
    const out = execFileSync(process.execPath, [path.join(repo, 'dist/agentctl.cjs'), '--addr', addr, ...args], { encoding: 'utf8' });
    process.stdout.write(out);
  } catch (err) {
    process.stdout.write(err.stdout ?? '');
    throw new Error(`agentctl ${args[0]} failed`);
  }
};

for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
try {
  ctl('Negotiate');
  ctl('CreateSandbox', 'hostname=demo-sandbox', 'sandbox_id=demo');
  ctl('CreateContainer', 'container_id=web', 'exec_id=web', `oci_spec_json=@${specFile}`);
  ctl('StartContainer', 'container_id=web');
  ctl('ReadStdout', 'container_id=web', 'len=4096');
  ctl('ExecProcess', 'container_id=web', 'exec_id=ls', 'oci_process_json={"args":["sh","-c","ls /bin | wc -l; echo oops >&2; exit 3"]}');
  ctl('ReadStdout', 'container_id=web', 'exec_id=ls');
  ctl('ReadStderr', 'container_id=web', 'exec_id=ls');
  ctl('WaitProcess', 'container_id=web', 'exec_id=ls');
  ctl('ExecProcess', 'container_id=web', 'exec_id=tty', 'oci_process_json={"terminal":true,"args":["sh","-c","sleep 0.3; stty size"]}');
  ctl('TtyWinResize', 'container_id=web', 'exec_id=tty', 'row=40', 'column=132');
  ctl('ReadStdout', 'container_id=web', 'exec_id=tty');
  ctl('WaitProcess', 'container_id=web', 'exec_id=tty');
  ctl('ListProcesses', 'container_id=web');
  ctl('SignalProcess', 'container_id=web', 'signal=9');
  ctl('WaitProcess', 'container_id=web');
  ctl('RemoveContainer', 'container_id=web');
  ctl('GetMetrics');
  console.log('\n== demo finished: the container ran, was driven and removed through the agent');
} catch (err) {
  console.error(`\n${err.message}; agent log:\n${fs.readFileSync(path.join(dir, 'agent.log'), 'utf8').slice(-3000)}`);
  process.exitCode = 1;
}
