import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AgentError } from './errors';
import { resolveWithin, validateId } from './validate';

const invalid = (fn: () => unknown) =>
  assert.throws(fn, (e: unknown) => e instanceof AgentError && e.kind === 'invalid-argument');

describe('validateId', () => {
  it('accepts ordinary ids', () => {
    for (const id of ['c1', 'a.b-c_d', 'X'.repeat(128), '0abc']) assert.equal(validateId('container id', id), id);
  });
  it('refuses ids that could be paths or flags', () => {
    for (const id of ['', '.', '..', '../x', 'a/b', '-rf', '.hidden', 'sp ace', 'X'.repeat(129), 'nul\0']) {
      invalid(() => validateId('container id', id));
    }
  });
  it('echoes a short excerpt of a long or unprintable id, never the whole', () => {
    assert.throws(() => validateId('container id', 'x'.repeat(64 * 1024)), (e: unknown) => {
      assert.ok(e instanceof AgentError);
      assert.equal(e.message, `container id "${'x'.repeat(64)}"... (65536 characters) is invalid: use 1-128 characters of [A-Za-z0-9_.-], starting with a letter or digit`);
      return true;
    });
    assert.throws(() => validateId('exec id', 'a\nb'), { message: /^exec id "a\\nb" is invalid/ });
  });
});

describe('resolveWithin', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'root-'));
  fs.mkdirSync(path.join(root, 'inside'));
  fs.symlinkSync('/etc', path.join(root, 'out'));
  fs.symlinkSync('inside', path.join(root, 'in'));

  it('resolves relative and absolute paths inside the root, existing or not', () => {
    assert.equal(resolveWithin(root, 'inside'), path.join(fs.realpathSync(root), 'inside'));
    assert.equal(resolveWithin(root, `${root}/inside/new/file`), path.join(fs.realpathSync(root), 'inside/new/file'));
    assert.equal(resolveWithin(root, 'in/x'), path.join(fs.realpathSync(root), 'inside/x'));
    assert.equal(resolveWithin(root, '..data'), path.join(fs.realpathSync(root), '..data'));
  });
  it('refuses .., absolute paths elsewhere, symlinks out, NUL and empty', () => {
    for (const p of ['../x', 'inside/../../x', '/etc/passwd', 'out/passwd', 'out', 'a\0b', '']) invalid(() => resolveWithin(root, p));
  });
  it('refuses what the kernel would call too long (PATH_MAX, NAME_MAX), with a short message', () => {
    assert.throws(() => resolveWithin(root, 'p'.repeat(1 << 20), 'CopyFile path'), (e: unknown) => {
      assert.ok(e instanceof AgentError && e.kind === 'invalid-argument');
      assert.equal(e.message, `CopyFile path "${'p'.repeat(64)}"... (1048576 characters) is too long: 1048576 bytes, at most 4095`);
      return true;
    });
    invalid(() => resolveWithin(root, `inside/${'n'.repeat(256)}`));
    invalid(() => resolveWithin(root, `${'d/'.repeat(2048)}f`));
    // The limits themselves are fine.
    assert.equal(resolveWithin(root, `inside/${'n'.repeat(255)}`), path.join(fs.realpathSync(root), 'inside', 'n'.repeat(255)));
    assert.ok(resolveWithin(root, `${'d/'.repeat(2000)}f`).endsWith('/d/f'));
  });
});
