// The version-free core as the handler sets see it.
import type { AgentConfig } from '../config';
import type { RpcMetrics } from '../server/rpc-metrics';
import type { Sandbox } from './sandbox';

export interface AgentCore {
  config: AgentConfig;
  sandbox: Sandbox;
  rpcMetrics: RpcMetrics;
  /** Called after DestroySandbox has answered: the guest's init powers off. */
  onSandboxDestroyed(): void;
}
