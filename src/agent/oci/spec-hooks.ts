// OCI hooks. A hook in a spec is a program crun runs as root in the agent's
// own namespaces (createRuntime, prestart, poststart, poststop run outside
// the container): a runtime that may only *ask* for containers would reach
// the guest through it. So spec hooks are refused, as Kata's runtime strips
// them, and the only hooks are the image's own: executables found in the
// guest hooks directory (agent.guest_hooks_dir), one subdirectory per stage.
import fs from 'node:fs';
import path from 'node:path';
import { invalidArgument } from '../errors';

export const HOOK_STAGES = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;
export type HookStage = (typeof HOOK_STAGES)[number];

export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export type OciHooks = Partial<Record<HookStage, OciHook[]>>;

/** A guest hook that hangs must not hold a create up for longer than this. */
const GUEST_HOOK_TIMEOUT_S = 30;

/** Refuses any hook the spec brings; an empty `hooks` object (or empty stages) is accepted. */
export function refuseSpecHooks(value: unknown): void {
  if (value === undefined || value === null) return;
  if (typeof value !== 'object' || Array.isArray(value)) throw invalidArgument('oci_spec_json.hooks must be an object');
  const given = Object.entries(value as Record<string, unknown>).filter(([, list]) => !(Array.isArray(list) && list.length === 0));
  if (given.length > 0) {
    throw invalidArgument(
      `oci_spec_json.hooks (${given.map(([stage]) => stage).join(', ').slice(0, 200)}) are refused: a spec hook runs as root in the ` +
        "agent's namespaces; the guest image provides hooks in its guest hooks directory instead",
    );
  }
}

/**
 * The image's hooks: for each stage, the executable regular files in
 * DIR/STAGE, in name order, each run as `PATH STAGE`. None when the
 * directory is absent.
 */
export function guestHooks(dir: string | null): OciHooks | undefined {
  if (!dir) return undefined;
  const hooks: OciHooks = {};
  for (const stage of HOOK_STAGES) {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(dir, stage)).sort();
    } catch {
      continue;
    }
    const list = names.map((name) => path.join(dir, stage, name)).filter((file) => {
      try {
        const st = fs.statSync(file);
        return st.isFile() && (st.mode & 0o111) !== 0;
      } catch {
        return false;
      }
    }).map((file): OciHook => ({ path: file, args: [file, stage], timeout: GUEST_HOOK_TIMEOUT_S }));
    if (list.length > 0) hooks[stage] = list;
  }
  return Object.keys(hooks).length > 0 ? hooks : undefined;
}
