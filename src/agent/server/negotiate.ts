// Protocol negotiation: the highest version both sides speak.
import { failedPrecondition } from '../errors';
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

/** Capability strings a client checks before relying on a feature. */
export const CAPABILITIES: readonly string[] = [
  'feature:tty',
  'feature:stdio-polling',
  'feature:health',
  'feature:reflection',
  'feature:policy',
];
