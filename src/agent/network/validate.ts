// Validation and canonical forms of what network requests carry: interface
// names, IP addresses, prefixes, CIDRs, MAC addresses, MTUs, route scopes and
// neighbour states. Every value ends up as an argument of `ip`, so the rules
// are strict; `what` names the field in the error message.
import { isIP } from 'node:net';
import { excerpt, invalidArgument } from '../errors';
import type { IpFamily, NeighborState } from './types';

/** IFNAMSIZ is 16 including the NUL. The kernel also forbids "/", ":" and white space; we allow a safe subset. */
const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

export function validateIfName(what: string, name: string): string {
  if (!IFNAME.test(name)) {
    throw invalidArgument(
      `${what} ${excerpt(name)} is not a valid interface name: use 1-15 characters of [A-Za-z0-9_.-], not starting with "." or "-"`,
    );
  }
  return name;
}

export interface ParsedIp {
  family: IpFamily;
  /** Canonical text: dotted quad, or compressed lower-case IPv6. */
  address: string;
  bytes: Uint8Array;
}

/** Parses an IP address; with `family` the address must be of that family. */
export function parseIp(what: string, text: string, family?: IpFamily): ParsedIp {
  const f = text.includes('%') ? 0 : isIP(text);
  if (f !== 4 && f !== 6) {
    throw invalidArgument(`${what} ${excerpt(text)} is not an IPv4 or IPv6 address`);
  }
  if (family !== undefined && f !== family) {
    throw invalidArgument(`${what} ${excerpt(text)} is an IPv${f} address, but the family says IPv${family}`);
  }
  if (f === 4) {
    return { family: 4, address: text, bytes: Uint8Array.from(text.split('.').map(Number)) };
  }
  // The WHATWG URL parser produces the RFC 5952 form: compressed, lower case.
  const address = new URL(`http://[${text}]`).hostname.slice(1, -1);
  return { family: 6, address, bytes: ipv6Bytes(address) };
}

/** The canonical text of an address the kernel reported (no validation error expected). */
export function canonicalIp(text: string): string {
  try {
    return parseIp('address', text).address;
  } catch {
    return text;
  }
}

function ipv6Bytes(canonical: string): Uint8Array {
  const [head, tail] = canonical.includes('::') ? canonical.split('::') : [canonical, undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

export const maxPrefix = (family: IpFamily) => (family === 4 ? 32 : 128);

export function validatePrefix(what: string, prefix: number, family: IpFamily): number {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > maxPrefix(family)) {
    throw invalidArgument(`${what} ${excerpt(prefix)} is not a valid IPv${family} prefix length (0-${maxPrefix(family)})`);
  }
  return prefix;
}

/** Parses a decimal prefix length as it arrives in a string field ("24"). */
export function parsePrefixText(what: string, text: string): number {
  if (!/^\d{1,3}$/.test(text)) {
    throw invalidArgument(`${what} ${excerpt(text)} is not a prefix length (a decimal number such as "24")`);
  }
  return Number(text);
}

export interface ParsedDest {
  family: IpFamily;
  /** "default" or the canonical "address/prefix". */
  dest: string;
}

/**
 * A route destination: "default", a CIDR, or a bare address meaning a host
 * route. Bits set beyond the prefix are refused, as the kernel does.
 */
export function parseDest(what: string, text: string, family?: IpFamily): ParsedDest {
  if (text === 'default') return { family: family ?? 4, dest: 'default' };
  const slash = text.indexOf('/');
  const ip = parseIp(what, slash < 0 ? text : text.slice(0, slash), family);
  const prefix = slash < 0 ? maxPrefix(ip.family) : validatePrefix(`prefix of ${what} ${excerpt(text)}`, parsePrefixText(`prefix of ${what}`, text.slice(slash + 1)), ip.family);
  for (let bit = prefix; bit < ip.bytes.length * 8; bit++) {
    if (ip.bytes[bit >> 3]! & (0x80 >> (bit & 7))) {
      throw invalidArgument(`${what} ${excerpt(text)} has bits set beyond its /${prefix} prefix`);
    }
  }
  if (prefix === 0) return { family: ip.family, dest: 'default' };
  return { family: ip.family, dest: `${ip.address}/${prefix}` };
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** A 48-bit MAC address, returned in lower case. `assignable` also refuses multicast and all-zero addresses. */
export function validateMac(what: string, text: string, assignable = false): string {
  const mac = text.toLowerCase();
  if (!MAC.test(mac)) {
    throw invalidArgument(`${what} ${excerpt(text)} is not a MAC address (six hex bytes separated by ":")`);
  }
  if (assignable && (parseInt(mac.slice(0, 2), 16) & 1 || mac === '00:00:00:00:00:00')) {
    throw invalidArgument(`${what} ${excerpt(text)} cannot be assigned to an interface: it is multicast or all zeros`);
  }
  return mac;
}

/** 68 is the smallest MTU IPv4 allows; 65536 is the loopback's. The link's own limits are checked later. */
export const MIN_MTU = 68;
export const MAX_MTU = 65536;

export function validateMtu(what: string, mtu: number): number {
  if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) {
    throw invalidArgument(`${what} ${excerpt(mtu)} is out of range (${MIN_MTU}-${MAX_MTU}, or 0 to leave it unchanged)`);
  }
  return mtu;
}

const SCOPES = new Set(['global', 'universe', 'site', 'link', 'host', 'nowhere']);

/** A route scope as `ip route` takes it; "" and "global" mean the default. */
export function validateScope(what: string, scope: string): string {
  if (scope === '' || scope === 'global' || scope === 'universe') return '';
  if (SCOPES.has(scope) || (/^\d{1,3}$/.test(scope) && Number(scope) <= 255)) return scope;
  throw invalidArgument(`${what} ${excerpt(scope)} is not a route scope (global, site, link, host, nowhere or 0-255)`);
}

const STATES: readonly NeighborState[] = ['permanent', 'noarp', 'reachable', 'stale', 'none', 'incomplete', 'delay', 'probe', 'failed'];

export function validateNeighborState(what: string, state: string): NeighborState {
  const s = state.toLowerCase();
  if (!(STATES as readonly string[]).includes(s)) {
    throw invalidArgument(`${what} ${excerpt(state)} is not a neighbour state (${STATES.join(', ')})`);
  }
  return s as NeighborState;
}
