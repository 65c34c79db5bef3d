// The entry point of every bundle: the agent, or agentctl when started under
// a name beginning with "agentctl" or as `agent ctl ARGS` — so the single
// guest binary also carries a client (for checks inside the VM).
import path from 'node:path';
import { run as agentctl } from '../client/agentctl';
import { main } from './main';

const args = process.argv.slice(2);
const calledAsCtl = path.basename(process.argv[1] ?? '').startsWith('agentctl');
if (calledAsCtl || args[0] === 'ctl') {
  agentctl(calledAsCtl ? args : args.slice(1), (s) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`)).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => {
      process.stderr.write(`agentctl: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
} else {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    // As the guest's init the agent must not exit: the kernel would panic and take every workload with it.
    if (process.pid === 1) setInterval(() => {}, 1 << 30);
    else process.exitCode = 1;
  });
}
