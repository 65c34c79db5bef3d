// The v1 handler set: thin translators between agent.v1 messages and the core.
// `satisfies AgentV1Handlers` makes a missing RPC a compile error.
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';
import { containerHandlers } from './containers';
import { guestHandlers } from './guest';
import { networkHandlers } from './network';
import { processHandlers } from './processes';
import { sandboxHandlers } from './sandbox';
import { stdioHandlers } from './stdio';

export function v1Handlers(core: AgentCore, rpc: RpcBoundary): AgentV1Handlers {
  return {
    ...sandboxHandlers(core, rpc),
    ...containerHandlers(core, rpc),
    ...processHandlers(core, rpc),
    ...stdioHandlers(core, rpc),
    ...networkHandlers(core, rpc),
    ...guestHandlers(core, rpc),
  } satisfies AgentV1Handlers;
}
