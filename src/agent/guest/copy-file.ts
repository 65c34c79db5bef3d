// CopyFile, the Kata way: the runtime copies a host file (a ConfigMap, a
// Secret, /etc/hosts…) into the guest in chunks. Each chunk is written at its
// offset into a temporary file beside the destination; the chunk that
// completes the file renames it into place, so a reader sees the old file or
// the whole new one, never a half. The destination must lie inside `root`
// (the shared dir); neither `..` nor a symlink may lead out of it.
//
// The transfer's progress is the temporary file's size, so nothing but the
// file system holds state: a chunk must start at or before the bytes received
// so far (a resend is fine, skipping ahead is refused), and offset 0 restarts.
// Modes: file_mode's type bits choose a regular file (0 or S_IFREG), a
// directory (S_IFDIR) or a symlink (S_IFLNK; data is the target). A file_mode
// of 0 (unset) means 0644, a dir_mode of 0 means 0755.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { AgentError, excerpt, failedPrecondition, invalidArgument, resourceExhausted } from '../errors';
import { NO_POLICY, type Policy } from '../policy/policy';
import { checkCopyFile } from '../policy/rules';
import { resolveWithin } from '../validate';

export interface CopyFileRequest {
  path: string;
  fileSize: number;
  fileMode: number;
  dirMode: number;
  uid: number;
  gid: number;
  offset: number;
  data: Uint8Array;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const DEFAULT_FILE_MODE = 0o644;
const DEFAULT_DIR_MODE = 0o755;

export class FileCopier {
  /** One chunk at a time per destination, so two chunks never interleave. */
  private readonly busy = new Map<string, Promise<void>>();

  constructor(
    readonly root: string,
    /** The operator's copy_file.paths rule narrows where inside `root` files may go. */
    private readonly policy: Policy = NO_POLICY,
  ) {}

  async copy(req: CopyFileRequest): Promise<void> {
    const { parent, name, dest } = this.destination(req.path);
    const previous = this.busy.get(dest) ?? Promise.resolve();
    const mine = previous.catch(() => {}).then(() => this.copyLocked(req, parent, name, dest));
    const tail = mine.catch(() => {});
    this.busy.set(dest, tail);
    try {
      await mine;
    } finally {
      if (this.busy.get(dest) === tail) this.busy.delete(dest);
    }
  }

  /** Checks the wire path and splits it into the (real) parent directory and the entry name. */
  private destination(userPath: string): { parent: string; name: string; dest: string } {
    // The whole path: no `..`, nothing outside root, no symlink on the way (the last one included) leading out.
    const full = resolveWithin(this.root, userPath, 'CopyFile path');
    if (full === fs.realpathSync(this.root)) throw invalidArgument(`CopyFile path ${excerpt(userPath)} names the root itself`);
    // The entry itself is replaced, never followed: resolve only its parent.
    const name = path.basename(userPath);
    if (name === '.' || name === '') throw invalidArgument(`CopyFile path ${excerpt(userPath)} does not name a file`);
    const parent = resolveWithin(this.root, path.dirname(userPath), 'CopyFile path');
    checkCopyFile(this.policy, path.join(parent, name));
    return { parent, name, dest: path.join(parent, name) };
  }

  private async copyLocked(req: CopyFileRequest, parent: string, name: string, dest: string): Promise<void> {
    checkNumbers(req);
    const type = req.fileMode & S_IFMT;
    const perm = req.fileMode === 0 ? DEFAULT_FILE_MODE : req.fileMode & 0o7777;
    try {
      await this.makeParents(parent, req);
      switch (type) {
        case 0:
        case S_IFREG:
          return await writeChunk(req, parent, name, dest, perm);
        case S_IFDIR:
          return await makeDirectory(dest, perm, req);
        case S_IFLNK:
          return await this.makeSymlink(req, parent, name, dest);
        default:
          throw invalidArgument(`CopyFile file_mode 0o${req.fileMode.toString(8)}: only regular files, directories and symlinks can be copied`);
      }
    } catch (err) {
      throw asAgentError(err, req.path);
    }
  }

  /** Creates the missing directories from root down to parent, each with dir_mode and the owner. */
  private async makeParents(parent: string, req: CopyFileRequest): Promise<void> {
    const rootReal = fs.realpathSync(this.root);
    const missing: string[] = [];
    for (let dir = parent; !fs.existsSync(dir); dir = path.dirname(dir)) missing.unshift(dir);
    const mode = req.dirMode === 0 ? DEFAULT_DIR_MODE : req.dirMode & 0o7777;
    for (const dir of missing) {
      // EEXIST here means something (a dangling symlink, say) took the name: mkdir never follows it.
      await fsp.mkdir(dir, { mode });
      await fsp.chown(dir, req.uid, req.gid);
      await fsp.chmod(dir, mode); // mkdir's mode went through the umask
    }
    // Nothing swapped a directory for a symlink while we worked.
    if (!isWithin(rootReal, await fsp.realpath(parent))) {
      throw invalidArgument(`CopyFile path ${excerpt(req.path)} leads outside ${this.root} through a symlink`);
    }
  }

