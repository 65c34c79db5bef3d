// Bundles the agent and agentctl into single CommonJS files under dist/.
// Native addons stay outside the bundle, copied beside it: our own
// agent_native.node and node-pty's pty.node (src/agent/addon-loader.ts).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { esbuildOptions } from './esbuild-options.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(repo, 'dist');
mkdirSync(dist, { recursive: true });

let build = 'dev';
try {
  build = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim();
} catch {
  // Not a git checkout: keep "dev".
}

const common = esbuildOptions(build);

await esbuild.build({ ...common, entryPoints: [path.join(repo, 'src/agent/bin.ts')], outfile: path.join(dist, 'agent.cjs') });
await esbuild.build({ ...common, entryPoints: [path.join(repo, 'src/agent/bin.ts')], outfile: path.join(dist, 'agentctl.cjs') });

const ADDONS = {
  'agent_native.node': path.join(repo, 'build/native/agent_native.node'),
  'pty.node': path.join(repo, 'node_modules/node-pty/build/Release/pty.node'),
};
for (const [name, file] of Object.entries(ADDONS)) {
  if (!existsSync(file)) throw new Error(`missing ${file}: run npm run build`);
  // Copy then rename: overwriting the file in place would change the pages of
  // an addon that a running agent has mapped, and crash it.
  copyFileSync(file, path.join(dist, `${name}.tmp`));
  renameSync(path.join(dist, `${name}.tmp`), path.join(dist, name));
}
console.log(`bundled dist/agent.cjs and dist/agentctl.cjs (build ${build})`);
