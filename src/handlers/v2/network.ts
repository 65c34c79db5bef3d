// v2 network RPCs: agent.v2 messages <-> the core's network module, through
// the conversions every version with these shapes shares (../network-wire.ts).
import type { AgentCore } from '../../agent/core';
import { invalidArgument } from '../../agent/errors';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV2Handlers } from '../../protocol';
import { interfaceFromWire, interfaceToWire, neighborFromWire, routeFromWire, routeToWire } from '../network-wire';
import { mutatingCalls } from './requests';

type Group = 'UpdateInterface' | 'UpdateRoutes' | 'ListInterfaces' | 'ListRoutes' | 'AddARPNeighbors';

export function networkHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { network } = core;
  const once = mutatingCalls(core, rpc);
  return {
    UpdateInterface: once('UpdateInterface', async (req) => {
      if (!req.interface) throw invalidArgument('interface is missing');
      return { interface: interfaceToWire(await network.updateInterface(interfaceFromWire(req.interface))) };
    }),
    UpdateRoutes: once('UpdateRoutes', async (req) => ({
      routes: (await network.updateRoutes(req.routes.map((r, i) => routeFromWire(r, `routes[${i}]`)))).map(routeToWire),
    })),
    ListInterfaces: rpc.unary(async () => ({ interfaces: (await network.listInterfaces()).map(interfaceToWire) })),
    ListRoutes: rpc.unary(async () => ({ routes: (await network.listRoutes()).map(routeToWire) })),
    AddARPNeighbors: once('AddARPNeighbors', async (req) => {
      await network.addArpNeighbors(req.neighbors.map((n, i) => neighborFromWire(n, `neighbors[${i}]`)));
      return {};
    }),
  } satisfies Pick<AgentV2Handlers, Group>;
}
