// Keeps STATE_DIR/state.json up to date while the agent runs: a save after
// every event of the core (process starts and exits, container states, OOM
// kills: what changes containers and processes) and every request id whose
// call succeeded, coalesced by the store (at most one write per
// SAVE_INTERVAL_MS), written off the event loop. The handover before an exec
// in place writes the final state itself, so this one may lag a little. A
// failed write is logged and retried with the next change: saving never
// fails a call.
import fs from 'node:fs';
import type { Logger } from '../log';
import { captureState, type StateSources } from './capture';
import { StateError } from './codec';
import { StateStore } from './store';

/** The most the saved state lags behind the agent's (a crash loses at most this much); bench/state.ts shows the cost. */
export const SAVE_INTERVAL_MS = 200;

export class StateKeeper {
  private unsubscribe: (() => void) | null = null;
  private lastError: string | null = null;

  constructor(
    readonly store: StateStore,
    private readonly sources: StateSources,
    private readonly log: Logger,
  ) {}

  /** A keeper of the state in `dir` (after setAsideStale), started. */
  static open(dir: string, sources: StateSources, log: Logger): StateKeeper {
    const keeper = new StateKeeper(new StateStore(dir, { minIntervalMs: SAVE_INTERVAL_MS }), sources, log);
    keeper.start();
    return keeper;
  }

  /**
   * A state found in `dir` at a start that is no handover belongs to an
   * agent that is gone: its processes are not ours. It is set aside as
   * state.json.stale-<ms>, not deleted, and named in a warning.
   */
  static setAsideStale(dir: string, log: Logger): void {
    const store = new StateStore(dir);
    let found: string | null = null;
    try {
      const prior = store.read();
      if (prior) found = `saved by agent ${prior.state.writtenBy} at ${new Date(prior.state.writtenAt).toISOString()}, ${prior.state.containers.length} containers`;
    } catch (err) {
      if (!(err instanceof StateError)) throw err;
      found = `unreadable: ${err.message}`;
    }
    if (!found) return;
    const aside = `${store.file}.stale-${Date.now()}`;
    fs.renameSync(store.file, aside);
    log.warn({ state: aside, found }, 'a state from an earlier agent was found at start (not a handover): set aside, not used');
  }

  start(): void {
    this.unsubscribe = this.sources.events.subscribe(() => this.changed());
    this.changed();
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /** Something the state holds changed: save soon. */
  changed(): void {
    this.store.save(() => captureState(this.sources));
    this.store.flush().then(
      () => {
        if (this.lastError) this.log.info({ file: this.store.file }, 'the agent state is saved again');
        this.lastError = null;
      },
      (err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        // Once per kind of failure, not once per change.
        if (message !== this.lastError) this.log.error({ err, file: this.store.file }, 'cannot save the agent state; an in-place upgrade would start from an older one');
        this.lastError = message;
      },
    );
  }
}
