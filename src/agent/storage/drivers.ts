// The storage drivers this agent implements, as data: for each Storage.driver
// value, the file system it mounts, how Storage.source is read and checked,
// its default options and the file-system data options a request may add.
// plan.ts interprets the table; GetGuestDetails reports its names.

/** How a driver reads Storage.source. */
export type SourceKind =
  /** A virtio transport tag: the 9p mount_tag or the virtio-fs tag the hypervisor gave the share. */
  | 'tag'
  /** A virtio block device: /dev/vdX (or a partition, /dev/vdX1) or the PCI address of the virtio device, 0000:00:05.0. */
  | 'block-device'
  /** A label only, shown as the source in mountinfo: empty (the driver name is used) or a short name. */
  | 'label'
  /** A path inside the agent's shared dir, bind-mounted. */
  | 'shared-path'
  /** A directory the agent creates under its state dir and bind-mounts; the source is empty or "local". */
  | 'local';

export interface StorageDriver {
  readonly name: string;
  /** fstype for mount(2); null: taken from the request's fstype, which is then required. '' for a bind mount. */
  readonly fstype: string | null;
  readonly source: SourceKind;
  /** Options applied before the request's own; a request option with the same key replaces a default. */
  readonly defaultOptions: readonly string[];
  /**
   * File-system data options (not flags) a request may add: a list of keys,
   * or 'no-path-values' for any key whose value holds no "/" (block devices,
   * whose options depend on the file system; refusing path values keeps
   * options such as ext4's journal_path from reaching outside the roots).
   */
  readonly dataKeys: readonly string[] | 'no-path-values';
  /** Overlay: these data options name directories, each validated inside the storage roots. */
  readonly pathKeys?: readonly string[];
  /** Why it can be exercised only in the QEMU guest, if so. */
  readonly guestOnly?: string;
}

const TMPFS_KEYS = ['size', 'nr_blocks', 'nr_inodes', 'mode', 'uid', 'gid', 'huge', 'mpol', 'noswap', 'inode32', 'inode64'];

export const STORAGE_DRIVERS: readonly StorageDriver[] = [
  {
    name: '9p',
    fstype: '9p',
    source: 'tag',
    defaultOptions: ['trans=virtio', 'version=9p2000.L', 'msize=262144'],
    dataKeys: ['trans', 'version', 'msize', 'cache', 'access', 'posixacl', 'dfltuid', 'dfltgid', 'noextend', 'uname'],
    guestOnly: 'needs a virtio-9p device from the hypervisor (the QEMU guest test mounts one)',
  },
  {
    name: 'virtio-blk',
    fstype: null,
    source: 'block-device',
    defaultOptions: [],
    dataKeys: 'no-path-values',
    guestOnly: 'needs a virtio block device; the sysfs lookup of a PCI address is unit-tested on a fake tree',
  },
  {
    name: 'virtio-fs',
    fstype: 'virtiofs',
    source: 'tag',
    defaultOptions: [],
    dataKeys: ['dax'],
    // No virtiofsd on the development hosts or in our QEMU setup: this driver is untested end to end.
    guestOnly: 'needs a vhost-user-fs device backed by virtiofsd, which no test setup here has: untested end to end',
  },
  {
    name: 'tmpfs',
    fstype: 'tmpfs',
    source: 'label',
    defaultOptions: ['nosuid', 'nodev'],
    dataKeys: TMPFS_KEYS,
  },
  {
    name: 'bind',
    fstype: '',
    source: 'shared-path',
    defaultOptions: ['rbind'],
    dataKeys: [],
  },
  {
    name: 'overlay',
    fstype: 'overlay',
    source: 'label',
    defaultOptions: [],
    dataKeys: ['lowerdir', 'upperdir', 'workdir', 'index', 'redirect_dir', 'metacopy', 'xino', 'nfs_export', 'volatile', 'userxattr', 'uuid'],
    pathKeys: ['lowerdir', 'upperdir', 'workdir'],
  },
  {
    name: 'local',
    fstype: '',
    source: 'local',
    // "mode=0NNN" sets the directory's mode (consumed by the agent, not passed to mount(2)).
    defaultOptions: ['bind', 'mode=0777'],
    dataKeys: ['mode'],
  },
];

export const STORAGE_DRIVER_NAMES: readonly string[] = STORAGE_DRIVERS.map((d) => d.name);

export function findDriver(name: string): StorageDriver | undefined {
  return STORAGE_DRIVERS.find((d) => d.name === name);
}
