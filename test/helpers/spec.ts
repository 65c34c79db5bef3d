// OCI specs for test containers. On development hosts the agent runs crun
// with --cgroup-manager=disabled, so the spec has no cgroup namespace, no
// cgroupsPath and no cgroup mount (see docs/machine-facts.md, "Hybrid cgroups and crun").
export interface SpecOptions {
  rootPath: string;
  args: string[];
  terminal?: boolean;
  env?: string[];
  hostname?: string;
}

export function containerSpec(o: SpecOptions): Record<string, unknown> {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: o.terminal ?? false,
      user: { uid: 0, gid: 0 },
      args: o.args,
      env: o.env ?? ['PATH=/bin', 'TERM=xterm', 'HOME=/root'],
      cwd: '/',
      capabilities: {
        bounding: ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_SETUID', 'CAP_SETGID'],
        effective: ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_SETUID', 'CAP_SETGID'],
        permitted: ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_SETUID', 'CAP_SETGID'],
      },
      noNewPrivileges: true,
    },
    root: { path: o.rootPath, readonly: true },
    hostname: o.hostname ?? 'test',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
