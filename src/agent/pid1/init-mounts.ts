// The file systems PID 1 mounts before anything else runs, as data. A target
// already mounted (the initramfs may hand over /dev) is left as it is.
import fs from 'node:fs';
import type { Logger } from '../log';
import { constants as c, native } from '../../native/native';

export interface InitMount {
  source: string;
  target: string;
  fstype: string;
  flags: (keyof typeof c)[];
  data?: string;
}

export const INIT_MOUNTS: readonly InitMount[] = [
  { source: 'proc', target: '/proc', fstype: 'proc', flags: ['MS_NOSUID', 'MS_NODEV', 'MS_NOEXEC'] },
  { source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: ['MS_NOSUID', 'MS_NODEV', 'MS_NOEXEC'] },
  { source: 'devtmpfs', target: '/dev', fstype: 'devtmpfs', flags: ['MS_NOSUID'], data: 'mode=0755' },
  { source: 'devpts', target: '/dev/pts', fstype: 'devpts', flags: ['MS_NOSUID', 'MS_NOEXEC'], data: 'ptmxmode=0666,mode=0620,gid=5' },
  { source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: ['MS_NOSUID', 'MS_NODEV'], data: 'mode=1777' },
  { source: 'tmpfs', target: '/run', fstype: 'tmpfs', flags: ['MS_NOSUID', 'MS_NODEV'], data: 'mode=0755' },
  { source: 'tmpfs', target: '/tmp', fstype: 'tmpfs', flags: ['MS_NOSUID', 'MS_NODEV'], data: 'mode=1777' },
  { source: 'cgroup2', target: '/sys/fs/cgroup', fstype: 'cgroup2', flags: ['MS_NOSUID', 'MS_NODEV', 'MS_NOEXEC'], data: 'nsdelegate' },
];

/** Controllers handed down to container cgroups. */
const CGROUP_CONTROLLERS = ['cpuset', 'cpu', 'io', 'memory', 'pids'];

function mountedTargets(): Set<string> {
  try {
    return new Set(fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter(Boolean) as string[]);
  } catch {
    return new Set(); // /proc itself is not mounted yet.
  }
}

export function mountInitFileSystems(log: Logger, table: readonly InitMount[] = INIT_MOUNTS): void {
  let mounted = mountedTargets();
  for (const m of table) {
    // Until /proc is mounted the set is empty; read it again once it is.
    if (mounted.size === 0) mounted = mountedTargets();
    if (mounted.has(m.target)) continue;
    const flags = m.flags.reduce((acc, f) => acc | c[f], 0);
    try {
      fs.mkdirSync(m.target, { recursive: true });
      native.mount(m.source, m.target, m.fstype, flags, m.data ?? '');
      log.debug({ target: m.target, fstype: m.fstype }, 'mounted');
    } catch (err) {
      // One missing file system costs what needs it, not the guest: init goes on.
      log.error({ err, target: m.target, fstype: m.fstype }, 'init mount failed');
    }
  }
  enableCgroupControllers(log);
}

function enableCgroupControllers(log: Logger): void {
  const file = '/sys/fs/cgroup/cgroup.subtree_control';
  try {
    const available = fs.readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').trim().split(/\s+/);
    const wanted = CGROUP_CONTROLLERS.filter((x) => available.includes(x));
    fs.writeFileSync(file, wanted.map((x) => `+${x}`).join(' '));
  } catch (err) {
    log.warn({ err }, 'cannot enable cgroup controllers: container limits and stats will be missing');
  }
}
