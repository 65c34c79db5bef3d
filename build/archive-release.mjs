// Archives a release for the compatibility suite (docs/compatibility.md,
// "Release archives and the version matrix"):
// the bundled agent and agentctl, our addons, the protos, golden encodings of
// every message (build/golden.mjs), the state file the agent writes
// (state/state.json, from 0.4.0), and what it was (RELEASE.json), with the
// sha256 of every file (SHA256SUMS, `sha256sum -c` format).
//   npm run build && node build/archive-release.mjs 0.2.0
//   node build/archive-release.mjs 0.2.0 --out /tmp/scratch-archive   (a scratch copy, anywhere)
//
// A released archive never changes: the script refuses an existing directory,
// and test/compat/releases.test.ts checks every file against SHA256SUMS.
// The version and the protocol list are the agent's own (src/agent/version.ts),
// checked against what the built bundle announces when it starts, so the
// archive says what the bundle really serves; the bundle must be built from
// HEAD with no uncommitted change to what goes into it.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGolden } from './golden.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FILES = ['agent.cjs', 'agentctl.cjs', 'agent_native.node', 'pty.node'];

function usage(message) {
  throw new Error(`${message}\nusage: node build/archive-release.mjs X.Y.Z [--out DIR] [--allow-dirty]`);
}

/** AGENT_VERSION and PROTOCOL_VERSIONS as src/agent/version.ts declares them. */
export function sourceVersion(file = path.join(repo, 'src/agent/version.ts')) {
  const text = readFileSync(file, 'utf8');
  const version = /export const AGENT_VERSION\s*=\s*'([^']+)'/.exec(text)?.[1];
  const list = /export const PROTOCOL_VERSIONS\s*=\s*\[([^\]]*)\]/.exec(text)?.[1];
  if (!version || list === undefined) throw new Error(`${file}: cannot find AGENT_VERSION and PROTOCOL_VERSIONS`);
  const protocols = [...list.matchAll(/'([^']+)'/g)].map((m) => m[1]);
  if (protocols.length === 0) throw new Error(`${file}: PROTOCOL_VERSIONS is empty`);
  return { version, protocols };
}

/**
 * Starts the bundle on a private unix socket and returns its announce line
 * (version, build, protocols). With `stateSample`, the state file the bundle
 * writes at start (from 0.4.0) is copied there: the release's own sample of
 * its state format, which every later release must read.
 */
export async function bundleAnnounce(bundle, timeoutMs = 15000, stateSample = null) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'archive-announce-'));
  const child = spawn(process.execPath, [
    bundle, '--server-addr', `unix://${path.join(dir, 'agent.sock')}`, '--state-dir', path.join(dir, 'state'),
    '--shared-dir', path.join(dir, 'shared'), '--channel', 'none', '--log-level', 'info',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${bundle} did not announce itself within ${timeoutMs} ms:\n${output}`)), timeoutMs);
      const onData = (b) => {
        output += b.toString();
        for (const line of output.split('\n')) {
          if (!line.includes('"msg":"announce"')) continue;
          clearTimeout(timer);
          try {
            resolve(JSON.parse(line));
          } catch (err) {
            reject(err);
          }
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${bundle} exited (code ${code}, signal ${signal}) before announcing itself:\n${output}`));
      });
    }).then(async (announce) => {
      if (!stateSample) return announce;
      // Something in it: a sandbox, made with a request id (containers would need crun and a root file system).
      execFileSync(process.execPath, [path.join(path.dirname(bundle), 'agentctl.cjs'), '--addr', `unix://${path.join(dir, 'agent.sock')}`, '--protocol', '2',
        'CreateSandbox', 'sandbox_id=sample', 'request_id=state-sample-1'], { stdio: 'ignore' });
      const file = path.join(dir, 'state', 'state.json');
      for (const deadline = Date.now() + 5000; !(existsSync(file) && readFileSync(file, 'utf8').includes('state-sample-1')); await new Promise((r) => setTimeout(r, 50))) {
        if (Date.now() > deadline) throw new Error(`${bundle} wrote no ${file} with the sample sandbox within 5 s`);
      }
      mkdirSync(path.dirname(stateSample), { recursive: true });
      cpSync(file, stateSample);
      return announce;
    });
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every file under dir, relative, sorted. */
export function filesUnder(dir) {
  const walk = (d) => readdirSync(d).flatMap((name) => {
    const full = path.join(d, name);
    return statSync(full).isDirectory() ? walk(full) : [path.relative(dir, full)];
  });
  return walk(dir).sort();
}

