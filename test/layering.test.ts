// The layering rules of docs/architecture.md, checked on every import:
// - the core side of the agent (core, process, stdio, oci, storage, network,
//   guest, pid1) imports neither the server (src/agent/server) nor any
//   protocol's handlers (src/handlers): it knows no wire;
// - the client (src/client) imports nothing of the agent (src/agent): what
//   both need lives in src/native;
// - src/native imports neither the agent nor the client;
// - a protocol's handlers import no other protocol's handlers, and code under
//   src/ (tests included) imports nothing under test/;
// - the guest's agent binary carries no QEMU launcher (build/vm.ts, build/accel.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { sourceFiles } from './helpers/source-files';

const REPO = path.resolve(__dirname, '..');
const SRC = path.join(REPO, 'src');

const CORE_SIDE = ['core', 'process', 'stdio', 'oci', 'storage', 'network', 'guest', 'pid1', 'policy', 'state'].map((d) => `src/agent/${d}/`);

interface Import {
  file: string;
  line: number;
  /** Repo-relative path the specifier resolves to (without extension), or the package name. */
  target: string;
}

/** Every static and dynamic import, re-export and require of a file. */
export function importsOf(file: string, text = fs.readFileSync(file, 'utf8')): Import[] {
  const out: Import[] = [];
  const re = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)['"]([^'"]+)['"]/g;
  for (const m of text.matchAll(re)) {
    const spec = m[1]!;
    const line = text.slice(0, m.index).split('\n').length;
    const target = spec.startsWith('.')
      ? path.relative(REPO, path.resolve(path.dirname(file), spec)).replace(/\.(js|ts|mjs|cjs)$/, '')
      : spec;
    out.push({ file: path.relative(REPO, file), line, target });
  }
  return out;
}

const allImports = () => sourceFiles(SRC).flatMap((f) => importsOf(f));
const show = (v: Import[]) => v.map((i) => `${i.file}:${i.line} imports ${i.target}`).join('\n');
const under = (p: string, dir: string) => p === dir.replace(/\/$/, '') || p.startsWith(dir);

test('the core side of the agent imports neither server/ nor handlers/', () => {
  const bad = allImports().filter((i) => CORE_SIDE.some((d) => i.file.startsWith(d)))
    .filter((i) => under(i.target, 'src/agent/server/') || under(i.target, 'src/handlers/'));
  assert.equal(show(bad), '');
});

test('the client imports nothing of the agent; src/native imports neither agent nor client', () => {
  const bad = allImports().filter((i) =>
    (i.file.startsWith('src/client/') && under(i.target, 'src/agent/')) ||
    (i.file.startsWith('src/native/') && (under(i.target, 'src/agent/') || under(i.target, 'src/client/'))));
  assert.equal(show(bad), '');
});

test("a protocol's handlers import no other protocol's handlers; nothing in src/ imports test/", () => {
  const bad = allImports().filter((i) => {
    const version = /^src\/handlers\/(v\d+)\//.exec(i.file)?.[1];
    const otherVersion = version && /^src\/handlers\/(v\d+)(\/|$)/.exec(i.target)?.[1];
    return under(i.target, 'test/') || (otherVersion && otherVersion !== version);
  });
  assert.equal(show(bad), '');
});

test('the import scanner sees every form of import (so the rules above can fail)', () => {
  const fake = path.join(SRC, 'agent', 'core', 'x.ts');
  const found = importsOf(fake, [
    "import { a } from '../server/rpc';",
    "import type { B } from '../../handlers/v1';",
    "export { c } from '../../../test/helpers/x';",
    "const d = await import('../server/listeners.js');",
    "import '../server/side-effect';",
    "const e = require('../../client/client');",
  ].join('\n')).map((i) => i.target);
  assert.deepEqual(found, [
    'src/agent/server/rpc', 'src/handlers/v1', 'test/helpers/x', 'src/agent/server/listeners', 'src/agent/server/side-effect', 'src/client/client',
  ]);
});

test('the guest agent bundle carries no QEMU launcher; the host agentctl does', () => {
  const meta = (name: string) => {
    const file = path.join(REPO, 'dist', `${name}.meta.json`);
    assert.ok(fs.existsSync(file), `${file} is missing: run npm run build`);
    return Object.keys((JSON.parse(fs.readFileSync(file, 'utf8')) as { inputs: Record<string, unknown> }).inputs);
  };
  const agent = meta('agent.cjs');
  assert.ok(agent.includes('src/agent/main.ts'), 'the metafile lists the bundle\'s inputs');
  assert.deepEqual(agent.filter((f) => /^build\/(vm|accel|agentctl-host)\.ts$/.test(f)), []);
  assert.ok(meta('agentctl.cjs').includes('build/vm.ts'));
});
