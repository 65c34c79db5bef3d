// The storages mounted for the sandbox and its containers, with their users.
// Each mount point is mounted once; a second user asking for the same storage
// at the same mount point (two containers of a pod sharing a volume) shares
// it, and it is unmounted when its last user lets go (Kata's reference
// counting). Every acquire is all-or-nothing: a request that fails half-way
// unmounts what it mounted. Acquire and release run one at a time.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { AgentError, alreadyExists, describe, failedPrecondition } from '../errors';
import type { Logger } from '../log';
import { requireNamespace } from '../machine';
import { constants, native, type NativeError } from '../../native/native';
import { blockDeviceForStorage, blockStoragesAllowed, refuseBlockStorage, type BlockLookup } from './block';
import { planStorages, samePlan, storageRoots, type MountPlan, type StorageRoots, type StorageSpec } from './plan';

/** mount(2) and umount2(2); the native one checks first that the mount namespace is the agent's own. */
export interface Mounter {
  /** Throws unless the agent may mount at all (called before anything is created). */
  ensureAllowed(action: string): void;
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount(target: string, flags: number): void;
}

export const nativeMounter: Mounter = {
  ensureAllowed: (action) => requireNamespace('mnt', action),
  mount(source, target, fstype, flags, data) {
    requireNamespace('mnt', `mounting ${target}`);
    native.mount(source, target, fstype, flags, data);
  },
  umount(target, flags) {
    requireNamespace('mnt', `unmounting ${target}`);
    native.umount(target, flags);
  },
};

export interface StorageManagerOptions {
  sharedDir: string;
  stateDir: string;
  log: Logger;
  mounter?: Mounter;
  /**
   * Where virtio-blk devices are looked up, and how long to wait for one.
   * Outside the guest, block storages are refused unless a test sets devRoot
   * (block.ts, blockStoragesAllowed).
   */
  blockLookup?: BlockLookup;
}

/** One mounted storage and who uses it. */
interface Entry {
  plan: MountPlan;
  /** mount(2)'s source as used: for virtio-blk the resolved device node. */
  source: string;
  owners: Set<string>;
  /** What the agent created for it, removed again after the unmount (deepest first). */
  created: { dirs: string[]; file: string | null; localDir: string | null };
}

export interface MountedStorage {
  driver: string;
  mountPoint: string;
  source: string;
  fstype: string;
  owners: string[];
}

/** A mounted storage as a saved state keeps it (StorageManager.saved/adopt). */
export interface SavedStorage extends MountedStorage {
  plan: MountPlan;
  created: { dirs: string[]; file: string | null; localDir: string | null };
}

export class StorageManager {
  readonly roots: StorageRoots;
  private readonly mounter: Mounter;
  /** In mount order. */
  private readonly entries: Entry[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: StorageManagerOptions) {
    this.roots = storageRoots(options.sharedDir, options.stateDir);
    this.mounter = options.mounter ?? nativeMounter;
  }

  /** Validates storages without mounting anything: INVALID_ARGUMENT for a bad one. */
  plan(specs: readonly StorageSpec[], what = 'storages'): MountPlan[] {
    fs.mkdirSync(this.roots.storageDir, { recursive: true });
    return planStorages(specs, this.roots, what);
  }

