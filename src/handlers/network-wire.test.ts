// Tests of the network conversions (network-wire.ts): the wire messages v1 and v2 share (Interface,
// Route, ARPNeighbor, IPFamily) to the network module's arguments, and the
// invalid-argument errors a bad message gets. Pure functions: no namespace, no
// command, no build needed. The network module itself is tested in
// src/agent/network/network.test.ts, the RPCs end to end in
// test/integration/network.test.ts.
// Run: node --import tsx --test src/handlers/network-wire.test.ts

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isKind } from '../agent/errors.testing';
import { familyFromWire, interfaceFromWire, neighborFromWire, routeFromWire } from './network-wire';

describe('network wire conversions', () => {
  test('IPFamily names map to families; unknown values are refused', () => {
    assert.equal(familyFromWire('f', 'IP_FAMILY_V4'), 4);
    assert.equal(familyFromWire('f', 'IP_FAMILY_V6'), 6);
    assert.equal(familyFromWire('f', 'IP_FAMILY_UNSPECIFIED'), undefined);
    assert.throws(() => familyFromWire('routes[0].family', 7), (e) => isKind('invalid-argument')(e) && /routes\[0\]\.family 7/.test((e as Error).message));
  });

  test('Interface: device stands for name, mask is parsed, a rename is refused', () => {
    const base = { device: '', name: '', ip_addresses: [], mtu: 0, hw_addr: '', type: '', up: false };
    assert.deepEqual(
      interfaceFromWire({ ...base, device: 'eth0', mtu: 1400, up: true,
        ip_addresses: [{ family: 'IP_FAMILY_V4', address: '10.0.0.2', mask: '24' }] }),
      { name: 'eth0', mtu: 1400, up: true, addresses: [{ family: 4, address: '10.0.0.2', prefix: 24 }] },
    );
    assert.deepEqual(interfaceFromWire({ ...base, hw_addr: '02:00:00:00:00:01' }), { hwAddr: '02:00:00:00:00:01', up: false, addresses: [] });
    assert.throws(() => interfaceFromWire({ ...base, device: 'eth0', name: 'eth1' }), isKind('invalid-argument'));
    assert.throws(
      () => interfaceFromWire({ ...base, name: 'eth0', ip_addresses: [{ family: 'IP_FAMILY_V4', address: '10.0.0.2', mask: '/24' }] }),
      (e) => isKind('invalid-argument')(e) && /ip_addresses\[0\]\.mask "\/24"/.test((e as Error).message),
    );
  });

  test('Route and ARPNeighbor conversions', () => {
    assert.deepEqual(
      routeFromWire({ dest: 'default', gateway: '10.0.0.1', device: 'eth0', source: '', scope: '', family: 'IP_FAMILY_UNSPECIFIED' }, 'r'),
      { dest: 'default', gateway: '10.0.0.1', device: 'eth0', source: '', scope: '' },
    );
    const n = { to_ip_address: { family: 'IP_FAMILY_V4' as const, address: '10.0.0.9', mask: '' }, device: 'eth0', lladdr: '02:00:00:00:00:09', state: '' };
    assert.deepEqual(neighborFromWire(n, 'n'), { address: '10.0.0.9', family: 4, device: 'eth0', lladdr: '02:00:00:00:00:09', state: '' });
    assert.throws(() => neighborFromWire({ ...n, to_ip_address: { ...n.to_ip_address, mask: '24' } }, 'n'), isKind('invalid-argument'));
    assert.throws(() => neighborFromWire({ ...n, to_ip_address: null }, 'n'), isKind('invalid-argument'));
  });
});
