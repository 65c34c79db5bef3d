// The image under launchers and configurations we did not write: the agent is
// the guest's init, so whatever the kernel command line says it must come up
// and serve on whatever channel the VM has — never exit (the kernel would
// panic: the console is read for "Kernel panic").
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { KERNEL_ARGS, REPO, SHARE_TAG, startVm, type Vm } from '../../build/vm';
import { AgentClient } from '../../src/client/client';
import { makeBusyboxRootfs } from '../helpers/rootfs';
import { containerSpec } from '../helpers/spec';

const SHARED_IN_GUEST = '/run/kata-containers/shared/containers';

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
    const shared = fs.mkdtempSync(path.join(os.tmpdir(), 'foreign-shared-'));
    makeBusyboxRootfs(path.join(shared, 'busybox'));
    const vm = await startVm({ cmdline: ['console=ttyS0', 'panic=-1', 'agent.log=debug'], sharedDir: shared });
    try {
      await vm.waitForConsole(/"msg":"announce"/, 120_000);
      const client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60 });
      assert.equal(client.protocol, 'v2');
      const a = announce(vm);
      assert.equal((a.config as { logLevel: string }).logLevel, 'debug');
      assert.equal((a.sources as { logLevel: string }).logLevel, 'kernel');
      // The image loaded vsock itself, so its listener is up too.
      const listeners = a.listeners as Array<{ address: string; state: string }>;
      assert.deepEqual(listeners.find((l) => l.address === 'vsock://-1:1024')?.state, 'serving');
      assert.ok(agentLogs(vm).some((l) => l.level === 20), 'debug lines are logged');
      const ifs = await client.v1('ListInterfaces', {});
      assert.ok(ifs.interfaces.some((i) => i.name === 'lo'));

      // The image's default policy is loaded and enforced.
      const policy = client.agent.policy!;
      assert.equal(policy.loaded, true);
      assert.equal(policy.source, '/etc/agent/policy.json');
      const expected = `sha256:${crypto.createHash('sha256').update(fs.readFileSync(path.join(REPO, 'rootfs', 'policy', 'default.json'))).digest('hex')}`;
      assert.equal(policy.digest, expected);
      await client.v1('CreateSandbox', { sandbox_id: 'pol', storages: [{ driver: '9p', source: SHARE_TAG, fstype: '9p', options: [], mount_point: SHARED_IN_GUEST }] });
      const spec = containerSpec({ rootPath: 'busybox', args: ['sleep', '100'] }) as { linux: { namespaces: Array<{ type: string }> } };
      spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'pid');
      await assert.rejects(client.v1('CreateContainer', { container_id: 'hostpid', oci_spec_json: JSON.stringify(spec) }), (err: grpc.ServiceError) =>
        err.code === grpc.status.PERMISSION_DENIED && /guest's pid namespace.*\/etc\/agent\/policy\.json, rule containers\.host_namespaces/.test(err.details));
      await destroyAndExpectPowerOff(vm, client);
    } finally {
      await vm.stop();
      fs.rmSync(shared, { recursive: true, force: true });
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
      assert.equal(client.protocol, 'v2');
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
