// Bundles the agent and agentctl into single CommonJS files under dist/.
// Native addons stay outside the bundle, copied beside it: our own
// agent_native.node and node-pty's pty.node (src/native/addon-loader.ts).
import { copyFileSync, mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { addonFiles, buildStamp, esbuildOptions } from './esbuild-options.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(repo, 'dist');
mkdirSync(dist, { recursive: true });

const build = buildStamp();
await esbuild.build({ ...esbuildOptions(build), entryPoints: [path.join(repo, 'src/agent/bin.ts')], outfile: path.join(dist, 'agent.cjs') });
// One entry serves both: started as agentctl*.cjs it is agentctl (src/agent/bin.ts).
copyFileSync(path.join(dist, 'agent.cjs'), path.join(dist, 'agentctl.cjs'));

for (const [name, file] of Object.entries(addonFiles())) {
  // Copy then rename: overwriting the file in place would change the pages of
  // an addon that a running agent has mapped, and crash it.
  copyFileSync(file, path.join(dist, `${name}.tmp`));
  renameSync(path.join(dist, `${name}.tmp`), path.join(dist, name));
}
console.log(`bundled dist/agent.cjs and dist/agentctl.cjs (build ${build})`);
