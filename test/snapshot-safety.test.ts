// The single executable starts from a V8 startup snapshot (build/sea.mjs): the
// code that runs when the modules load ran once, on the build machine, and
// what it computed is frozen into every start. These rules keep the
// process's own facts out of that code (docs/architecture.md, "Start-up"):
// - nothing at a module's top level reads the process (its pid, argv,
//   environment, clock, temp dir) or draws random bytes (Node keeps a pool
//   of them: a UUID drawn at load would be every start's first UUID);
// - nothing asks Node's os module what it read at load (uname: os.release,
//   os.type, os.version, os.machine), anywhere: in the snapshot that is the
//   build machine's kernel.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { sourceFiles } from './helpers/source-files';

const REPO = path.resolve(__dirname, '..');

/** The code the agent's bundle may carry (tests left out). */
const bundled = () => ['src/agent', 'src/native', 'src/client', 'src/handlers'].flatMap((d) => sourceFiles(path.join(REPO, d), { tests: false }));

const PROCESS_FACTS = /process\.(pid|ppid|argv|env|hrtime|uptime|cwd)\b|os\.(tmpdir|hostname|homedir)\(|Date\.now\(|new Date\(|performance\.now\(|random(UUID|Bytes|Int)\(|getRandomValues\(|Math\.random\(/;
const UNAME_AT_LOAD = /\bos\.(release|type|version|machine)\(\)/;

/** A declaration or statement at a module's top level that computes something (not a function or a type). */
function topLevelStatements(text: string): { line: number; text: string }[] {
  return text.split('\n').flatMap((l, i) => {
    if (!/^(export\s+)?(const|let|var)\s|^[a-zA-Z_$][\w$.]*\(/.test(l)) return [];
    if (/=>|\bfunction\b/.test(l)) return []; // defines a function: runs when called
    return [{ line: i + 1, text: l }];
  });
}

test('no module reads the process or draws randomness when it loads', () => {
  const found = bundled()
    .concat(path.join(REPO, 'src/protocol.ts'))
    .flatMap((file) => topLevelStatements(fs.readFileSync(file, 'utf8'))
      .filter((s) => PROCESS_FACTS.test(s.text))
      .map((s) => `${path.relative(REPO, file)}:${s.line}: ${s.text.trim()}`));
  assert.deepEqual(found, [], 'compute these when first needed, not at load');
});

test('the guard sees a top-level read of the process, and not one inside a function', () => {
  const sample = 'const pid = process.pid;\nexport const at = () => Date.now();\nfunction f() {\n  return process.env.X;\n}\n';
  assert.deepEqual(topLevelStatements(sample).filter((s) => PROCESS_FACTS.test(s.text)).map((s) => s.line), [1]);
});

test("nothing asks Node's os module for the uname it read at load", () => {
  const found = bundled()
    .flatMap((file) => fs.readFileSync(file, 'utf8').split('\n').map((l, i) => ({ file, line: i + 1, text: l })))
    .filter((l) => UNAME_AT_LOAD.test(l.text) && !/^\s*(\*|\/\/)/.test(l.text) && !/what Node read at load is all there is/.test(l.text))
    .map((l) => `${path.relative(REPO, l.file)}:${l.line}: ${l.text.trim()}`);
  assert.deepEqual(found, [], 'ask the kernel (/proc/sys/kernel/osrelease, as pid1/kernel-modules.ts kernelRelease does)');
});
