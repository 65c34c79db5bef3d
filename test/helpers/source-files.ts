// The TypeScript files under a directory of src/, generated code left out: what
// the static checks of test/ (layering, snapshot safety) read.
import fs from 'node:fs';
import path from 'node:path';

/** Every .ts file below `dir`, except under generated/; without tests (*.test.ts, *.testing.ts) when `tests` is false. */
export function sourceFiles(dir: string, options: { tests?: boolean } = {}): string[] {
  const tests = options.tests ?? true;
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'generated' ? [] : sourceFiles(full, options);
    if (!e.name.endsWith('.ts')) return [];
    return tests || !/\.(test|testing)\.ts$/.test(e.name) ? [full] : [];
  });
}
