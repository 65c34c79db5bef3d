// Network messages as every protocol version so far carries them (v1 and v2
// define the same Interface, Route, ARPNeighbor and IPFamily shapes):
// conversions between those wire shapes and the network module's arguments.
// Typed structurally, so each version's generated types fit; a version whose
// shapes differ gets conversions of its own.
//
// Conventions: Interface.device and Interface.name both name the link (they
// must agree when both are set; renaming is not supported); Interface.type is
// reported but ignored in requests (a link's kind cannot be changed); up=false
// leaves the link's state alone (proto3 cannot tell "false" from "unset").
import { excerpt, invalidArgument } from '../agent/errors';
import type { ArpNeighbor, InterfaceUpdate, IpFamily, NetInterface, NetRoute, RouteRequest } from '../agent/network';
import { maxPrefix, parsePrefixText } from '../agent/network/validate';

type WireFamily = 'IP_FAMILY_UNSPECIFIED' | 'IP_FAMILY_V4' | 'IP_FAMILY_V6';
/** As decoded: an enum arrives as its name, or as a number this build does not know. */
type WireFamilyIn = WireFamily | number | string;
interface WireAddress<F> { family: F; address: string; mask: string }
interface WireInterface<F> { device: string; name: string; ip_addresses: Array<WireAddress<F>>; mtu: number; hw_addr: string; type: string; up: boolean }
interface WireRoute<F> { dest: string; gateway: string; device: string; source: string; scope: string; family: F }
interface WireNeighbor { to_ip_address?: WireAddress<WireFamilyIn> | null; device: string; lladdr: string; state: string }

/** Enums arrive as their names; an unknown number arrives as the number. */
export function familyFromWire(what: string, family: WireFamilyIn): IpFamily | undefined {
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

export const familyToWire = (family: IpFamily): WireFamily => (family === 4 ? 'IP_FAMILY_V4' : 'IP_FAMILY_V6');

export function interfaceFromWire(i: WireInterface<WireFamilyIn>): InterfaceUpdate {
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

export function interfaceToWire(i: NetInterface): WireInterface<WireFamily> {
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

export function routeFromWire(r: WireRoute<WireFamilyIn>, what: string): RouteRequest {
  const family = familyFromWire(`${what}.family`, r.family);
  return {
    ...(family ? { family } : {}),
    dest: r.dest, gateway: r.gateway, device: r.device, source: r.source, scope: r.scope,
  };
}

export function routeToWire(r: NetRoute): WireRoute<WireFamily> {
  return { dest: r.dest, gateway: r.gateway, device: r.device, source: r.source, scope: r.scope, family: familyToWire(r.family) };
}

export function neighborFromWire(n: WireNeighbor, what: string): ArpNeighbor {
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
