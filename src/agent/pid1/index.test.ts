import assert from 'node:assert/strict';
import { test } from 'node:test';
import { splitBootModules } from './index';

const DEFAULT = ['virtio_pci', 'virtio_console', 'vsock', 'vmw_vsock_virtio_transport', 'vsock_loopback', '9pnet_virtio', '9p', 'overlay', 'virtio_net', 'virtio_rng'];

test('only the modules the configured listeners need are loaded before the announce', () => {
  const cases: Array<[{ serial: boolean; vsock: boolean }, string[]]> = [
    [{ serial: true, vsock: true }, ['virtio_console', 'vsock', 'vmw_vsock_virtio_transport']],
    [{ serial: true, vsock: false }, ['virtio_console']],
    [{ serial: false, vsock: true }, ['vsock', 'vmw_vsock_virtio_transport']],
    [{ serial: false, vsock: false }, []],
  ];
  for (const [listeners, now] of cases) {
    const split = splitBootModules(DEFAULT, listeners);
    assert.deepEqual(split.now, now, JSON.stringify(listeners));
    assert.deepEqual([...split.now, ...split.later].sort(), [...DEFAULT].sort(), 'every module is loaded, once');
  }
});

test('an operator list keeps its order and spelling; a dash matches an underscore', () => {
  assert.deepEqual(splitBootModules(['9p', 'virtio-console', 'vmw_vsock_virtio_transport', 'vsock'], { serial: true, vsock: true }), {
    now: ['virtio-console', 'vmw_vsock_virtio_transport', 'vsock'],
    later: ['9p'],
  });
});
