// The archived releases in test/fixtures/releases/ (build/archive-release.mjs),
// oldest first, with what each RELEASE.json says.
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from './agent-process';

/**
 * Where the archives are. AGENT_RELEASES_DIR points the compatibility tests at
 * another tree, e.g. a scratch archive of HEAD (archive-release.mjs --out) next
 * to a copy of the real ones, to try the matrix before archiving a release.
 */
export const RELEASES = process.env.AGENT_RELEASES_DIR ? path.resolve(process.env.AGENT_RELEASES_DIR) : path.join(REPO, 'test/fixtures/releases');

export interface ReleaseInfo {
  version: string;
  build: string;
  /** The protocol versions its agent serves, lowest first. */
  protocols: string[];
  node: string;
  /** golden/index.json, in archives that have golden encodings (0.2.0 on). */
  golden?: string;
}

export interface Release {
  version: string;
  dir: string;
  info: ReleaseInfo;
  agent: string;
  agentctl: string;
}

/** Orders X.Y.Z versions numerically. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

export function readReleases(root = RELEASES): Release[] {
  return fs.readdirSync(root)
    .filter((v) => fs.existsSync(path.join(root, v, 'RELEASE.json')))
    .sort(compareVersions)
    .map((version) => {
      const dir = path.join(root, version);
      return {
        version,
        dir,
        info: JSON.parse(fs.readFileSync(path.join(dir, 'RELEASE.json'), 'utf8')) as ReleaseInfo,
        agent: path.join(dir, 'agent.cjs'),
        agentctl: path.join(dir, 'agentctl.cjs'),
      };
    });
}

export const releases = readReleases();
