// Loads our native addons (agent_native.node, node-pty's pty.node) wherever
// they are: inside the single executable as SEA assets, beside the
// executable (the guest image ships them in /usr/lib/agent), beside the
// bundle (dist/), or in the source tree. Loaded with process.dlopen, which
// esbuild leaves alone (it would try to bundle a static require of a .node).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Where a SEA asset may be written so it can be dlopen'ed; the first writable wins.
 * Computed when asked: in a startup snapshot (build/sea.mjs) a value made at load would be the builder's.
 */
const extractDirs = () => ['/run/agent/addons', path.join(os.tmpdir(), `agent-addons-${process.pid}`)];

interface SeaModule {
  isSea(): boolean;
  getAsset(key: string): ArrayBuffer;
}

function seaAsset(file: string): string | null {
  let sea: SeaModule;
  try {
    // node:sea exists from Node 20; outside a single executable isSea() is false.
    sea = require('node:sea') as SeaModule;
    if (!sea.isSea()) return null;
  } catch {
    return null;
  }
  let bytes: ArrayBuffer;
  try {
    bytes = sea.getAsset(file);
  } catch {
    return null;
  }
  const data = Buffer.from(bytes);
  // Named by content: every image of one build (an upgrade to the same build, the pre-flight run
  // of the next one) uses the same file instead of adding one per start, and a different build
  // gets another name, so a file some image has mapped is never rewritten.
  const name = `${createHash('sha256').update(data).digest('hex').slice(0, 16)}-${file}`;
  for (const dir of extractDirs()) {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const target = path.join(dir, name);
      if (!sameFile(target, data)) {
        const tmp = `${target}.tmp-${process.pid}`;
        fs.writeFileSync(tmp, data, { mode: 0o500 });
        fs.renameSync(tmp, target);
      }
      pruneOthers(dir, file, name);
      return target;
    } catch {
      // Not writable yet (early boot on a read-only root): try the next place.
    }
  }
  return null;
}

function sameFile(target: string, data: Buffer): boolean {
  try {
    return fs.statSync(target).size === data.length && fs.readFileSync(target).equals(data);
  } catch {
    return false;
  }
}

/**
 * Removes the other builds' copies of `file` (left by the images before an
 * in-place upgrade): one still mapped by a process keeps its pages until
 * that process lets go, so removing the name harms nobody.
 */
function pruneOthers(dir: string, file: string, keep: string): void {
  for (const other of fs.readdirSync(dir)) {
    if (other === keep || !other.endsWith(`-${file}`)) continue;
    try {
      fs.unlinkSync(path.join(dir, other));
    } catch {
      // Someone else removed it first.
    }
  }
}

/** Candidate paths for `file`, most specific first. */
export function addonCandidates(file: string, envVar?: string): string[] {
  const paths: string[] = [];
  const fromEnv = envVar ? process.env[envVar] : undefined;
  if (fromEnv) paths.push(path.resolve(fromEnv));
  // Without /proc (early in PID 1) execPath is argv[0], e.g. the /sbin/init symlink: follow it.
  let exe = process.execPath;
  try {
    exe = fs.realpathSync(exe);
  } catch {
    // Keep it as it is.
  }
  paths.push(path.join(path.dirname(exe), file));
  paths.push(path.join(path.dirname(exe), '..', 'lib', 'agent', file));
  paths.push(path.join(__dirname, file));
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    paths.push(path.join(dir, 'build', 'native', file));
    paths.push(path.join(dir, 'node_modules', 'node-pty', 'build', 'Release', file));
    if (path.dirname(dir) === dir) break;
  }
  return [...new Set(paths)];
}

export function loadAddon<T>(file: string, envVar?: string): T {
  const tried = addonCandidates(file, envVar);
  const found = seaAsset(file) ?? tried.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`native addon ${file} not found (run npm run build); tried: ${tried.join(', ')}`);
  const mod = { exports: {} as T };
  try {
    process.dlopen(mod, found);
  } catch (err) {
    throw new Error(`cannot load native addon ${found}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return mod.exports;
}
