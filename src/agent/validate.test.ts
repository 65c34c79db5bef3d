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
});
