#!/usr/bin/env node
// Builds build/native/agent_native.node with node-gyp against the headers of
// the running Node, offline. Usage: node build/native/build.mjs [--force] [--nodedir=DIR]
//
// --nodedir is always passed explicitly: node-gyp would otherwise take it from
// a user's ~/.npmrc or try to download headers, neither of which exists on a
// fresh offline machine.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const nodeGyp = path.join(repo, 'node_modules', '.bin', 'node-gyp');
const source = path.join(here, 'agent_native.c');
const gyp = path.join(here, 'binding.gyp');
const built = path.join(here, 'build', 'Release', 'agent_native.node');
const output = path.join(here, 'agent_native.node');

const args = process.argv.slice(2);
const force = args.includes('--force');
const nodedirArg = args.find((a) => a.startsWith('--nodedir='));
const nodedir = nodedirArg
  ? path.resolve(nodedirArg.slice('--nodedir='.length))
  : path.resolve(path.dirname(process.execPath), '..');

function fail(message) {
  console.error(`build.mjs: ${message}`);
  process.exit(1);
}

const mtime = (file) => fs.statSync(file).mtimeMs;
if (!force && fs.existsSync(output) && mtime(output) > Math.max(mtime(source), mtime(gyp))) {
  console.log(`${output} (up to date; --force to rebuild)`);
  process.exit(0);
}

const header = path.join(nodedir, 'include', 'node', 'node_api.h');
if (!fs.existsSync(header)) {
  fail(
    `Node.js headers not found: ${header} is missing.\n` +
      `  Expected the headers of the running node (${process.version}, ${process.execPath}).\n` +
      `  Get them by installing Node from an official tarball or a package that ships include/node\n` +
      `  (e.g. NodeSource's nodejs, or Debian's libnode-dev for Debian's own nodejs), or unpack\n` +
      `  https://nodejs.org/dist/${process.version}/node-${process.version}-headers.tar.gz\n` +
      `  and run: node build/native/build.mjs --nodedir=<unpacked node-${process.version} dir>`,
  );
}
if (!fs.existsSync(nodeGyp)) fail(`${nodeGyp} not found; run npm install in ${repo} first`);

// node-gyp lets npm_config_* variables (exported by `npm run` from an npmrc)
// override its command line, so pin nodedir there too and drop the ones that
// would select other headers.
const env = { ...process.env, npm_config_nodedir: nodedir };
for (const key of Object.keys(env)) {
  if (/^npm_config_(nodedir|target|runtime|dist_?url|devdir)$/i.test(key) && key !== 'npm_config_nodedir') {
    delete env[key];
  }
}

// Run node-gyp's JS entry with this same node, so the build and the headers agree.
const gypArgs = [nodeGyp, 'rebuild', '--directory', path.relative(repo, here), `--nodedir=${nodedir}`];
const r = spawnSync(process.execPath, gypArgs, { cwd: repo, env, stdio: 'inherit' });
if (r.error) fail(`could not run node-gyp: ${r.error.message}`);
if (r.status !== 0) fail(`node-gyp exited with ${r.signal ?? r.status}`);

// Copy then rename: replacing the file in place could crash a process that
// has the old .node mapped; rename swaps the directory entry atomically.
const tmp = `${output}.${process.pid}.tmp`;
fs.copyFileSync(built, tmp);
fs.renameSync(tmp, output);
console.log(output);
