// agent.Discovery: stable forever, shared by every protocol version.
import type { AgentCore } from '../agent/core';
import { CAPABILITIES, selectVersion } from '../agent/server/negotiate';
import type { RpcBoundary } from '../agent/server/rpc';
import { AGENT_VERSION, PROTOCOL_VERSIONS, agentBuild } from '../agent/version';
import type { NegotiateRequest__Output } from '../generated/agent/NegotiateRequest';
import type { NegotiateResponse } from '../generated/agent/NegotiateResponse';
import type { DiscoveryHandlers } from '../protocol';

export function discoveryHandlers(core: AgentCore, rpc: RpcBoundary) {
  return {
    Negotiate: rpc.unary<NegotiateRequest__Output, NegotiateResponse>((req, ctx) => {
      const selected = selectVersion(req.protocol_versions);
      ctx.log.info({ client: req.client_name, client_version: req.client_version, selected }, 'negotiated');
      return {
        agent_version: AGENT_VERSION,
        agent_build: agentBuild(),
        protocol_versions: [...PROTOCOL_VERSIONS],
        selected_version: selected,
        capabilities: [...CAPABILITIES],
        limits: { max_message_bytes: core.config.maxMessageBytes, output_buffer_bytes: core.config.outputBufferBytes },
        policy: { loaded: core.policy.loaded, digest: core.policy.digest, source: core.policy.source, error: core.policy.error ?? '' },
        image: {
          started_at_unix_ms: core.image.startedAt,
          upgrades: core.image.upgrades,
          failed_upgrades: core.image.failedUpgrades,
          upgrade_id: core.image.upgradeId,
          previous_version: core.image.previousVersion,
        },
      };
    }),
  } satisfies DiscoveryHandlers;
}
