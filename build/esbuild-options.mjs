// What the bundles (build/bundle.mjs) and the single executable
// (build/sea.mjs) share: esbuild options, the build stamp, the native addons.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The git commit being built, or "dev" outside a checkout. */
export function buildStamp() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'dev';
  }
}

/** The native addons that travel with the agent (name -> built file); throws if one is missing. */
export function addonFiles() {
  const addons = {
    'agent_native.node': path.join(repo, 'build/native/agent_native.node'),
    'pty.node': path.join(repo, 'node_modules/node-pty/build/Release/pty.node'),
  };
  for (const f of Object.values(addons)) if (!existsSync(f)) throw new Error(`missing ${f}: run npm run build`);
  return addons;
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

export const esbuildOptions = (build) => ({
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: 'linked',
  define: { AGENT_BUILD: JSON.stringify(build) },
  plugins: [embedProtos],
  logLevel: 'warning',
});
