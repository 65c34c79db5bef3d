// Runs every test file with Node's test runner: *.test.ts beside the code in
// src/, and test/**/*.test.ts. Arguments narrow the set by substring.
// The guest tests (test/guest/, QEMU) run only with --guest, on their own.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (name === 'node_modules' || name === 'generated' || name === 'fixtures') return [];
    if (statSync(full).isDirectory()) return find(full);
    return name.endsWith('.test.ts') ? [path.relative(repo, full)] : [];
  });
}

const guest = process.argv.includes('--guest');
const filters = process.argv.slice(2).filter((a) => a !== '--guest');
const files = [...find(path.join(repo, 'src')), ...find(path.join(repo, 'test'))]
  .filter((f) => f.startsWith('test/guest/') === guest)
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
// Guest tests boot VMs: one at a time on this machine's two cores.
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${guest ? 1 : 2}`, ...files], {
  cwd: repo,
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
