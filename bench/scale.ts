// Scale: one container grown to many tracked processes (execs of `sleep`, in
// concurrent batches), printing for each step the exec rate over that step,
// the agent's VmRSS and RssAnon, its memory per tracked process, and its
// open fds; the first and last rows once the agent has been idle a while
// (--idle S, 30 by default). Per-event work that grows with the number of
// processes shows as a falling rate. Then the container is removed with all of them. On the host
// the bundle runs as the tests start it; with --guest the single executable is
// PID 1 of a VM (figures from GetMetrics, over the serial channel), where the
// agent raises its own open-file limit: the host's hard limit, which this
// machine's root may not raise, caps the host run at a third of it. A failed
// exec ends the run with the table so far and the error. Asserts nothing.
//   npm run bench:scale                                  (builds first)
//   node --import tsx bench/scale.ts [--processes N] [--step N] [--batch N] [--idle S] [--guest [--memory MiB]]
import { AgentClient } from '../src/client/client';
import { agentNodePid, startAgent } from '../test/helpers/agent-process';
import { sampleAgent } from '../test/helpers/soak';
import { containerSpec } from '../test/helpers/spec';
import { metric, startBenchGuest } from './guest-vm';
import { printTable } from './stdout';

const flag = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const GUEST = process.argv.includes('--guest');
const TOTAL = flag('processes', GUEST ? 10_000 : 2000);
const STEP = flag('step', Math.max(100, TOTAL / 10));
const BATCH = flag('batch', 20);
const IDLE_S = flag('idle', 30);
const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));
const proc = (args: string[]) => ({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, terminal: false });

interface Usage { rssKb: number; anonKb: number; fds: number; guestInUseMb?: number }
interface Subject { addr: string; usage(client: AgentClient): Promise<Usage>; stop(): Promise<void> }

async function onHost(): Promise<Subject> {
  const agent = await startAgent({ keepLine: (l) => l.includes('"msg":"announce"') });
  const pid = agentNodePid(agent.child.pid!);
  return {
    addr: agent.addr,
    usage: async () => {
      const s = sampleAgent(pid);
      return { rssKb: s.vmRssKiB, anonKb: s.rssAnonKiB, fds: s.fds };
    },
    stop: () => agent.stop(),
  };
}

async function inGuest(): Promise<Subject> {
  const guest = await startBenchGuest('scale', { memoryMiB: flag('memory', 6144) });
  return {
    addr: guest.addr,
    usage: async (client) => {
      const text = (await client.v2('GetMetrics', {})).metrics;
      const value = (name: string) => metric(text, name);
      return {
        rssKb: value('agent_process_resident_memory_bytes') / 1024, anonKb: value('agent_process_resident_anon_bytes') / 1024,
        fds: value('agent_process_open_fds'), guestInUseMb: (value('guest_memory_total_bytes') - value('guest_memory_available_bytes')) / 1e6,
      };
    },
    stop: guest.stop,
  };
}

async function main(): Promise<void> {
  const subject = GUEST ? await inGuest() : await onHost();
  const client = await AgentClient.connect(subject.addr, { protocols: ['v2'], connectTimeout: GUEST ? 60 : 5 });
  const rows = [['tracked processes', 'execs/s (this step)', 'ms per exec (p50 of step)', 'VmRSS MB', 'RssAnon MB', 'RssAnon per process KB (since 0)', 'fds',
    ...(GUEST ? ['guest memory in use MB'] : [])]];
  const row = (n: string, rate: string, p50: string, u: Usage, perProcess: string) =>
    rows.push([n, rate, p50, (u.rssKb / 1000).toFixed(1), (u.anonKb / 1000).toFixed(1), perProcess, String(u.fds), ...(GUEST ? [u.guestInUseMb!.toFixed(0)] : [])]);
  let failure: unknown;
  try {
    await client.createContainer({ containerId: 'scale', ociSpec: containerSpec({ rootPath: 'busybox', args: ['sleep', '1000000'] }) });
    await client.startContainer({ containerId: 'scale' });
    // The base is idle as the last row is: compared with a figure taken just after start-up's work, the idle one would look too small.
    await sleep(IDLE_S);
    const base = await subject.usage(client);
    row(`0, idle ${IDLE_S} s after start`, '', '', base, '');
    let n = 0;
    try {
      while (n < TOTAL) {
        const t0 = performance.now();
        const times: number[] = [];
        const target = Math.min(TOTAL, n + STEP);
        while (n < target) {
          const batch = Array.from({ length: Math.min(BATCH, target - n) }, (_, i) => n + i);
          await Promise.all(batch.map(async (i) => {
            const s = performance.now();
            await client.exec({ containerId: 'scale', execId: `s${i}`, process: proc(['sleep', '1000000']) });
            times.push(performance.now() - s);
          }));
          n += batch.length;
        }
        const secs = (performance.now() - t0) / 1000;
        const u = await subject.usage(client);
        times.sort((a, b) => a - b);
        row(String(n), (STEP / secs).toFixed(1), times[Math.floor(times.length / 2)]!.toFixed(0), u, ((u.anonKb - base.anonKb) / n).toFixed(1));
        process.stderr.write(`scale: ${n} processes\n`);
      }
      // What the agent keeps per process once it is idle again: V8 shrinks its heap and the agent trims malloc (memory-trim.ts) in that time.
      await sleep(IDLE_S);
      const u = await subject.usage(client);
      row(`${n}, idle ${IDLE_S} s later`, '', '', u, ((u.anonKb - base.anonKb) / n).toFixed(1));
    } catch (err) {
      failure = err;
      const u = await subject.usage(client);
      row(`failed after ${n}`, '', '', u, ((u.anonKb - base.anonKb) / Math.max(n, 1)).toFixed(1));
    }
    // A long timeout: killing and reaping 10,000 processes under TCG takes longer than the default 10 s.
    const t = performance.now();
    await client.removeContainer({ containerId: 'scale', timeoutSeconds: 900 });
    row(`removed (${n})`, '', `${(performance.now() - t).toFixed(0)} ms in all`, await subject.usage(client), '');
  } finally {
    client.close();
    await subject.stop();
  }
  console.log(GUEST
    ? `scale bench (guest: the single executable as PID 1, QEMU ${process.env.AGENT_VM_ACCEL ?? 'accel by probe'}, ${flag('memory', 6144)} MiB; execs in concurrent batches of ${BATCH})`
    : `scale bench (host, the bundle as the tests start it; execs in concurrent batches of ${BATCH}): node ${process.version}`);
  printTable(rows);
  if (failure) console.log(`the run stopped at an exec refused: ${(failure as Error).message}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
