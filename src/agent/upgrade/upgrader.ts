// UpgradeAgent's work (core/index.ts AgentUpgrade): stage and pre-flight the
// new binary, answer, then exec it in place (exec-in-place.ts). Nothing is
// changed until every check passed: a refused upgrade leaves the agent as
// it was.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AgentImage, AgentUpgrade, UploadChunk, UploadedBinary, UpgradePlan, UpgradeRequest } from '../core';
import { excerpt, failedPrecondition, invalidArgument } from '../errors';
import type { Logger } from '../log';
import { runCommand, type CommandFailure, type Spawner } from '../process/command';
import type { AgentServer } from '../server/server';
import { native } from '../../native/native';
import { captureState, type StateSources } from '../state/capture';
import { OLDEST_READ_FORMAT, STATE_FORMAT } from '../state/document';
import { StateStore } from '../state/store';
import { resolveWithin } from '../validate';
import { execInPlace, type ExecTarget, type ImageCounters } from './exec-in-place';
import { ADOPTS } from './handover';
import { BinaryUploads } from './uploads';

export interface UpgraderOptions {
  server: () => AgentServer;
  /** Spawns the pre-flight runs (the agent's reaper, so that it never reaps them itself). */
  spawner: Spawner;
  /** This image's counters (core.image). */
  image: () => AgentImage;
  sources: StateSources;
  stateDir: string;
  sharedDir: string;
  /** The arguments this image was started with (the new one gets the same). */
  args: readonly string[];
  log: Logger;
  /** How long the pre-flight run may take. */
  preflightMs?: number;
  drainMs?: number;
  /** What a rollback of this image would exec (the image it took over from): an upload kept for it. */
  rollback?: ExecTarget;
}

/** The JSON object on the last line of `text`, if it is one. */
function lastJson(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text.trim().split('\n').at(-1) ?? '') as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** How to run `file`: an executable directly, a .js/.cjs bundle with this Node. */
export function targetOf(file: string, args: readonly string[]): ExecTarget {
  return /\.c?js$/.test(file) ? { binary: process.execPath, argv: [process.execPath, file, ...args] } : { binary: file, argv: [file, ...args] };
}

/** The files an image runs from: the executable, and the bundle when it is one (argv[1]). */
const imageFiles = (t: ExecTarget): string[] => [t.binary, ...(/\.c?js$/.test(t.argv[1] ?? '') ? [t.argv[1]!] : [])];

/** This image, to exec again: the bundle it runs, or the single executable it is. */
export function selfTarget(args: readonly string[]): ExecTarget {
  const script = process.argv[1];
  const isBundle = script !== undefined && script !== process.execPath && /\.c?js$/.test(script);
  const target = isBundle ? targetOf(path.resolve(script), args) : { binary: process.execPath, argv: [process.execPath, ...args] };
  return { ...target, adopts: [...ADOPTS] };
}

export class Upgrader implements AgentUpgrade {
  private underWay: string | null = null;
  private readonly uploads: BinaryUploads;

  constructor(private readonly options: UpgraderOptions) {
    this.uploads = new BinaryUploads(options.stateDir, options.log);
  }

  async receive(chunks: AsyncIterable<UploadChunk>): Promise<UploadedBinary> {
    const uploaded = await this.uploads.receive(chunks);
    // Kept: this one, the running image's, and the one a rollback would go back to.
    const images = [selfTarget(this.options.args), ...(this.options.rollback ? [this.options.rollback] : [])];
    this.uploads.prune([this.uploads.pathOf(uploaded.sha256)!, ...images.flatMap(imageFiles)]);
    return uploaded;
  }

