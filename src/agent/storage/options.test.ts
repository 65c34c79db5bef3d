import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AgentError } from '../errors';
import { constants } from '../../native/native';
import { FLAG_OPTIONS, flagValue, formatData, parseMountOptions } from './options';

const invalid = (fn: () => unknown, message?: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof AgentError, String(e));
    assert.equal(e.kind, 'invalid-argument', e.message);
    if (message) assert.match(e.message, message);
    return true;
  });

describe('parseMountOptions', () => {
  const c = constants;

  it('maps flag options to MS_* flags and keeps the rest as data', () => {
    const p = parseMountOptions(['ro', 'nosuid', 'nodev', 'noexec', 'relatime', 'size=64m', 'mode=0755']);
    assert.equal(p.flags, c.MS_RDONLY | c.MS_NOSUID | c.MS_NODEV | c.MS_NOEXEC | c.MS_RELATIME);
    assert.equal(p.propagation, 0);
    assert.equal(formatData(p.data), 'size=64m,mode=0755');
  });

  it('bind and rbind, and the flags the addon does not export (Linux UAPI values)', () => {
    assert.equal(parseMountOptions(['bind']).flags, c.MS_BIND);
    assert.equal(parseMountOptions(['rbind']).flags, c.MS_BIND | c.MS_REC);
    assert.equal(parseMountOptions(['noatime', 'nodiratime', 'sync', 'dirsync']).flags, 1024 | 2048 | 16 | 128);
    assert.equal(flagValue('MS_NOATIME'), 1024);
  });

  it('splits comma-separated options and lets later options win', () => {
    const p = parseMountOptions(['ro,nosuid', 'size=1m', 'rw', 'size=2m,,']);
    assert.equal(p.flags, c.MS_NOSUID);
    assert.deepEqual(p.data, [{ key: 'size', value: '2m' }]);
    assert.equal(parseMountOptions(['noexec', 'exec', 'nodev', 'dev', 'suid']).flags, 0);
  });

  it('keeps data flags without a value and values containing "="', () => {
    const p = parseMountOptions(['dax', 'x=a=b']);
    assert.deepEqual(p.data, [{ key: 'dax', value: null }, { key: 'x', value: 'a=b' }]);
    assert.equal(formatData(p.data), 'dax,x=a=b');
  });

  it('propagation options become a separate change; the last one wins', () => {
    assert.equal(parseMountOptions(['rshared']).propagation, c.MS_SHARED | c.MS_REC);
    assert.equal(parseMountOptions(['shared', 'private']).propagation, c.MS_PRIVATE);
    assert.equal(parseMountOptions(['rslave']).flags, 0);
  });

  it('refuses remount/move, NUL and option text that is no option', () => {
    invalid(() => parseMountOptions(['remount']), /options\[0\]: option "remount" is not allowed/);
    invalid(() => parseMountOptions(['ro', 'move']), /options\[1\]/);
    invalid(() => parseMountOptions(['size=1m\0']), /NUL/);
    invalid(() => parseMountOptions(['=x']), /not a mount option/);
    invalid(() => parseMountOptions(['a b']), /not a mount option/);
  });

  it('does not treat inherited object keys as options', () => {
    const p = parseMountOptions(['constructor', 'toString']);
    assert.equal(p.flags, 0);
    assert.deepEqual(p.data.map((d) => d.key), ['constructor', 'toString']);
    assert.ok(!Object.hasOwn(FLAG_OPTIONS, 'constructor'));
  });
});
