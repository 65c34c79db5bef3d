// v1 network RPCs: agent.v1 messages <-> the core's network module.
// decode (done by gRPC) → convert (../network-wire.ts) → core → convert back.
import type { AgentCore } from '../../agent/core';
import { invalidArgument } from '../../agent/errors';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';
import { interfaceFromWire, interfaceToWire, neighborFromWire, routeFromWire, routeToWire } from '../network-wire';

type Group = 'UpdateInterface' | 'UpdateRoutes' | 'ListInterfaces' | 'ListRoutes' | 'AddARPNeighbors';

export function networkHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { network } = core;
  return {
    UpdateInterface: rpc.unary(async (req) => {
      if (!req.interface) throw invalidArgument('interface is missing');
      return { interface: interfaceToWire(await network.updateInterface(interfaceFromWire(req.interface))) };
    }),
    UpdateRoutes: rpc.unary(async (req) => ({
      routes: (await network.updateRoutes(req.routes.map((r, i) => routeFromWire(r, `routes[${i}]`)))).map(routeToWire),
    })),
    ListInterfaces: rpc.unary(async () => ({ interfaces: (await network.listInterfaces()).map(interfaceToWire) })),
    ListRoutes: rpc.unary(async () => ({ routes: (await network.listRoutes()).map(routeToWire) })),
    AddARPNeighbors: rpc.unary(async (req) => {
      await network.addArpNeighbors(req.neighbors.map((n, i) => neighborFromWire(n, `neighbors[${i}]`)));
      return {};
    }),
  } satisfies Pick<AgentV1Handlers, Group>;
}
