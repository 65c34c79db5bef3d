// v2 sandbox RPCs.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { storageFromWire } from '../common-wire';
import { DEFAULT_SANDBOX_ID } from './conversions';
import { mutatingCalls } from './requests';

export function sandboxHandlers(core: AgentCore, rpc: RpcBoundary) {
  const once = mutatingCalls(core, rpc);
  return {
    CreateSandbox: once('CreateSandbox', async (req) => {
      await core.sandbox.create({
        sandboxId: req.sandbox_id || DEFAULT_SANDBOX_ID,
        hostname: req.hostname,
        dns: req.dns,
        kernelModules: req.kernel_modules.map((m) => ({ name: m.name, parameters: m.parameters })),
        storages: req.storages.map(storageFromWire),
      });
      return {};
    }),
    DestroySandbox: once('DestroySandbox', async () => {
      await core.sandbox.destroy();
      setImmediate(() => core.onSandboxDestroyed());
      return {};
    }),
  } satisfies Pick<AgentV2Handlers, 'CreateSandbox' | 'DestroySandbox'>;
}
