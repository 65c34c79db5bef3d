// The entry point of every bundle: the agent, or agentctl when started under
// a name beginning with "agentctl" or as `agent ctl ARGS` — so the single
// guest binary also carries a client (for checks inside the VM).
import { applyV8Flags } from './v8-flags';
import path from 'node:path';
import v8 from 'node:v8';
import { run as agentctl } from '../client/agentctl';
import fs from 'node:fs';
import os from 'node:os';
import { AgentClient } from '../client/client';
import { main } from './main';
import { reapplyGrpcEnvironment } from './server/grpc-environment';
import { checkState } from './upgrade/upgrader';
import { AGENT_VERSION } from './version';

/**
 * The second half of an upgrade's pre-flight (the first is --check-state) (upgrade/upgrader.ts): this
 * image starts as an agent on a private socket and directory, answers its
 * own Negotiate, and exits. One line of JSON; 0 when it served.
 */
async function selfTest(): Promise<number> {
  const dir = fs.mkdtempSync(`${os.tmpdir()}/agent-self-test-`);
  const report = (r: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(r)}\n`);
  try {
    await main(['--server-addr', `unix://${dir}/agent.sock`, '--state-dir', `${dir}/state`, '--shared-dir', `${dir}/shared`,
      '--save-state', 'false', '--channel', 'none', '--log-level', 'error']);
    const client = await AgentClient.connect(`unix://${dir}/agent.sock`, { connectTimeout: 10 });
    report({ ok: true, version: client.agent.agent_version, protocols: client.agent.protocol_versions });
    client.close();
    return 0;
  } catch (err) {
    report({ ok: false, error: err instanceof Error ? err.message : String(err) });
    return 1;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** What this start of the executable is: agentctl, a pre-flight step, or the agent. */
function start(): void {
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
  } else if (args[0] === '--self-test' && process.pid !== 1) {
    selfTest().then((code) => process.exit(code));
  } else if (args.includes('--check-state') && process.pid !== 1) {
    // The pre-flight's state check (upgrade/upgrader.ts): can this image take over the state in DIR?
    const i = args.indexOf('--state-dir');
    const dir = i >= 0 ? args[i + 1] : undefined;
    const { ok, report } = dir ? checkState(dir, AGENT_VERSION) : { ok: false, report: { ok: false, version: AGENT_VERSION, error: '--check-state needs --state-dir DIR' } };
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exitCode = ok ? 0 : 1;
  } else {
    main(process.argv.slice(2)).catch((err: unknown) => {
      process.stderr.write(`agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      // As the guest's init the agent must not exit: the kernel would panic and take every workload with it.
      if (process.pid === 1) setInterval(() => {}, 1 << 30);
      else process.exitCode = 1;
    });
  }
}

// In the single executable the code is evaluated once, when it is built, into
// a V8 startup snapshot (build/sea.mjs): each start then begins here, with the
// modules loaded and the protocol's types made, instead of evaluating them.
if (v8.startupSnapshot?.isBuildingSnapshot()) {
  v8.startupSnapshot.setDeserializeMainFunction(() => {
    applyV8Flags();
    const ignored = reapplyGrpcEnvironment();
    if (ignored.length > 0) {
      process.emitWarning(`${ignored.join(', ')}: grpc-js reads these only when it loads, which in this executable was at build time; run the bundle (dist/agent.cjs) with node to use them`);
    }
    start();
  });
} else {
  start();
}
