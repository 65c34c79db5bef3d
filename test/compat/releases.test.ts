// The archived releases (docs/compatibility.md, "Release archives and the
// version matrix"): every archive is as it was archived (SHA256SUMS, or a
// pinned digest for archives from before SHA256SUMS), and today's protos are
// wire- and JSON-compatible with the archived ones (buf breaking): against
// every release's whole set, and each of today's proto files against the
// newest archive that has it (a file absent from older archives, v2 in 0.1.0,
// is checked against the first release that has it, and only skipped, saying
// so, while none has). The agents and clients of each release run against
// today's in matrix.test.ts; golden encodings are read in golden.test.ts.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { checksums } from '../../build/archive-release.mjs';
import { protoFiles } from '../../build/golden.mjs';
import { REPO } from '../helpers/agent-process';
import { compareVersions, RELEASES, releases } from '../helpers/releases';

const BUF = path.join(REPO, 'node_modules/.bin/buf');
const PROTO = path.join(REPO, 'proto');

/**
 * Archives made before archive-release wrote SHA256SUMS: the sha256 of their
 * checksum list (build/archive-release.mjs checksums()), pinned when they were archived.
 */
const PINNED: Record<string, string> = {
  '0.1.0': '2ebd0ced83efc99c9d0d295badcd20bfec6d3d1f10a6c5f12a955607a4bf4233',
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'releases-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function bufBreaking(input: string, against: string, cwd = REPO): { ok: boolean; output: string } {
  const r = spawnSync(BUF, ['breaking', input, '--against', against], { cwd, encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.trim() };
}

it('at least one release is archived', () => assert.ok(releases.length >= 1));

it('buf lint passes on today\'s protos', () => {
  execFileSync(BUF, ['lint'], { cwd: REPO, stdio: 'pipe' });
});

for (const r of releases) {
  describe(`release ${r.version}`, () => {
    it('its archive is as it was archived', () => {
      const sums = path.join(r.dir, 'SHA256SUMS');
      const now = checksums(r.dir);
      if (fs.existsSync(sums)) {
        assert.equal(now, fs.readFileSync(sums, 'utf8'), `${r.dir} differs from its SHA256SUMS: a released archive never changes`);
      } else {
        assert.ok(PINNED[r.version], `${r.dir} has no SHA256SUMS and no pinned digest: archive releases with build/archive-release.mjs`);
        assert.equal(createHash('sha256').update(now).digest('hex'), PINNED[r.version], `${r.dir} differs from what was archived:\n${now}`);
      }
      assert.equal(r.info.version, r.version);
      assert.match(r.info.build, /^[0-9a-f]{7,}$/);
      assert.ok(r.info.protocols.length >= 1 && r.info.protocols.every((p) => /^v\d+$/.test(p)), JSON.stringify(r.info.protocols));
    });

    it('its protos: today\'s are wire- and JSON-compatible with all of them (buf breaking)', () => {
      const res = bufBreaking('proto', path.join(r.dir, 'proto'));
      assert.ok(res.ok, `buf breaking proto --against ${path.relative(REPO, r.dir)}/proto:\n${res.output}`);
    });
  });
}

describe('each of today\'s proto files against the newest archive that has it', () => {
  for (const file of protoFiles(PROTO)) {
    const newest = [...releases].reverse().find((r) => fs.existsSync(path.join(r.dir, 'proto', file)));
    it(`${file}${newest ? ` against ${newest.version}` : ''}`, (t) => {
      if (!newest) {
        t.skip(`no archived release has ${file} yet (${releases.map((r) => r.version).join(', ')}): it is checked once one does`);
        return;
      }
      // The archive's copy of this one file: buf then checks exactly what that release had of it.
      const against = path.join(tmp, `${newest.version}-${file.replace(/\W+/g, '-')}`);
      fs.mkdirSync(path.dirname(path.join(against, file)), { recursive: true });
      fs.copyFileSync(path.join(newest.dir, 'proto', file), path.join(against, file));
      const res = bufBreaking('proto', against);
      assert.ok(res.ok, `buf breaking ${file} against release ${newest.version}:\n${res.output}`);
    });
  }

  it('a protocol version in today\'s protos is checked against an archive once one has it', () => {
    // Which archive each versioned proto is checked against, as the tests above choose.
    const lines = protoFiles(PROTO).map((f) => `${f}: ${[...releases].reverse().find((r) => fs.existsSync(path.join(r.dir, 'proto', f)))?.version ?? 'none yet'}`);
    const newestRelease = releases.at(-1)!;
    for (const p of newestRelease.info.protocols) {
      const file = `agent/${p}/agent.proto`;
      if (fs.existsSync(path.join(PROTO, file))) assert.ok(fs.existsSync(path.join(newestRelease.dir, 'proto', file)), `${newestRelease.version} serves ${p} but did not archive ${file}`);
    }
    assert.ok(lines.length >= 3, lines.join('\n'));
  });
});

describe('buf breaking can fail', () => {
  it('a scratch copy with a field renumbered and a type changed is refused against the oldest archive', () => {
    const oldest = releases[0]!;
    const scratch = path.join(tmp, 'scratch');
    fs.cpSync(PROTO, path.join(scratch, 'proto'), { recursive: true });
    fs.copyFileSync(path.join(REPO, 'buf.yaml'), path.join(scratch, 'buf.yaml'));
    const v1 = path.join(scratch, 'proto/agent/v1/agent.proto');
    const text = fs.readFileSync(v1, 'utf8');
    const changed = text.replace(/(message RemoveContainerRequest \{[^}]*?uint32 timeout = )2;/s, '$112;').replace(/(message WaitProcessResponse \{[^}]*?)int32 status = 1;/s, '$1string status = 1;');
    assert.notEqual(changed, text);
    fs.writeFileSync(v1, changed);
    const res = bufBreaking('proto', path.join(oldest.dir, 'proto'), scratch);
    assert.equal(res.ok, false, 'buf breaking passed a renumbered field');
    assert.match(res.output, /RemoveContainerRequest/);
    assert.match(res.output, /WaitProcessResponse/);
  });

  it('releases sort by version, not as text', () => {
    assert.deepEqual(['0.10.0', '0.2.0', '0.9.1', '1.0.0'].sort(compareVersions), ['0.2.0', '0.9.1', '0.10.0', '1.0.0']);
    assert.ok(fs.existsSync(RELEASES));
  });
});
