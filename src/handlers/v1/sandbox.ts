// v1 sandbox RPCs.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';
import { storageFromWire } from '../common-wire';
import { DEFAULT_SANDBOX_ID } from './defaults';

export function sandboxHandlers(core: AgentCore, rpc: RpcBoundary) {
  return {
    CreateSandbox: rpc.unary(async (req) => {
      await core.sandbox.create({
        sandboxId: req.sandbox_id || DEFAULT_SANDBOX_ID,
        hostname: req.hostname,
        dns: req.dns,
        kernelModules: req.kernel_modules.map((m) => ({ name: m.name, parameters: m.parameters })),
        storages: req.storages.map(storageFromWire),
      });
      return {};
    }),
    DestroySandbox: rpc.unary(async () => {
      await core.sandbox.destroy();
      setImmediate(() => core.onSandboxDestroyed());
      return {};
    }),
  } satisfies Pick<AgentV1Handlers, 'CreateSandbox' | 'DestroySandbox'>;
}
