// Bundles the agent and agentctl into single CommonJS files under dist/.
// Native addons stay outside the bundle: node-pty is loaded from
// node_modules, our own addon from dist/agent_native.node.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(repo, 'dist');
mkdirSync(dist, { recursive: true });

let build = 'dev';
try {
  build = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim();
} catch {
  // Not a git checkout: keep "dev".
}

// The .proto files that grpc-health-check and @grpc/reflection load from disk.
const thirdPartyProtos = {
  'health/v1/health.proto': 'node_modules/grpc-health-check/proto/health/v1/health.proto',
  'grpc/reflection/v1/reflection.proto': 'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto',
  'grpc/reflection/v1alpha/reflection.proto': 'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto',
};

const embedProtos = {
  name: 'embed-third-party-protos',
  setup(b) {
    b.onResolve({ filter: /^embedded-protos$/ }, () => ({ path: 'embedded-protos', namespace: 'embedded' }));
    b.onLoad({ filter: /.*/, namespace: 'embedded' }, () => {
      const texts = Object.fromEntries(Object.entries(thirdPartyProtos).map(([k, f]) => {
        const file = path.join(repo, f);
        if (!existsSync(file)) throw new Error(`missing ${file}: run npm ci`);
        return [k, readFileSync(file, 'utf8')];
      }));
      return { contents: `module.exports = ${JSON.stringify(texts)};`, loader: 'js' };
    });
    // Redirect the two packages' proto-loader import to the embedding stand-in.
    b.onResolve({ filter: /^@grpc\/proto-loader$/ }, (args) => {
      const fromThirdParty = /node_modules[\\/](grpc-health-check|@grpc[\\/]reflection)[\\/]/.test(args.importer);
      return fromThirdParty ? { path: path.join(repo, 'build/embedded-proto-loader.cjs') } : undefined;
    });
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: 'linked',
  external: ['node-pty', 'node-pty/*'],
  define: { AGENT_BUILD: JSON.stringify(build) },
  plugins: [embedProtos],
  logLevel: 'warning',
};

await esbuild.build({ ...common, entryPoints: [path.join(repo, 'src/agent/main.ts')], outfile: path.join(dist, 'agent.cjs') });
await esbuild.build({ ...common, entryPoints: [path.join(repo, 'src/client/agentctl.ts')], outfile: path.join(dist, 'agentctl.cjs') });

const addon = path.join(repo, 'build/native/agent_native.node');
if (!existsSync(addon)) throw new Error(`missing ${addon}: run node build/native/build.mjs`);
// Copy then rename: overwriting the file in place would change the pages of
// an addon that a running agent has mapped, and crash it.
copyFileSync(addon, path.join(dist, 'agent_native.node.tmp'));
renameSync(path.join(dist, 'agent_native.node.tmp'), path.join(dist, 'agent_native.node'));
console.log(`bundled dist/agent.cjs and dist/agentctl.cjs (build ${build})`);
