// Commit or roll back, like boot counting: an image that took over commits
// only once it is healthy within a deadline — every listener it was handed
// serves, every container was restored — and otherwise execs the image it
// took over from (Upgrader.rollBack), with the state as it is then. Only an
// upgrade is rolled back: an image that was itself rolled back to (or took
// its own handover back) commits whatever its health, so two bad images
// never bounce between each other.
import type { Logger } from '../log';
import type { ListenerStatus } from '../server/listeners';

/** The environment variable of the one fault this module can be told to fake (tests of the rollback). */
export const FAULT_ENV = 'AGENT_FAKE_FAULT';
export const FAKE_UNHEALTHY = 'unhealthy-after-takeover';

export interface HealthInput {
  /** Every listener's first attempt (ListenerSet.settled). */
  listeners: Promise<ListenerStatus[]>;
  /** The addresses whose listening sockets were handed over: they must serve. */
  inherited: string[];
  /** Containers the takeover could not restore. */
  unrestored: string[];
  deadlineMs: number;
  env: NodeJS.ProcessEnv;
}

/** What is wrong with this image after a takeover; empty when it is healthy. */
export async function takeoverProblems(o: HealthInput): Promise<string[]> {
  const problems: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const status = await Promise.race([o.listeners, new Promise<null>((r) => (timer = setTimeout(() => r(null), o.deadlineMs)))]);
  clearTimeout(timer);
  if (status === null) problems.push(`the listeners did not all open within ${o.deadlineMs} ms`);
  for (const address of o.inherited) {
    const l = status?.find((s) => s.address === address);
    if (l && l.state !== 'serving') problems.push(`the listener handed over for ${address} does not serve (${l.lastError ?? l.state})`);
  }
  if (o.unrestored.length > 0) problems.push(`containers not restored: ${o.unrestored.join(', ')}`);
  // A fake, for the tests of the rollback: a real fault of this kind cannot be caused on purpose.
  if (o.env[FAULT_ENV] === FAKE_UNHEALTHY) problems.push(`${FAULT_ENV}=${FAKE_UNHEALTHY} (a test's fake fault)`);
  return problems;
}

/** Commits (logs it) or rolls back; `rollBack` does not return when it works. */
export async function commitOrRollBack(
  o: HealthInput & { rollbackAllowed: boolean; rollBack: (reason: string) => Promise<void>; commit: () => void; log: Logger },
): Promise<void> {
  const problems = await takeoverProblems(o);
  if (problems.length === 0 || !o.rollbackAllowed) {
    if (problems.length > 0) o.log.error({ problems }, 'not healthy after the takeover, but this image was itself rolled back to: committing anyway');
    o.commit();
    o.log.info('upgrade committed');
    return;
  }
  await o.rollBack(problems.join('; '));
}