  /** A symlink whose target, taken from its own directory, stays inside root. Replaces what is there. */
  private async makeSymlink(req: CopyFileRequest, parent: string, name: string, dest: string): Promise<void> {
    const target = Buffer.from(req.data).toString('utf8');
    if (target === '' || target.includes('\0')) throw invalidArgument(`CopyFile symlink ${excerpt(req.path)} needs a target in data, without NUL`);
    const rootReal = fs.realpathSync(this.root);
    const lexical = path.resolve(parent, target);
    if (!isWithin(rootReal, lexical) && !isWithin(path.resolve(this.root), lexical)) {
      throw invalidArgument(`CopyFile symlink ${excerpt(req.path)} -> ${excerpt(target)} points outside ${this.root}`);
    }
    const tmp = tempName(parent, name);
    await fsp.rm(tmp, { force: true });
    await fsp.symlink(target, tmp);
    await fsp.lchown(tmp, req.uid, req.gid);
    await fsp.rename(tmp, dest);
  }
}

function checkNumbers(req: CopyFileRequest): void {
  if (!Number.isSafeInteger(req.fileSize) || req.fileSize < 0) throw invalidArgument(`CopyFile file_size ${req.fileSize} must be a non-negative integer`);
  if (!Number.isSafeInteger(req.offset) || req.offset < 0) throw invalidArgument(`CopyFile offset ${req.offset} must be a non-negative integer`);
  const end = req.offset + req.data.length;
  if (end > req.fileSize) {
    throw invalidArgument(`CopyFile chunk ends at byte ${end}, beyond file_size ${req.fileSize} (offset ${req.offset}, ${req.data.length} bytes)`);
  }
}

/** Writes one chunk into the temporary file; the completing chunk renames it into place. */
async function writeChunk(req: CopyFileRequest, parent: string, name: string, dest: string, perm: number): Promise<void> {
  const tmp = tempName(parent, name);
  const { O_WRONLY, O_CREAT, O_TRUNC, O_NOFOLLOW, O_NONBLOCK } = fs.constants; // libuv adds O_CLOEXEC itself
  // O_NOFOLLOW: a symlink planted at the temporary name is not followed; O_NONBLOCK: nor is a FIFO waited on.
  const flags = O_WRONLY | O_NOFOLLOW | O_NONBLOCK | (req.offset === 0 ? O_CREAT | O_TRUNC : 0);
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(tmp, flags, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw invalidArgument(`CopyFile offset ${req.offset} skips ahead: no transfer to ${excerpt(req.path)} is in progress (the first chunk has offset 0)`);
    }
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw invalidArgument(`CopyFile temporary file ${tmp} is not a regular file`);
    if (req.offset > st.size) {
      throw invalidArgument(
        `CopyFile offset ${req.offset} skips ahead: ${st.size} bytes of ${excerpt(req.path)} received so far; chunks must come in order`,
      );
    }
    for (let done = 0; done < req.data.length; ) {
      const { bytesWritten } = await fh.write(req.data, done, req.data.length - done, req.offset + done);
      done += bytesWritten;
    }
    if (req.offset + req.data.length < req.fileSize) return;
    // The last chunk: trim what an earlier, longer attempt may have left, then publish.
    await fh.truncate(req.fileSize);
    await fh.chown(req.uid, req.gid);
    await fh.chmod(perm); // after chown, which clears set-id bits
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, dest);
}

async function makeDirectory(dest: string, perm: number, req: CopyFileRequest): Promise<void> {
  try {
    await fsp.mkdir(dest, { mode: perm });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (!(await fsp.lstat(dest)).isDirectory()) throw invalidArgument(`CopyFile path ${excerpt(req.path)} exists and is not a directory`);
  }
  await fsp.chown(dest, req.uid, req.gid);
  await fsp.chmod(dest, perm);
}

/** The temporary name beside the destination: hidden, fixed per destination, and short enough for any name. */
function tempName(parent: string, name: string): string {
  return path.join(parent, `.copy-${crypto.createHash('sha256').update(name).digest('hex').slice(0, 16)}.tmp`);
}

function asAgentError(err: unknown, userPath: string): unknown {
  if (err instanceof AgentError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return resourceExhausted(`CopyFile ${userPath}: ${e.message}`);
  if (typeof e.code === 'string') return failedPrecondition(`CopyFile ${userPath}: ${e.message}`, err);
  return err;
}

/** `..data` (a Kubernetes ConfigMap entry) is inside; only `..` itself climbs out. */
function isWithin(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}
