// Every archived release's state sample (test/fixtures/releases/*/state/,
// from 0.4.0) is read by today's agent: the codec decodes it with no key it
// does not know and no error, and today's bundle's pre-flight run
// (--check-state, what UpgradeAgent runs) accepts it. The rule that makes a
// rollback and an upgrade from any archived release safe (docs/upgrade.md).
// Run: node --import tsx --test test/compat/state-samples.test.ts (after npm run build)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { decodeState } from '../../src/agent/state/codec';
import { STATE_FORMAT } from '../../src/agent/state/document';
import { AGENT_BUNDLE, REPO } from '../helpers/agent-process';

const RELEASES = process.env.AGENT_RELEASES_DIR ?? path.join(REPO, 'test/fixtures/releases');
const samples = fs.readdirSync(RELEASES)
  .map((v) => ({ version: v, dir: path.join(RELEASES, v, 'state') }))
  .filter((r) => fs.existsSync(path.join(r.dir, 'state.json')));

describe('archived state samples', () => {
  it('there is at least one (the first release with the upgrade mechanism has one)', { skip: samples.length === 0 ? 'no release with a state sample archived yet' : false }, () => {
    assert.ok(samples.length > 0);
  });
  for (const s of samples) {
    it(`${s.version}'s sample is read by today's codec and passes today's --check-state`, () => {
      const file = path.join(s.dir, 'state.json');
      const decoded = decodeState(fs.readFileSync(file, 'utf8'), file);
      assert.ok(decoded.format <= STATE_FORMAT, `format ${decoded.format}`);
      assert.deepEqual(decoded.unknownKeys, [], 'an earlier release wrote only keys today knows');
      assert.equal(decoded.state.writtenBy, s.version);
      // The pre-flight reads a copy (it must not touch the archive).
      const copy = fs.mkdtempSync(path.join(REPO, '.cache-state-sample-'));
      try {
        fs.copyFileSync(file, path.join(copy, 'state.json'));
        const r = spawnSync(process.execPath, [AGENT_BUNDLE, '--check-state', '--state-dir', copy], { encoding: 'utf8', timeout: 30_000 });
        assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
        const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
        assert.equal(report.ok, true);
        assert.equal(report.state.written_by, s.version);
      } finally {
        fs.rmSync(copy, { recursive: true, force: true });
      }
    });
  }
});
