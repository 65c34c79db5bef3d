// Bringing a state document of an earlier format up to STATE_FORMAT, one
// format at a time, before it is decoded. Format 1 is the first: there is
// nothing to migrate yet. A later format adds its step here, with the state
// sample of every archived release as its test (test/fixtures/releases/*/state/).
import { STATE_FORMAT } from './document';

/** `up` turns a format `from` document into a format `from + 1` one (the raw JSON object). */
export interface Migration {
  from: number;
  up: (doc: Record<string, unknown>) => Record<string, unknown>;
}

export const MIGRATIONS: readonly Migration[] = [];

export function migrate(doc: Record<string, unknown>, from: number, to = STATE_FORMAT, steps: readonly Migration[] = MIGRATIONS): Record<string, unknown> {
  let out = doc;
  for (let f = from; f < to; f++) {
    const step = steps.find((m) => m.from === f);
    if (!step) throw new Error(`no migration of state format ${f} to ${f + 1}`);
    out = { ...step.up(out), format: f + 1 };
  }
  return out;
}
