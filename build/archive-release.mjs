// Archives a release for the compatibility suite (docs/compatibility.md,
// "Release archives and the version matrix"):
// the bundled agent and agentctl, our addon, the protos, and what it was.
//   node build/archive-release.mjs 0.1.0
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const version = process.argv[2];
if (!version || !/^\d+\.\d+\.\d+$/.test(version)) throw new Error('usage: archive-release.mjs X.Y.Z');
const out = path.join(repo, 'test/fixtures/releases', version);
if (existsSync(out)) throw new Error(`${out} exists: a released archive never changes`);
mkdirSync(out, { recursive: true });
for (const f of ['agent.cjs', 'agentctl.cjs', 'agent_native.node', 'pty.node']) {
  if (!existsSync(path.join(repo, 'dist', f))) throw new Error(`dist/${f} is missing: run npm run build`);
  cpSync(path.join(repo, 'dist', f), path.join(out, f));
}
cpSync(path.join(repo, 'proto'), path.join(out, 'proto'), { recursive: true });
const build = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim();
writeFileSync(path.join(out, 'RELEASE.json'), JSON.stringify({ version, build, protocols: ['v1'], node: process.version }, null, 2) + '\n');
console.log(`archived release ${version} (build ${build}) in ${path.relative(repo, out)}`);
