// Validation of identifiers and paths that arrive over the wire. Every id is
// used as a path component and a crun argument, so the pattern is strict.
import fs from 'node:fs';
import path from 'node:path';
import { excerpt, invalidArgument } from './errors';

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Linux's PATH_MAX (the terminating NUL included) and NAME_MAX, in bytes. */
const PATH_MAX = 4096;
const NAME_MAX = 255;

/** Checks a container or exec id; `what` names it in the error. */
export function validateId(what: string, id: string): string {
  if (!ID_PATTERN.test(id)) {
    throw invalidArgument(
      `${what} ${excerpt(id)} is invalid: use 1-128 characters of [A-Za-z0-9_.-], starting with a letter or digit`,
    );
  }
  return id;
}

/**
 * Resolves `userPath` inside `root` and proves it stays there: no `..`
 * component, no NUL, and no symlink on the way that points outside. A
 * relative path is taken relative to root; an absolute one must start with it.
 * The path itself need not exist yet (CopyFile creates it).
 */
export function resolveWithin(root: string, userPath: string, what = 'path'): string {
  if (userPath === '' || userPath.includes('\0')) {
    throw invalidArgument(`${what} ${excerpt(userPath)} is empty or contains NUL`);
  }
  // What the kernel would refuse with ENAMETOOLONG is the client's mistake, not a failed precondition.
  const bytes = Buffer.byteLength(userPath);
  if (bytes >= PATH_MAX) throw invalidArgument(`${what} ${excerpt(userPath)} is too long: ${bytes} bytes, at most ${PATH_MAX - 1}`);
  const long = userPath.split('/').find((c) => Buffer.byteLength(c) > NAME_MAX);
  if (long !== undefined) {
    throw invalidArgument(`${what} ${excerpt(userPath)} has a name of ${Buffer.byteLength(long)} bytes: at most ${NAME_MAX}`);
  }
  if (userPath.split(/[\\/]+/).includes('..')) {
    throw invalidArgument(`${what} ${excerpt(userPath)} contains "..": paths may not climb out of ${root}`);
  }
  const rootReal = fs.realpathSync(root);
  const candidate = path.isAbsolute(userPath) ? path.normalize(userPath) : path.join(root, userPath);
  const inside = isWithin(path.resolve(root), candidate) || isWithin(rootReal, candidate);
  if (!inside) {
    throw invalidArgument(`${what} ${excerpt(userPath)} is outside the allowed root ${root}`);
  }
  // Resolve symlinks on the longest existing prefix; the rest does not exist yet.
  let existing = candidate;
  const rest: string[] = [];
  while (!fs.existsSync(existing)) {
    rest.unshift(path.basename(existing));
    existing = path.dirname(existing);
  }
  const resolved = path.join(fs.realpathSync(existing), ...rest);
  if (!isWithin(rootReal, resolved)) {
    throw invalidArgument(`${what} ${excerpt(userPath)} leads outside ${root} through a symlink`);
  }
  return resolved;
}

/** Whether `p` is `root` or lies below it, by the path's text alone (no file system look-up). */
export function isWithin(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  // "..data" is a fine name inside the root; only ".." itself or "../..." climbs out.
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}
