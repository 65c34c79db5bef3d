// For tests only (never imported by the agent, so never bundled): an assertion
// on the typed errors of errors.ts, shared by the tests beside the code. It
// lives in src/ because nothing under src/ may import test/ (test/layering.test.ts).
import assert from 'node:assert/strict';
import { AgentError } from './errors';

/**
 * A validator for assert.throws/assert.rejects: the error is an AgentError of
 * `kind`, and its message matches `message` when one is given.
 */
export const isKind = (kind: string, message?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof AgentError, `not an AgentError: ${String(err)}`);
  assert.equal(err.kind, kind, err.message);
  if (message) assert.match(err.message, message);
  return true;
};
