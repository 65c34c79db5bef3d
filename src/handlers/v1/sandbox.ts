// v1 sandbox RPCs.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { StorageSpec } from '../../agent/storage';
import type { Storage__Output } from '../../generated/agent/v1/Storage';
import type { AgentV1Handlers } from '../../protocol';
import { DEFAULT_SANDBOX_ID } from './defaults';

/** agent.v1.Storage -> the core's StorageSpec (CreateSandbox and CreateContainer). */
export function storageFromV1(s: Storage__Output): StorageSpec {
  return {
    driver: s.driver,
    driverOptions: s.driver_options,
    source: s.source,
    fstype: s.fstype,
    options: s.options,
    mountPoint: s.mount_point,
  };
}

export function sandboxHandlers(core: AgentCore, rpc: RpcBoundary) {
  return {
    CreateSandbox: rpc.unary(async (req) => {
      await core.sandbox.create({
        sandboxId: req.sandbox_id || DEFAULT_SANDBOX_ID,
        hostname: req.hostname,
        dns: req.dns,
        kernelModules: req.kernel_modules.map((m) => ({ name: m.name, parameters: m.parameters })),
        storages: req.storages.map(storageFromV1),
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
