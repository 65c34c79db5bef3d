import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { excerpt } from './errors';

describe('excerpt', () => {
  it('quotes a short value whole, as JSON', () => {
    assert.equal(excerpt('c1'), '"c1"');
    assert.equal(excerpt('say "hi"\\'), '"say \\"hi\\"\\\\"');
    assert.equal(excerpt(''), '""');
  });

  it('cuts a long value to max characters and says how long it was', () => {
    assert.equal(excerpt('x'.repeat(65536)), `"${'x'.repeat(64)}"... (65536 characters)`);
    assert.equal(excerpt('abcdef', 3), '"abc"... (6 characters)');
    assert.equal(excerpt('abc', 3), '"abc"', 'exactly max is not cut');
    // Bounded whatever the input: a megabyte gives a short line.
    assert.ok(excerpt('y'.repeat(1 << 20)).length < 100);
  });

  it('is printable ASCII: controls, non-ASCII and bidi overrides escaped, still valid JSON', () => {
    const shown = excerpt('nul\0 nl\n tab\t é 日 🙂 \u202e del\x7f');
    assert.match(shown, /^[\x20-\x7e]*$/);
    assert.equal(shown, '"nul\\u0000 nl\\n tab\\t \\u00e9 \\u65e5 \\ud83d\\ude42 \\u202e del\\u007f"');
    assert.equal(JSON.parse(shown), 'nul\0 nl\n tab\t é 日 🙂 \u202e del\x7f');
  });

  it('never cuts a surrogate pair in half, and escapes a lone surrogate', () => {
    const shown = excerpt(`${'a'.repeat(63)}🙂 and more`);
    assert.equal(shown, `"${'a'.repeat(63)}"... (74 characters)`);
    assert.equal(excerpt('\ud800x'), '"\\ud800x"');
  });

  it('shows other values as their JSON text, cut the same way', () => {
    assert.equal(excerpt(['ro', 'size=1m']), '["ro","size=1m"]');
    assert.equal(excerpt(1500), '1500');
    assert.equal(excerpt(undefined), 'undefined');
    assert.equal(excerpt(Array(100).fill('opt')), `${JSON.stringify(Array(100).fill('opt')).slice(0, 64)}... (601 characters)`);
  });

  it('leaves the quotes off on request (lists of names)', () => {
    assert.equal(excerpt('agent.lgo_level', 80, { quote: false }), 'agent.lgo_level');
    assert.equal(excerpt('k\n'.repeat(50), 4, { quote: false }), 'k\\nk\\n... (100 characters)');
  });
});
