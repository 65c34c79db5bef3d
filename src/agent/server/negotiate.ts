// Protocol negotiation: the highest version both sides speak.
import { failedPrecondition } from '../errors';
import { STORAGE_DRIVER_NAMES } from '../storage/drivers';
import { PROTOCOL_VERSIONS } from '../version';

const rank = (v: string) => Number(/^v(\d+)$/.exec(v)?.[1] ?? NaN);

export function selectVersion(clientVersions: readonly string[], served: readonly string[] = PROTOCOL_VERSIONS): string {
  if (clientVersions.length === 0) return '';
  const common = clientVersions.filter((v) => served.includes(v)).sort((a, b) => rank(b) - rank(a));
  if (common.length === 0) {
    throw failedPrecondition(
      `no common protocol version: the client speaks ${clientVersions.join(', ')}, this agent serves ${served.join(', ')}; ` +
        'upgrade the older side',
    );
  }
  return common[0]!;
}

/**
 * Capability strings a client checks before relying on a feature. The
 * `feature:` strings after feature:policy are protocol v2's (a v2 client
 * still checks them: a later agent might serve v2 without one of them);
 * `storage:DRIVER` for each storage driver the agent mounts.
 */
export const CAPABILITIES: readonly string[] = [
  'feature:tty',
  'feature:stdio-polling',
  'feature:health',
  'feature:reflection',
  'feature:policy',
  // v2: ReadOutput and WriteInput at byte offsets.
  'feature:stream-output',
  // v2: WatchEvents with a sequence cursor.
  'feature:watch-events',
  // v2: request ids on every mutating call.
  'feature:request-ids',
  // v2: ExitStatus with its parts, kept until ReleaseProcess.
  'feature:exit-status',
  // v2: ListContainers, GetContainer, ContainerInfo and ProcessInfo.
  'feature:snapshots',
  // v2: google.rpc.Status/ErrorInfo in grpc-status-details-bin with every failure.
  'feature:error-details',
  // v2 (0.3.0): ReadOutput's acknowledged_only and AcknowledgeOutput: nothing sent is released unacknowledged.
  'feature:output-acknowledgement',
  // v2 (0.4.0): UpgradeAgent, an in-place upgrade with workloads running.
  'feature:upgrade',
  // v2 (0.5.0): UploadAgentBinary, and UpgradeAgent's uploaded: an upgrade without a shared directory.
  'feature:upgrade-upload',
  ...STORAGE_DRIVER_NAMES.map((driver) => `storage:${driver}`),
];
