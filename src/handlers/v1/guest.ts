// v1 guest RPCs. (Placeholder until the guest module lands.)
import type { AgentCore } from '../../agent/core';
import { unimplemented } from '../../agent/errors';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';

type Group = 'GetGuestDetails' | 'SetGuestDateTime' | 'OnlineCPUMem' | 'ReseedRandomDev' | 'CopyFile' | 'GetMetrics' | 'GetOOMEvent';

export function guestHandlers(_core: AgentCore, rpc: RpcBoundary) {
  const no = () => {
    throw unimplemented('guest operations are not implemented yet');
  };
  return {
    GetGuestDetails: rpc.unary(no), SetGuestDateTime: rpc.unary(no), OnlineCPUMem: rpc.unary(no),
    ReseedRandomDev: rpc.unary(no), CopyFile: rpc.unary(no), GetMetrics: rpc.unary(no), GetOOMEvent: rpc.unary(no),
  } satisfies Pick<AgentV1Handlers, Group>;
}
