// v1 network RPCs. (Placeholder until the network module lands.)
import type { AgentCore } from '../../agent/core';
import { unimplemented } from '../../agent/errors';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';

type Group = 'UpdateInterface' | 'UpdateRoutes' | 'ListInterfaces' | 'ListRoutes' | 'AddARPNeighbors';

export function networkHandlers(_core: AgentCore, rpc: RpcBoundary) {
  const no = () => {
    throw unimplemented('network configuration is not implemented yet');
  };
  return {
    UpdateInterface: rpc.unary(no), UpdateRoutes: rpc.unary(no), ListInterfaces: rpc.unary(no),
    ListRoutes: rpc.unary(no), AddARPNeighbors: rpc.unary(no),
  } satisfies Pick<AgentV1Handlers, Group>;
}
