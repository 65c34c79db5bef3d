// The fallback image: no root disk, the whole guest in one initramfs that
// copies itself into a tmpfs, so crun still gets a real pivot_root.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SHARE_TAG, startVm, type Vm } from '../../build/vm';
import { AgentClient } from '../../src/client/client';
import { makeBusyboxRootfs } from '../helpers/rootfs';
import { containerSpec } from '../helpers/spec';
import { readToEnd } from '../helpers/stdio';

describe('guest booted from the initramfs alone', () => {
  let vm: Vm;
  let client: AgentClient;
  let shared: string;

  before(async () => {
    shared = fs.mkdtempSync(path.join(os.tmpdir(), 'guest-initramfs-'));
    makeBusyboxRootfs(path.join(shared, 'busybox'));
    vm = await startVm({ sharedDir: shared, root: 'initramfs' });
    await vm.waitForConsole(/"msg":"announce"/, 120_000);
    client = await AgentClient.connect(vm.agentAddr, { connectTimeout: 60 });
  });
  after(async () => {
    client?.close();
    await vm?.stop();
    if (shared) fs.rmSync(shared, { recursive: true, force: true });
  });

  it('runs a container with a real pivot_root from a tmpfs root', async () => {
    await client.v1('CreateSandbox', {
      storages: [{ driver: '9p', source: SHARE_TAG, fstype: '9p', options: [], mount_point: '/run/kata-containers/shared/containers' }],
    });
    // crun pivot_roots (no --no-pivot): from an initramfs root that fails with EINVAL, so a
    // container that runs at all shows the guest switched to a real (tmpfs) root.
    const spec = containerSpec({ rootPath: 'busybox', args: ['echo', 'ok'] });
    await client.v1('CreateContainer', { container_id: 'c', oci_spec_json: JSON.stringify(spec) });
    await client.v1('StartContainer', { container_id: 'c' });
    assert.equal(await readToEnd(client, 'c', ''), 'ok\n');
    assert.equal((await client.v1('WaitProcess', { container_id: 'c', exec_id: '' })).status, 0);
    await client.v1('RemoveContainer', { container_id: 'c' });
  });

  it('powers off at DestroySandbox', async () => {
    await client.v1('DestroySandbox', {});
    assert.equal(await vm.exited, 0);
    assert.doesNotMatch(vm.console(), /Kernel panic/);
  });
});