export const sha256File = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** SHA256SUMS of every file of an archive but itself. */
export function checksums(dir) {
  return filesUnder(dir).filter((f) => f !== 'SHA256SUMS').map((f) => `${sha256File(path.join(dir, f))}  ${f}\n`).join('');
}

async function main() {
  const args = process.argv.slice(2);
  const version = args[0];
  if (!version || !/^\d+\.\d+\.\d+$/.test(version)) usage('the version is missing or not X.Y.Z');
  let out = path.join(repo, 'test/fixtures/releases', version);
  let scratch = false;
  let allowDirty = false;
  for (let i = 1; i < args.length; i++) {
    if (args[i] === '--out') {
      out = path.resolve(args[++i] ?? usage('--out needs a directory'));
      scratch = true;
    } else if (args[i] === '--allow-dirty') allowDirty = true;
    else usage(`unknown argument ${args[i]}`);
  }
  if (existsSync(out)) throw new Error(`${out} exists: a released archive never changes`);

  const source = sourceVersion();
  const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).version;
  if (!scratch && (source.version !== version || pkg !== version)) {
    throw new Error(`archiving ${version}, but src/agent/version.ts says ${source.version} and package.json ${pkg}: bump both, rebuild, then archive`);
  }
  for (const f of FILES) if (!existsSync(path.join(repo, 'dist', f))) throw new Error(`dist/${f} is missing: run npm run build`);

  const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim();
  const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src', 'proto', 'build', 'package.json', 'package-lock.json'], { cwd: repo, encoding: 'utf8' }).trim();
  if (dirty && !allowDirty && !scratch) {
    throw new Error(`uncommitted changes to what goes into the bundle (the archive would not be build ${head}):\n${dirty}\ncommit them (or archive from a clean checkout)`);
  }
  const sampleDir = mkdtempSync(path.join(os.tmpdir(), 'archive-state-'));
  const sample = path.join(sampleDir, 'state.json');
  const announced = await bundleAnnounce(path.join(repo, 'dist', 'agent.cjs'), 15000, sample);
  const problems = [];
  if (announced.version !== source.version) problems.push(`dist/agent.cjs announces version ${announced.version}, src/agent/version.ts says ${source.version}`);
  if (JSON.stringify(announced.protocols) !== JSON.stringify(source.protocols)) {
    problems.push(`dist/agent.cjs serves ${JSON.stringify(announced.protocols)}, src/agent/version.ts says ${JSON.stringify(source.protocols)}`);
  }
  if (announced.build !== head) problems.push(`dist/agent.cjs is build ${announced.build}, HEAD is ${head}`);
  if (problems.length && !scratch) throw new Error(`${problems.join('; ')}: run npm run build`);
  for (const p of problems) console.warn(`archive-release: warning (scratch archive): ${p}`);

  mkdirSync(out, { recursive: true });
  try {
    for (const f of FILES) cpSync(path.join(repo, 'dist', f), path.join(out, f));
    cpSync(path.join(repo, 'proto'), path.join(out, 'proto'), { recursive: true });
    const golden = writeGolden(path.join(out, 'golden'), path.join(out, 'proto'));
    // The state sample, as the release wrote it (state/state.json; test/compat/state-samples.test.ts).
    cpSync(sample, path.join(out, 'state', 'state.json'));
    rmSync(sampleDir, { recursive: true, force: true });
    writeFileSync(path.join(out, 'RELEASE.json'), JSON.stringify({
      version: scratch ? announced.version : version,
      build: announced.build,
      protocols: announced.protocols,
      node: process.version,
      golden: 'golden/index.json',
      state_sample: 'state/state.json',
      ...(scratch ? { scratch: `archived as ${version} with --out: not a release` } : {}),
    }, null, 2) + '\n');
    writeFileSync(path.join(out, 'SHA256SUMS'), checksums(out));
    console.log(`archived release ${version} (build ${announced.build}, protocols ${announced.protocols.join(', ')}, ` +
      `${golden.messages.length} golden messages) in ${path.relative(repo, out) || out}`);
  } catch (err) {
    rmSync(out, { recursive: true, force: true });
    throw err;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(`archive-release: ${err.message}`);
    process.exitCode = 1;
  });
}
