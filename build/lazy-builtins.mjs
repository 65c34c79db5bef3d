// An esbuild plugin for the single executable's startup snapshot
// (build/sea.mjs): Node cannot put http, https, http2 or tls in a user
// snapshot (the build crashes; docs/architecture.md, "Start-up"), and
// grpc-js requires them when it loads. Each becomes a stand-in module whose
// properties load the real one on first use, at run time. grpc-js reads one
// thing at load, http2.constants: the stand-in carries a copy, taken from the
// Node that goes into the executable, so the values are the ones it has.
import { execFileSync } from 'node:child_process';

const LAZY = ['http', 'https', 'http2', 'tls'];

/** The plugin, for the Node binary at `node` (the one the blob is made by). */
export function lazyBuiltins(node) {
  const shape = JSON.parse(execFileSync(node, ['-e', `
    const out = {};
    for (const name of ${JSON.stringify(LAZY)}) {
      const m = require(name);
      out[name] = { keys: Object.keys(m), constants: name === 'http2' ? m.constants : undefined };
    }
    process.stdout.write(JSON.stringify(out));
  `], { encoding: 'utf8' }));
  return {
    name: 'lazy-builtins',
    setup(b) {
      const filter = new RegExp(`^(node:)?(${LAZY.join('|')})$`);
      b.onResolve({ filter }, (args) => {
        // The stand-in itself requires the real module.
        if (args.namespace === 'lazy-builtin') return { path: args.path, external: true };
        return { path: args.path.replace(/^node:/, ''), namespace: 'lazy-builtin' };
      });
      b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => {
        const { keys, constants } = shape[args.path];
        return {
          loader: 'js',
          contents: `
            let real;
            const load = () => (real ??= require(${JSON.stringify(`node:${args.path}`)}));
            for (const key of ${JSON.stringify(keys)}) {
              Object.defineProperty(exports, key, { get: () => load()[key], enumerable: true, configurable: true });
            }
            ${constants ? `Object.defineProperty(exports, 'constants', { value: Object.freeze(${JSON.stringify(constants)}), enumerable: true });` : ''}
          `,
        };
      });
    },
  };
}
