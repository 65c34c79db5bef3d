// Baseline for bench/run.ts: `crun exec ID true` against a container made
// directly with crun, no agent involved. Runs inside the mount namespace
// bench/run.ts sets up (private propagation, its own cgroup2 mount), because
// crun refuses this machine's hybrid cgroups otherwise.
//
// Usage: node bench/crun-exec.mjs CRUN_ROOT BUNDLE ID RUNS WARMUP
// Prints {"ms": [...], "initPid": N} on stdout.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const [root, bundle, id, runsArg, warmupArg] = process.argv.slice(2);
const runs = Number(runsArg);
const warmup = Number(warmupArg);
const global = ['--root', root, '--cgroup-manager=disabled'];

function crun(args, stdio = 'pipe') {
  const r = spawnSync('crun', [...global, ...args], { stdio, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`crun ${args.join(' ')} exited ${r.status}: ${r.stderr ?? ''}`);
  return r;
}

const pidFile = path.join(bundle, 'init.pid');
let created = false;
try {
  // The init process keeps whatever stdio it gets: give it none, so nothing waits on its pipes.
  crun(['create', '--bundle', bundle, '--pid-file', pidFile, id], 'ignore');
  created = true;
  crun(['start', id], 'ignore');
  const initPid = Number(fs.readFileSync(pidFile, 'utf8'));
  const ms = [];
  for (let i = 0; i < warmup + runs; i++) {
    const t0 = process.hrtime.bigint();
    crun(['exec', id, 'true']);
    const t = Number(process.hrtime.bigint() - t0) / 1e6;
    if (i >= warmup) ms.push(t);
  }
  process.stdout.write(`${JSON.stringify({ ms, initPid })}\n`);
} finally {
  if (created) {
    spawnSync('crun', [...global, 'kill', id, 'KILL'], { stdio: 'ignore' });
    spawnSync('crun', [...global, 'delete', '--force', id], { stdio: 'ignore' });
  }
}
