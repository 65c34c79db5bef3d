// The v2 handler set: thin translators between agent.v2 messages and the
// core, one file per RPC group. v2's conventions live in conversions.ts,
// request ids in requests.ts. `satisfies AgentV2Handlers` makes a missing RPC a compile
// error. Serve it behind an RpcBoundary with statusDetails, so every failure
// carries its machine-readable reason (the proto's contract).
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { containerHandlers } from './containers';
import { eventHandlers } from './events';
import { guestHandlers } from './guest';
import { managementHandlers } from './management';
import { networkHandlers } from './network';
import { processHandlers } from './processes';
import { sandboxHandlers } from './sandbox';
import { stdioHandlers } from './stdio';

export function v2Handlers(core: AgentCore, rpc: RpcBoundary): AgentV2Handlers {
  return {
    ...sandboxHandlers(core, rpc),
    ...containerHandlers(core, rpc),
    ...processHandlers(core, rpc),
    ...stdioHandlers(core, rpc),
    ...eventHandlers(core, rpc),
    ...networkHandlers(core, rpc),
    ...guestHandlers(core, rpc),
    ...managementHandlers(core, rpc),
  } satisfies AgentV2Handlers;
}
