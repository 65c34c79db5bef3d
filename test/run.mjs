// Runs every test file with Node's test runner: *.test.ts beside the code in
// src/, and test/**/*.test.ts. Arguments narrow the set by substring.
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

const filters = process.argv.slice(2);
const files = [...find(path.join(repo, 'src')), ...find(path.join(repo, 'test'))]
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
  cwd: repo,
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
