// Bundles the agent (src/agent/bin.ts; started as `agent ctl` it is the guest's
// agentctl) and the host's agentctl (build/agentctl-host.ts, with --vm) into
// single CommonJS files under dist/.
// Native addons stay outside the bundle, copied beside it: our own
// agent_native.node and node-pty's pty.node (src/native/addon-loader.ts).
import { copyFileSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { addonFiles, buildStamp, esbuildOptions } from './esbuild-options.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(repo, 'dist');
mkdirSync(dist, { recursive: true });

const build = buildStamp();
// The metafiles list every module in each bundle: the layering test checks them (test/layering.test.ts).
for (const [entry, outfile] of [['src/agent/bin.ts', 'agent.cjs'], ['build/agentctl-host.ts', 'agentctl.cjs']]) {
  const result = await esbuild.build({ ...esbuildOptions(build), entryPoints: [path.join(repo, entry)], outfile: path.join(dist, outfile), metafile: true });
  writeFileSync(path.join(dist, `${outfile}.meta.json`), JSON.stringify(result.metafile));
}

for (const [name, file] of Object.entries(addonFiles())) {
  // Copy then rename: overwriting the file in place would change the pages of
  // an addon that a running agent has mapped, and crash it.
  copyFileSync(file, path.join(dist, `${name}.tmp`));
  renameSync(path.join(dist, `${name}.tmp`), path.join(dist, name));
}
console.log(`bundled dist/agent.cjs and dist/agentctl.cjs (build ${build})`);
