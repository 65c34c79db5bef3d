// The image under launchers and configurations we did not write: the agent is
// the guest's init, so whatever the kernel command line says it must come up
// and serve on whatever channel the VM has — never exit (the kernel would
// panic: the console is read for "Kernel panic").
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KERNEL_ARGS, startVm, type Vm } from '../../build/vm';
import { AgentClient } from '../../src/client/client';

/** The announce line the agent logged on the console, parsed. */
function announce(vm: Vm): Record<string, unknown> {
  const line = vm.console().split('\n').find((l) => l.includes('"msg":"announce"'));
  assert.ok(line, 'announce line on the console');
  return JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>;
}

/** Every agent log line on the console, parsed. */
function agentLogs(vm: Vm): Array<Record<string, unknown>> {
  return vm.console().split('\n').filter((l) => l.includes('"name":"agent"')).flatMap((l) => {
    try {
      return [JSON.parse(l.slice(l.indexOf('{'))) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

async function destroyAndExpectPowerOff(vm: Vm, client: AgentClient): Promise<void> {
  await client.v1('DestroySandbox', {});
  client.close();
  const code = await Promise.race([vm.exited, new Promise((r) => setTimeout(() => r('still running'), 30_000))]);
  assert.equal(code, 0, 'QEMU exits 0 after the guest powered off');
  assert.doesNotMatch(vm.console(), /Kernel panic/);
}

describe('the image booted by another launcher', () => {
  it("serves over the serial port with a minimal Kata-style command line, honouring Kata's agent.log=debug", async () => {
    // No agent.kernel_modules, none of our boot options: the image's own defaults must do.
    const vm = await startVm({ cmdline: ['console=ttyS0', 'panic=-1', 'agent.log=debug'] });
    try {
      await vm.waitForConsole(/"msg":"announce"/, 120_000);
      const client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60 });
      assert.equal(client.protocol, 'v1');
      const a = announce(vm);
      assert.equal((a.config as { logLevel: string }).logLevel, 'debug');
      assert.equal((a.sources as { logLevel: string }).logLevel, 'kernel');
      // The image loaded vsock itself, so its listener is up too.
      const listeners = a.listeners as Array<{ address: string; state: string }>;
      assert.deepEqual(listeners.find((l) => l.address === 'vsock://-1:1024')?.state, 'serving');
      assert.ok(agentLogs(vm).some((l) => l.level === 20), 'debug lines are logged');
      const ifs = await client.v1('ListInterfaces', {});
      assert.ok(ifs.interfaces.some((i) => i.name === 'lo'));
      await destroyAndExpectPowerOff(vm, client);
    } finally {
      await vm.stop();
    }
  });

  it('serves with bad and unknown agent.* values: each refused one logged with what was used, a failing listener retried', async () => {
    const vm = await startVm({
      cmdline: [
        ...KERNEL_ARGS,
        'agent.log_vport=-1', 'agent.max_message_bytes=lots', 'agent.server_addr=bogus://x', 'agent.lgo_level=debug',
        'agent.debug_console',
        // Loads no vsock module: the vsock listener cannot open and is retried, the serial port serves regardless.
        'agent.kernel_modules=virtio_console,no_such_module',
        'agent.log_level=debug',
      ],
    });
    try {
      await vm.waitForConsole(/"msg":"announce"/, 120_000);
      const client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60 });
      assert.equal(client.protocol, 'v1');
      const a = announce(vm);
      assert.deepEqual(a.unknownKeys, ['agent.lgo_level']);
      assert.equal(a.configProblems, 3);
      const config = a.config as { logVport: number; maxMessageBytes: number; serverAddr: string[] };
      assert.equal(config.logVport, 0);
      assert.equal(config.maxMessageBytes, 4 * 1024 * 1024);
      assert.deepEqual(config.serverAddr, ['vsock://-1:1024']);
      const logs = agentLogs(vm);
      const refused = logs.filter((l) => l.msg === 'configuration value refused; the option keeps the value shown as used');
      assert.deepEqual(refused.map((l) => l.source).sort(), [
        'kernel command line agent.log_vport', 'kernel command line agent.max_message_bytes', 'kernel command line agent.server_addr',
      ]);
      assert.ok(refused.every((l) => 'used' in l && 'value' in l));
      assert.ok(logs.some((l) => l.msg === 'Kata agent option not supported here; ignored' && l.key === 'agent.debug_console'));
      assert.ok(logs.some((l) => l.msg === 'kernel module not loaded' && l.module === 'no_such_module'));
      const vsock = (a.listeners as Array<{ address: string; state: string; lastError?: string }>).find((l) => l.address === 'vsock://-1:1024');
      assert.equal(vsock?.state, 'retrying');
      assert.match(vsock?.lastError ?? '', /not supported|EAFNOSUPPORT/i);
      assert.ok(logs.some((l) => l.msg === 'listener serving' && l.address === 'serial:agent.channel.0'), 'the serial port serves');
      await destroyAndExpectPowerOff(vm, client);
    } finally {
      await vm.stop();
    }
  });
});