  /**
   * Mounts `specs` for `owner` ("sandbox", "container:<id>"), in order. A
   * storage already mounted identically at the same mount point gains the
   * owner; a different one there is ALREADY_EXISTS. On any failure, what this
   * call mounted is unmounted again and the error is thrown.
   */
  async acquire(owner: string, specs: readonly StorageSpec[], what = 'storages'): Promise<MountedStorage[]> {
    if (specs.length === 0) return [];
    const plans = this.plan(specs, what);
    // Block storages outside the guest: refused before anything is mounted.
    const lookup = this.options.blockLookup ?? {};
    const block = plans.find((p) => p.device);
    if (block?.device && !blockStoragesAllowed(lookup)) await refuseBlockStorage(block.device, lookup, this.ownMountPoints());
    this.mounter.ensureAllowed(`mounting ${what}`);
    return this.serialize(async () => {
      const joined: Entry[] = [];
      try {
        for (const plan of plans) {
          const existing = this.entries.find((e) => e.plan.mountPoint === plan.mountPoint);
          if (existing) {
            if (!samePlan(existing.plan, plan)) {
              throw alreadyExists(`${plan.mountPoint} already holds a different storage (${existing.plan.driver} from ${existing.plan.source})`);
            }
            // Joined only if new to it: an undo must not take away what the owner held before.
            if (!existing.owners.has(owner)) {
              existing.owners.add(owner);
              joined.push(existing);
            }
            continue;
          }
          const entry = await this.mountOne(plan);
          entry.owners.add(owner);
          this.entries.push(entry);
          joined.push(entry);
        }
        return joined.map(view);
      } catch (err) {
        for (const entry of joined.reverse()) {
          entry.owners.delete(owner);
          if (entry.owners.size > 0) continue;
          try {
            await this.unmountOne(entry);
            this.entries.splice(this.entries.indexOf(entry), 1);
          } catch (e) {
            // Kept, owned by nobody: releaseAll (sandbox teardown) tries again.
            this.options.log.error({ err: e, mountPoint: entry.plan.mountPoint }, 'undoing a storage mount failed');
          }
        }
        throw err;
      }
    });
  }

  /**
   * Drops `owner` from its storages, newest first, and unmounts those nobody
   * uses any more. Tries every one; throws FAILED_PRECONDITION naming those
   * that could not be unmounted (they stay owned, so a retry tries again).
   */
  release(owner: string): Promise<void> {
    return this.serialize(() => this.releaseWhere((e) => e.owners.has(owner), owner));
  }

  /** Unmounts every storage, whoever owns it (sandbox teardown). */
  releaseAll(): Promise<void> {
    return this.serialize(() => this.releaseWhere(() => true, null));
  }

  /** The mount points of the storages mounted now. */
  private ownMountPoints(): Set<string> {
    return new Set(this.entries.map((e) => e.plan.mountPoint));
  }

  list(): MountedStorage[] {
    return this.entries.map(view);
  }

  /** Every mounted storage with all the manager knows of it, as plain data: what a takeover restores (adopt). */
  saved(): SavedStorage[] {
    return this.entries.map((e) => ({ ...view(e), plan: e.plan, created: e.created }));
  }

  /**
   * The storages an earlier agent image mounted (state/, across an exec in
   * place): taken as they are, mounted already, with their owners.
   */
  adopt(saved: readonly SavedStorage[]): void {
    for (const s of saved) {
      this.entries.push({ plan: s.plan, source: s.source, owners: new Set(s.owners), created: s.created });
    }
  }