  async stage(req: UpgradeRequest): Promise<UpgradePlan> {
    if (this.underWay) throw failedPrecondition(`upgrade ${this.underWay} is under way; wait for it (Discovery shows the running version)`);
    if (!/^[0-9a-f]{64}$/.test(req.sha256)) throw invalidArgument(`sha256 ${excerpt(req.sha256)} is not 64 lowercase hex digits`);
    const file = req.uploaded ? this.uploadedFile(req) : resolveWithin(this.options.sharedDir, req.binaryPath, 'binary path');
    const upgradeId = crypto.randomUUID();
    this.underWay = upgradeId;
    try {
      const plan = await this.preflight(upgradeId, file, req.sha256);
      const target = { ...targetOf(file, this.options.args), adopts: plan.adopts };
      // Once the answer has left: the exec drains every connection.
      setTimeout(() => void this.exec(upgradeId, target), 100);
      return plan;
    } catch (err) {
      this.underWay = null;
      throw err;
    }
  }

  private uploadedFile(req: UpgradeRequest): string {
    if (req.binaryPath !== '') throw invalidArgument(`binary_path ${excerpt(req.binaryPath)} is given with uploaded: name one binary, not both`);
    const file = this.uploads.pathOf(req.sha256);
    if (!file) throw failedPrecondition(`no binary with sha256 ${req.sha256} was uploaded (or it was removed since): upload it with UploadAgentBinary first`);
    return file;
  }

