// The host's agentctl (dist/agentctl.cjs): the client of src/client/agentctl.ts
// plus --vm, which boots the guest image in QEMU with the launcher (vm.ts).
// A separate entry so that the launcher stays out of the guest's agent binary.
import { run, type BootedVm } from '../src/client/agentctl';
import { startVm } from './vm';

async function bootVm(sharedDir: string | undefined): Promise<BootedVm> {
  const t0 = Date.now();
  const vm = await startVm(sharedDir ? { sharedDir } : {});
  try {
    await vm.waitForConsole(/"msg":"announce"/, 120_000);
  } catch (err) {
    await vm.stop();
    throw err;
  }
  process.stderr.write(`agentctl: guest booted in ${Date.now() - t0} ms with ${vm.accel.accel} (QEMU pid ${vm.pid}, console ${vm.consoleLog})\n`);
  return vm;
}

run(process.argv.slice(2), (s) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`), { bootVm }).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`agentctl: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
