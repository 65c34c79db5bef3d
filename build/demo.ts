// The main job: build the guest image, boot it in QEMU with the agent as
// PID 1, drive a container through the agent with agentctl over the
// virtio-serial channel, and show each command with what it printed.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBusyboxRootfs } from '../test/helpers/rootfs';
import { REPO, SHARE_TAG, startVm } from './vm';

const AGENTCTL = path.join(REPO, 'dist', 'agentctl.cjs');

async function demo(): Promise<void> {
  const shared = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-demo-'));
  makeBusyboxRootfs(path.join(shared, 'busybox'));
  const spec = {
    ociVersion: '1.0.2',
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['sh', '-c', 'echo "hello from $(hostname), pid $$"; exec sleep 1000'], env: ['PATH=/bin'], cwd: '/' },
    root: { path: 'busybox', readonly: true },
    hostname: 'web',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['newinstance', 'ptmxmode=0666'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs' },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }, { type: 'cgroup' }],
      cgroupsPath: '/agent/web',
      resources: { memory: { limit: 134217728 }, pids: { limit: 100 } },
    },
  };
  const specFile = path.join(shared, 'web.json');
  fs.writeFileSync(specFile, JSON.stringify(spec));

  console.log('== booting the guest in QEMU: kernel + initramfs + read-only root image, agent as PID 1');
  const t0 = Date.now();
  const vm = await startVm({
    sharedDir: shared,
    network: true,
    onAccel: (c) => console.log(`   accelerator: ${c.accel} (-cpu ${c.cpu}) because ${c.reason}`),
  });
  try {
    await vm.waitForConsole(/"msg":"announce"/, 120_000);
    console.log(`   agent announced itself ${Date.now() - t0} ms after QEMU started; channel ${vm.agentAddr}`);

    const ctl = (...args: string[]) => {
      console.log(`\n$ agentctl ${args.map((a) => (/[\s"{]/.test(a) ? `'${a}'` : a)).join(' ')}`);
      try {
        process.stdout.write(execFileSync(process.execPath, [AGENTCTL, '--addr', vm.agentAddr, ...args], { encoding: 'utf8' }));
      } catch (err) {
        process.stdout.write((err as { stdout?: string }).stdout ?? '');
        throw new Error(`agentctl ${args[0]} failed`);
      }
    };

    ctl('Negotiate');
    ctl('CreateSandbox', 'hostname=demo-vm', 'sandbox_id=demo',
      `storages=[{"driver":"9p","source":"${SHARE_TAG}","fstype":"9p","mount_point":"/run/kata-containers/shared/containers"}]`);
    ctl('CreateContainer', 'container_id=web', 'exec_id=web', `oci_spec_json=@${specFile}`);
    ctl('StartContainer', 'container_id=web');
    ctl('ReadStdout', 'container_id=web', 'len=4096');
    ctl('ExecProcess', 'container_id=web', 'exec_id=ls', 'oci_process_json={"args":["sh","-c","ls /bin | wc -l; echo oops >&2; exit 3"]}');
    // v2: output as a stream from a byte offset (v1 polls with ReadStdout, as for the tty below).
    ctl('attach', 'web', 'ls', '--offset', '0');
    ctl('attach', 'web', 'ls', '--stream', 'stderr');
    ctl('WaitProcess', 'container_id=web', 'exec_id=ls');
    ctl('ExecProcess', 'container_id=web', 'exec_id=tty', 'oci_process_json={"terminal":true,"args":["sh","-c","sleep 1; stty size"]}');
    ctl('TtyWinResize', 'container_id=web', 'exec_id=tty', 'row=40', 'column=132');
    ctl('ReadStdout', 'container_id=web', 'exec_id=tty');
    ctl('WaitProcess', 'container_id=web', 'exec_id=tty');
    ctl('StatsContainer', 'container_id=web');
    ctl('PauseContainer', 'container_id=web');
    ctl('ResumeContainer', 'container_id=web');
    ctl('ListProcesses', 'container_id=web');
    // v2: a snapshot of everything, to re-attach to after a restart.
    ctl('ListContainers');
    ctl('ListInterfaces');
    ctl('SignalProcess', 'container_id=web', 'exec_id=web', 'signal=9');
    ctl('WaitProcess', 'container_id=web', 'exec_id=web');
    ctl('RemoveContainer', 'container_id=web');
    // v2: every event since the first, from a cursor.
    ctl('watch', '--after', '0', '--count', '10');
    ctl('DestroySandbox');
    const code = await Promise.race([vm.exited, new Promise((r) => setTimeout(() => r('still running'), 30_000))]);
    console.log(`\n== DestroySandbox: the agent synced and powered the VM off; QEMU exited with ${String(code)}`);
    console.log(`   ${Date.now() - t0} ms from QEMU start to power-off`);
  } catch (err) {
    console.error(`\n${(err as Error).message}; guest console (last lines):\n${vm.console().slice(-4000)}`);
    process.exitCode = 1;
  } finally {
    await vm.stop();
    fs.rmSync(shared, { recursive: true, force: true });
  }
}

void demo();
