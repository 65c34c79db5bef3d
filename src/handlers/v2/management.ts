// v2 management RPCs: the in-place upgrade of the agent itself.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { mutatingCalls } from './requests';

export function managementHandlers(core: AgentCore, rpc: RpcBoundary) {
  const once = mutatingCalls(core, rpc);
  return {
    UpgradeAgent: once('UpgradeAgent', async (req) => {
      const plan = await core.upgrade.stage({ binaryPath: req.binary_path, sha256: req.sha256 });
      return { upgrade_id: plan.upgradeId, from_version: plan.fromVersion, to_version: plan.toVersion, state_format: plan.stateFormat };
    }),
  } satisfies Pick<AgentV2Handlers, 'UpgradeAgent'>;
}
