// The conversions every protocol version shares (common-wire.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storageFromWire } from './common-wire';

describe('common wire conversions', () => {
  it('a storage keeps every field', () => {
    assert.deepEqual(
      storageFromWire({ driver: 'tmpfs', driver_options: ['x'], source: 's', fstype: 'tmpfs', options: ['size=1m'], mount_point: 'm' }),
      { driver: 'tmpfs', driverOptions: ['x'], source: 's', fstype: 'tmpfs', options: ['size=1m'], mountPoint: 'm' },
    );
  });
});