  private async releaseWhere(match: (e: Entry) => boolean, owner: string | null): Promise<void> {
    const failures: string[] = [];
    for (const entry of [...this.entries].reverse().filter(match)) {
      const before = new Set(entry.owners);
      if (owner === null) entry.owners.clear();
      else entry.owners.delete(owner);
      if (entry.owners.size > 0) continue;
      try {
        await this.unmountOne(entry);
        this.entries.splice(this.entries.indexOf(entry), 1);
      } catch (err) {
        for (const o of before) entry.owners.add(o);
        failures.push(`${entry.plan.mountPoint}: ${describe(err)}`);
      }
    }
    if (failures.length > 0) throw failedPrecondition(`storages could not be unmounted: ${failures.join('; ')}`);
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private async mountOne(plan: MountPlan): Promise<Entry> {
    const entry: Entry = { plan, source: plan.source, owners: new Set(), created: { dirs: [], file: null, localDir: null } };
    const { log } = this.options;
    let mounted = false;
    try {
      if (plan.device) entry.source = await blockDeviceForStorage(plan.device, this.options.blockLookup ?? {}, this.ownMountPoints());
      const source = entry.source;
      if (plan.local) {
        // The directory belongs to this storage: made now, removed with it.
        entry.created.localDir = plan.local.dir;
        await fsp.mkdir(plan.local.dir, { recursive: true });
        await fsp.chmod(plan.local.dir, plan.local.mode); // mkdir's mode is cut by the umask
      }
      // A bind of a file needs a file to mount on; everything else a directory.
      let fileTarget = false;
      if (plan.fstype === '') {
        const st = await fsp.stat(source).catch((err: unknown) => {
          throw failedPrecondition(`${plan.driver} storage source ${source} cannot be used: ${describe(err)}`);
        });
        fileTarget = !st.isDirectory();
      }
      await this.makeMountPoint(plan, fileTarget, entry);

      try {
        this.mounter.mount(source, plan.mountPoint, plan.fstype, plan.flags, plan.data);
        mounted = true;
        if (plan.remountFlags) this.mounter.mount('', plan.mountPoint, '', plan.remountFlags, '');
        if (plan.propagation) this.mounter.mount('', plan.mountPoint, '', plan.propagation, '');
      } catch (err) {
        const e = err as NativeError;
        throw failedPrecondition(
          `mounting ${plan.driver} storage ${source} on ${plan.mountPoint}` +
            `${plan.fstype ? ` (${plan.fstype}${plan.data ? ` ${plan.data}` : ''})` : ''} failed: ${e.message}`,
          err,
        );
      }
      log.info({ driver: plan.driver, source, mountPoint: plan.mountPoint, fstype: plan.fstype, data: plan.data }, 'storage mounted');
      return entry;
    } catch (err) {
      if (mounted) {
        try {
          this.mounter.umount(plan.mountPoint, constants.MNT_DETACH);
        } catch (e) {
          log.error({ err: e, mountPoint: plan.mountPoint }, 'undoing a half-made storage mount failed');
        }
      }
      await this.removeCreated(entry);
      if (err instanceof AgentError) throw err;
      throw failedPrecondition(`preparing ${plan.driver} storage at ${plan.mountPoint} failed: ${describe(err)}`, err);
    }
  }

  /** Creates the mount point (and missing parents), then checks no symlink was swapped in meanwhile. */
  private async makeMountPoint(plan: MountPlan, file: boolean, entry: Entry): Promise<void> {
    const dir = file ? path.dirname(plan.mountPoint) : plan.mountPoint;
    const first = await fsp.mkdir(dir, { recursive: true });
    if (first !== undefined) {
      // mkdir -p reports the first directory it made; the rest are its descendants down to dir.
      for (let d = dir; ; d = path.dirname(d)) {
        entry.created.dirs.push(d);
        if (d === first || d === path.dirname(d)) break;
      }
    }
    if (file) {
      const existed = fs.existsSync(plan.mountPoint);
      const fh = await fsp.open(plan.mountPoint, 'a');
      await fh.close();
      if (!existed) entry.created.file = plan.mountPoint;
      if (!(await fsp.lstat(plan.mountPoint)).isFile()) {
        throw failedPrecondition(`mount point ${plan.mountPoint} for a file must be a regular file`);
      }
    }
    const real = await fsp.realpath(plan.mountPoint);
    if (real !== plan.mountPoint) {
      throw failedPrecondition(`mount point ${plan.mountPoint} now resolves to ${real}: it changed while being created`);
    }
  }

  private async unmountOne(entry: Entry): Promise<void> {
    const { mountPoint } = entry.plan;
    try {
      this.mounter.umount(mountPoint, 0);
    } catch (err) {
      const code = (err as NativeError).code;
      if (code === 'EBUSY') {
        // Still in use (a process holds a file, a submount): detach it now, the kernel frees it when unused.
        this.options.log.warn({ mountPoint }, 'storage busy: detaching it (MNT_DETACH)');
        this.mounter.umount(mountPoint, constants.MNT_DETACH);
      } else if (code !== 'EINVAL' && code !== 'ENOENT') {
        // EINVAL/ENOENT: not mounted (any more): nothing to undo.
        throw err;
      }
    }
    this.options.log.info({ driver: entry.plan.driver, mountPoint }, 'storage unmounted');
    await this.removeCreated(entry);
  }

  /** Removes what mountOne created: only empty directories, the empty placeholder file, a local storage's directory. */
  private async removeCreated(entry: Entry): Promise<void> {
    const { created } = entry;
    if (created.file) await fsp.unlink(created.file).catch(() => {});
    for (const d of created.dirs) await fsp.rmdir(d).catch(() => {});
    if (created.localDir) await fsp.rm(created.localDir, { recursive: true, force: true }).catch(() => {});
  }
}

function view(e: Entry): MountedStorage {
  return { driver: e.plan.driver, mountPoint: e.plan.mountPoint, source: e.source, fstype: e.plan.fstype, owners: [...e.owners] };
}
