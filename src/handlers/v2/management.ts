// v2 management RPCs: the in-place upgrade of the agent itself, and the upload of its new binary.
import type { AgentCore, UploadChunk } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { UploadAgentBinaryRequest__Output } from '../../generated/agent/v2/UploadAgentBinaryRequest';
import type { UploadAgentBinaryResponse } from '../../generated/agent/v2/UploadAgentBinaryResponse';
import type { AgentV2Handlers } from '../../protocol';
import { mutatingCalls } from './requests';

export function managementHandlers(core: AgentCore, rpc: RpcBoundary) {
  const once = mutatingCalls(core, rpc);
  return {
    UpgradeAgent: once('UpgradeAgent', async (req) => {
      const plan = await core.upgrade.stage({ binaryPath: req.binary_path, sha256: req.sha256, uploaded: req.uploaded });
      return { upgrade_id: plan.upgradeId, from_version: plan.fromVersion, to_version: plan.toVersion, state_format: plan.stateFormat };
    }),
    UploadAgentBinary: rpc.clientStream<UploadAgentBinaryRequest__Output, UploadAgentBinaryResponse>(async (messages) => {
      const uploaded = await core.upgrade.receive(chunks(messages));
      return { size: uploaded.size, sha256: uploaded.sha256 };
    }),
  } satisfies Pick<AgentV2Handlers, 'UpgradeAgent' | 'UploadAgentBinary'>;
}

async function* chunks(messages: AsyncIterable<UploadAgentBinaryRequest__Output>): AsyncIterable<UploadChunk> {
  for await (const m of messages) yield { size: Number(m.size), sha256: m.sha256, offset: Number(m.offset), data: m.data };
}
