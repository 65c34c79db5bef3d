// v1 network RPCs: agent.v1 messages <-> the core's network module.
// decode (done by gRPC) → convert (here) → core → convert back.
//
// v1 specifics: Interface.device and Interface.name both name the link (they
// must agree when both are set; renaming is not supported); Interface.type is
// reported but ignored in requests (a link's kind cannot be changed); up=false
// leaves the link's state alone (proto3 cannot tell "false" from "unset").
import type { AgentCore } from '../../agent/core';
import { excerpt, invalidArgument } from '../../agent/errors';
import type { ArpNeighbor, InterfaceUpdate, IpFamily, NetInterface, NetRoute, RouteRequest } from '../../agent/network';
import { maxPrefix, parsePrefixText } from '../../agent/network/validate';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { ARPNeighbor__Output } from '../../generated/agent/v1/ARPNeighbor';
import type { IPFamily__Output } from '../../generated/agent/v1/IPFamily';
import type { Interface, Interface__Output } from '../../generated/agent/v1/Interface';
import type { Route, Route__Output } from '../../generated/agent/v1/Route';
import type { AgentV1Handlers } from '../../protocol';

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

/** Enums arrive as their names; an unknown number arrives as the number. */
export function familyFromWire(what: string, family: IPFamily__Output | number): IpFamily | undefined {
  switch (family) {
    case 'IP_FAMILY_UNSPECIFIED':
      return undefined;
    case 'IP_FAMILY_V4':
      return 4;
    case 'IP_FAMILY_V6':
      return 6;
    default:
      throw invalidArgument(`${what} ${excerpt(family)} is not an IPFamily this agent knows (IP_FAMILY_V4, IP_FAMILY_V6)`);
  }
}

export const familyToWire = (family: IpFamily): IPFamily__Output => (family === 4 ? 'IP_FAMILY_V4' : 'IP_FAMILY_V6');

export function interfaceFromWire(i: Interface__Output): InterfaceUpdate {
  if (i.name && i.device && i.name !== i.device) {
    throw invalidArgument(
      `interface.device ${excerpt(i.device)} and interface.name ${excerpt(i.name)} differ: renaming interfaces is not supported`,
    );
  }
  const name = i.name || i.device;
  return {
    ...(name ? { name } : {}),
    ...(i.hw_addr ? { hwAddr: i.hw_addr } : {}),
    ...(i.mtu ? { mtu: i.mtu } : {}),
    up: i.up,
    addresses: i.ip_addresses.map((a, n) => {
      const what = `interface.ip_addresses[${n}]`;
      const family = familyFromWire(`${what}.family`, a.family);
      return { ...(family ? { family } : {}), address: a.address, prefix: parsePrefixText(`${what}.mask`, a.mask) };
    }),
  };
}

export function interfaceToWire(i: NetInterface): Interface {
  return {
    device: i.name,
    name: i.name,
    ip_addresses: i.addresses.map((a) => ({ family: familyToWire(a.family), address: a.address, mask: String(a.prefix) })),
    mtu: i.mtu,
    hw_addr: i.hwAddr,
    type: i.type,
    up: i.up,
  };
}

export function routeFromWire(r: Route__Output, what: string): RouteRequest {
  const family = familyFromWire(`${what}.family`, r.family);
  return {
    ...(family ? { family } : {}),
    dest: r.dest, gateway: r.gateway, device: r.device, source: r.source, scope: r.scope,
  };
}

export function routeToWire(r: NetRoute): Route {
  return { dest: r.dest, gateway: r.gateway, device: r.device, source: r.source, scope: r.scope, family: familyToWire(r.family) };
}

export function neighborFromWire(n: ARPNeighbor__Output, what: string): ArpNeighbor {
  const ip = n.to_ip_address;
  if (!ip) throw invalidArgument(`${what}.to_ip_address is missing`);
  const family = familyFromWire(`${what}.to_ip_address.family`, ip.family);
  if (ip.mask !== '') {
    // A neighbour is one address: a mask, if given, must say so.
    const prefix = parsePrefixText(`${what}.to_ip_address.mask`, ip.mask);
    const full = maxPrefix(family ?? (ip.address.includes(':') ? 6 : 4));
    if (prefix !== full) throw invalidArgument(`${what}.to_ip_address.mask ${excerpt(ip.mask)} must be empty or ${full}: a neighbour is a single address`);
  }
  return { address: ip.address, ...(family ? { family } : {}), device: n.device, lladdr: n.lladdr, state: n.state };
}
