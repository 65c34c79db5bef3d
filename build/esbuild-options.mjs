// esbuild options shared by the bundles (build/bundle.mjs) and the single
// executable (build/sea.mjs).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

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