  private async preflight(upgradeId: string, file: string, sha256: string): Promise<UpgradePlan & { adopts: string[] }> {
    const log = this.options.log.child({ upgrade: upgradeId, binary: file });
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(file);
    } catch (err) {
      throw failedPrecondition(`binary ${file} cannot be read: ${(err as Error).message}`);
    }
    if (!st.isFile()) throw failedPrecondition(`binary ${file} is not a regular file`);
    const bundle = /\.c?js$/.test(file);
    if (!bundle && (st.mode & 0o111) === 0) throw failedPrecondition(`binary ${file} is not executable (mode ${(st.mode & 0o7777).toString(8)}); chmod +x it`);
    // Hashed as a stream: the binary may be large, and the agent's memory is the guest's.
    const hash = crypto.createHash('sha256');
    for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
    const digest = hash.digest('hex');
    if (digest !== sha256) throw failedPrecondition(`binary ${file} has sha256 ${digest}, not the ${sha256} asked for: refused`);
    // Room for the handover: the state and the output held, twice over.
    const snapshot = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'agent-preflight-'));
    try {
      const state = captureState(this.options.sources);
      new StateStore(snapshot).writeNow(state);
      const free = fs.statfsSync(this.options.stateDir);
      const need = 2 * (fs.statSync(path.join(snapshot, 'state.json')).size + 64 * 1024 * 1024);
      if (free.bavail * free.bsize < need) throw failedPrecondition(`not enough space in ${this.options.stateDir} for the handover: ${free.bavail * free.bsize} bytes free, ${need} needed`);
      const report = await this.runChild(file, ['--check-state', '--state-dir', snapshot], 'state check');
      // It must also start as an agent and serve (one that exits at start would take PID 1 down).
      // Releases before 0.5.0 have no self-test (their report does not offer it): their state check is all.
      if (report.self_test === true) {
        const selfTest = await this.runChild(file, ['--self-test'], 'start-up self-test');
        if (selfTest.version !== report.version) throw failedPrecondition(`the pre-flight runs of ${file} disagree on its version: ${String(report.version)} and ${String(selfTest.version)}`);
      } else log.warn({ version: report.version }, 'the new binary offers no start-up self-test (a release before 0.5.0): only its state check was run');
      log.info({ report }, 'upgrade pre-flight passed');
      const adopts = Array.isArray(report.adopts) ? report.adopts.filter((a): a is string => typeof a === 'string') : [];
      return { upgradeId, fromVersion: this.options.sources.agentVersion, toVersion: String(report.version), stateFormat: Number(report.writes_format), adopts };
    } finally {
      await fs.promises.rm(snapshot, { recursive: true, force: true });
    }
  }

  /**
   * Runs `file` with `args` once as a child (through the reaper, as every
   * child of the agent); its last line of output must be JSON with ok: true.
   */
  private async runChild(file: string, args: string[], what: string): Promise<Record<string, unknown>> {
    const target = targetOf(file, args);
    let failure: CommandFailure | null = null;
    let stdout: string;
    try {
      ({ stdout } = await runCommand(this.options.spawner, target.binary, target.argv.slice(1), {
        timeoutMs: this.options.preflightMs ?? 30_000,
        maxOutputBytes: 1 << 20,
        onFailure: (f) => {
          failure = f;
          return new Error(f.summary);
        },
      }));
    } catch (err) {
      const f = failure as CommandFailure | null;
      const why = lastJson(f?.stdout ?? '')?.error ?? ((f?.stderr.trim() || f?.stdout.trim()) ?? '');
      throw failedPrecondition(`the pre-flight ${what} of ${file} failed (${f?.summary.split('\n')[0] ?? (err as Error).message}): ${excerpt(String(why), 300)}; nothing was changed`);
    }
    const report = lastJson(stdout);
    if (!report || report.ok !== true) throw failedPrecondition(`the pre-flight ${what} of ${file} reported no success: ${excerpt(stdout.trim(), 300)}; nothing was changed`);
    return report;
  }

  private async exec(upgradeId: string, target: ExecTarget): Promise<void> {
    const image = this.options.image();
    await this.execInPlace(target, upgradeId,
      { upgrades: image.upgrades + 1, failedUpgrades: image.failedUpgrades, upgradeId },
      { upgrades: image.upgrades, failedUpgrades: image.failedUpgrades + 1, upgradeId: '' });
  }

  /**
   * This image is not healthy after a takeover (commit.ts): exec the image it
   * took over from, with a handover of the state as it is now (nothing the
   * containers did meanwhile is lost), counted as a failed upgrade.
   */
  async rollBack(previous: ExecTarget, reason: string): Promise<void> {
    const image = this.options.image();
    this.underWay = 'rollback';
    this.options.log.error({ reason, previous: previous.binary }, 'rolling back to the previous agent image');
    const back = { upgrades: Math.max(0, image.upgrades - 1), failedUpgrades: image.failedUpgrades + 1, upgradeId: '' };
    await this.execInPlace(previous, 'rollback', back, back);
  }

  private async execInPlace(target: ExecTarget, upgradeId: string, next: ImageCounters, fallback: ImageCounters): Promise<void> {
    const err = await execInPlace(target, {
      server: this.options.server(),
      sources: this.options.sources,
      stateDir: this.options.stateDir,
      log: this.options.log.child({ upgrade: upgradeId }),
      drainMs: this.options.drainMs ?? 2000,
      self: selfTarget(this.options.args),
      next,
      fallback,
    });
    this.underWay = null;
    this.options.log.fatal({ err, upgrade: upgradeId }, 'the exec in place failed and this image could not take itself back');
  }
}

/** What `agent --check-state --state-dir DIR` prints (one JSON line) and whether it succeeded. */
export function checkState(stateDir: string, version: string): { ok: boolean; report: Record<string, unknown> } {
  try {
    const found = new StateStore(stateDir).read();
    // The addon this image needs for a takeover loads.
    native.getpid();
    return {
      ok: true,
      report: {
        ok: true, version, reads_formats: [OLDEST_READ_FORMAT, STATE_FORMAT], writes_format: STATE_FORMAT,
        state: found ? { format: found.format, written_by: found.state.writtenBy, containers: found.state.containers.length, unknown_keys: found.unknownKeys } : null,
        addons: 'loaded',
        // `--self-test` exists: the pre-flight runs it too.
        self_test: true,
        // What this image takes over beyond listening sockets and stdio (exec-in-place.ts hands only that over).
        adopts: [...ADOPTS],
      },
    };
  } catch (err) {
    return { ok: false, report: { ok: false, version, error: err instanceof Error ? err.message : String(err) } };
  }
}
