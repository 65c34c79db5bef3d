// v1 sandbox RPCs.
import type { AgentCore } from '../../agent/core';
import { unimplemented } from '../../agent/errors';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';

export function sandboxHandlers(core: AgentCore, rpc: RpcBoundary) {
  return {
    CreateSandbox: rpc.unary(async (req) => {
      // Refused rather than ignored: a sandbox without its storages would run wrong.
      if (req.storages.length > 0) throw unimplemented('sandbox storages are not supported by this agent yet');
      await core.sandbox.create({
        sandboxId: req.sandbox_id,
        hostname: req.hostname,
        dns: req.dns,
        kernelModules: req.kernel_modules.map((m) => ({ name: m.name, parameters: m.parameters })),
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
