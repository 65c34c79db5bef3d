// For tests only (never imported by the agent, so never bundled): a Reaper
// and a temp dir for tests that run real child processes, started and
// removed by the test file's before/after hooks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { silentLogger } from '../log';
import { Reaper } from './reaper';

/** A started Reaper and a temp dir named after `prefix`, for the whole test file. */
export function testReaper(prefix: string): { reaper: Reaper; tmp: string } {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  const reaper = new Reaper(silentLogger);
  // Exits arrive on SIGCHLD, which does not hold the event loop open (the agent's server does): hold it here.
  let keepAlive: NodeJS.Timeout;
  before(() => {
    reaper.start();
    keepAlive = setInterval(() => {}, 1000);
  });
  after(() => {
    clearInterval(keepAlive);
    reaper.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  return { reaper, tmp };
}
