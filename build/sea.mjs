// Builds the single agent executable for the guest: the bundle and a pinned
// Node 22 in one file, with our addons carried inside as SEA assets.
// Output: dist/guest/agent.
//   node build/sea.mjs                                  today's build
//   node build/sea.mjs --release DIR --out FILE         an archived release's
//     bundle and addons (test/fixtures/releases/X.Y.Z) made into a guest
//     executable, for the guest upgrade test (the release's own executable
//     is too big to archive; its bundle and addons are what it was built from)
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { addonFiles, buildStamp, esbuildOptions } from './esbuild-options.mjs';
import { guestNode } from './guest-node.mjs';
import { lazyBuiltins } from './lazy-builtins.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const flag = (name) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const release = flag('--release');
const out = path.join(repo, 'dist', 'guest');
const work = release ? path.join(repo, 'dist', `sea-release-${path.basename(release)}`) : path.join(repo, 'dist', 'sea');
mkdirSync(out, { recursive: true });
mkdirSync(work, { recursive: true });

const GUEST_NODE = guestNode();
const nodeVersion = execFileSync(GUEST_NODE, ['--version'], { encoding: 'utf8' }).trim();

const build = release ? JSON.parse(readFileSync(path.join(release, 'RELEASE.json'), 'utf8')).build : buildStamp();

const bundle = path.join(work, 'agent.cjs');
if (release) copyFileSync(path.join(release, 'agent.cjs'), bundle);
else {
  const options = esbuildOptions(build);
  await esbuild.build({
    ...options,
    plugins: [...options.plugins, lazyBuiltins(GUEST_NODE)],
    target: 'node22',
    sourcemap: false,
    minify: true,
    keepNames: true,
    entryPoints: [path.join(repo, 'src/agent/bin.ts')],
    outfile: bundle,
  });
}

const assets = release
  ? { 'agent_native.node': path.join(release, 'agent_native.node'), 'pty.node': path.join(release, 'pty.node') }
  : addonFiles();
const blob = path.join(work, 'agent.blob');
writeFileSync(path.join(work, 'sea-config.json'), JSON.stringify({
  main: bundle,
  output: blob,
  disableExperimentalSEAWarning: true,
  // An archived release carries the host's bundle (dist/agent.cjs: http2 and tls are the real
  // modules, and before this build it starts the agent as it loads), which no snapshot can hold.
  ...(release ? { useCodeCache: true } : { useSnapshot: true }),
  assets,
}, null, 2));
// The blob must be made by the same node binary it goes into.
execFileSync(GUEST_NODE, ['--experimental-sea-config', path.join(work, 'sea-config.json')], { stdio: 'inherit' });

const exe = release ? path.resolve(flag('--out') ?? path.join(work, 'agent')) : path.join(out, 'agent');
const tmp = `${exe}.tmp`;
rmSync(tmp, { force: true });
copyFileSync(GUEST_NODE, tmp);
chmodSync(tmp, 0o755);
// Strip before injecting: stripping afterwards breaks the executable.
execFileSync('strip', ['--strip-all', tmp], { stdio: 'ignore' });
execFileSync(path.join(repo, 'node_modules/.bin/postject'), [
  tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
], { stdio: 'pipe' }); // postject's LIEF prints harmless section warnings
// Replace by rename: a running copy of the old binary keeps its inode.
execFileSync('mv', ['-f', tmp, exe]);
if (!release) for (const [name, file] of Object.entries(assets)) copyFileSync(file, path.join(out, name));
console.log(`built ${path.relative(repo, exe)}: Node ${nodeVersion}, build ${build}, ${(statSync(exe).size / 1048576).toFixed(1)} MiB`);
