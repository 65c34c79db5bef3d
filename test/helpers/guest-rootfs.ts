// Root file systems that the guest tests share with the VM over 9p.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { GUEST_DIR } from '../../build/vm';
import { makeBusyboxRootfs } from './rootfs';

/**
 * busybox plus the guest's own agent binary and its libraries: a container
 * that can run `agent ctl` to reach the agent from inside the VM.
 */
export function makeToolsRootfs(dir: string): string {
  makeBusyboxRootfs(dir);
  const agent = path.join(GUEST_DIR, 'agent');
  fs.mkdirSync(path.join(dir, 'usr/bin'), { recursive: true });
  fs.copyFileSync(agent, path.join(dir, 'usr/bin/agent'));
  fs.chmodSync(path.join(dir, 'usr/bin/agent'), 0o755);
  for (const line of execFileSync('ldd', [agent], { encoding: 'utf8' }).split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (!m) continue;
    fs.mkdirSync(path.join(dir, path.dirname(m[1]!)), { recursive: true });
    fs.copyFileSync(m[1]!, path.join(dir, m[1]!));
  }
  return dir;
}
