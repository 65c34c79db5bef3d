// The version-free core as the handler sets see it.
import type { AgentConfig } from '../config';
import type { Guest } from '../guest';
import type { Network } from '../network';
import type { MetricsText } from '../guest/metrics';
import type { Policy } from '../policy/policy';
import type { EventBus } from './events';
import type { RequestLedger } from './requests';
import type { Sandbox } from './sandbox';

export interface AgentCore {
  config: AgentConfig;
  sandbox: Sandbox;
  /**
   * The core's sequenced events (events.ts): process starts and exits,
   * container state changes, OOM kills. A streaming RPC reads it with a
   * cursor (watch); v1 GetOOMEvent takes from guest.oomEvents, fed by it.
   */
  events: EventBus;
  /**
   * Client request ids of mutating calls (requests.ts): a retry with the same
   * id and arguments gets the first answer and acts once. One for the agent:
   * v2's handlers key it by (request id, method, arguments).
   */
  requests: RequestLedger;
  network: Network;
  /** The RPC boundary's call counters, which GetMetrics shows; kept outside the core. */
  callMetrics: MetricsText;
  /** The operator's policy (policy/): the RPC boundary and the core's argument checks enforce it. */
  policy: Policy;
  /** Guest RPCs' core: details, clock, hot-plug, entropy, CopyFile, metrics, OOM events. */
  guest: Guest;
  /** Called after DestroySandbox has answered: the guest's init powers off. */
  onSandboxDestroyed(): void;
  /** In-place upgrade of the agent itself (upgrade/upgrader.ts implements it; the core only names it). */
  upgrade: AgentUpgrade;
  /** This agent image, and the in-place upgrades of this process that led to it (Discovery shows it). */
  image: AgentImage;
  /**
   * Settles when the guest's first-boot work is done: the agent answers
   * before it has loaded the kernel modules its listeners do not need
   * (pid1/index.ts), and a call that may need them (a mount, a device, an
   * upgrade that would skip that work) waits for this. Never rejects.
   */
  booted: Promise<void>;
}

export interface AgentImage {
  /** When this image started (the exec that made it, or the boot), ms since the epoch. */
  startedAt: number;
  upgrades: number;
  failedUpgrades: number;
  /** The upgrade that started this image; '' after a boot. */
  upgradeId: string;
  /** The version of the image this one took over from; '' after a boot. */
  previousVersion: string;
}

export interface UpgradeRequest {
  /** The new agent: an executable, or a JavaScript bundle run by this agent's Node, inside the shared directory. */
  binaryPath: string;
  /** Its sha256, lowercase hex. */
  sha256: string;
  /** The binary is the one received (AgentUpgrade.receive) with that sha256; binaryPath is empty. */
  uploaded?: boolean;
}

/** One piece of a binary being uploaded. */
export interface UploadChunk {
  /** The whole binary's size and sha256: in the first chunk (0 / '' later, or the same again). */
  size: number;
  sha256: string;
  /** Where `data` starts in the binary. */
  offset: number;
  data: Buffer;
}

export interface UploadedBinary {
  size: number;
  sha256: string;
}

export interface UpgradePlan {
  upgradeId: string;
  fromVersion: string;
  /** What the new binary said of itself in its pre-flight run. */
  toVersion: string;
  stateFormat: number;
}

export interface AgentUpgrade {
  /**
   * Checks and pre-flights the new binary (sha256, executable, a
   * `--check-state` run of it on a snapshot of the state, space); resolves
   * with the plan, and the agent execs it in place once the answer has left.
   * FAILED_PRECONDITION for an upgrade already under way or a failed check.
   */
  stage(req: UpgradeRequest): Promise<UpgradePlan>;
  /**
   * Receives a binary for a later stage({ uploaded: true }), chunk by chunk,
   * into the state directory; checks size and sha256 at the end. A cut
   * upload is resumed from the offset held (FAILED_PRECONDITION names it).
   */
  receive(chunks: AsyncIterable<UploadChunk>): Promise<UploadedBinary>;
}
