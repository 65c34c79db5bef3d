// The sandbox's DNS configuration (CreateSandbox's `dns` lines): checked
// line by line, then written as the sandbox resolv.conf that containers get
// as their /etc/resolv.conf (see Sandbox.createContainer).
import net from 'node:net';
import { excerpt, invalidArgument } from '../errors';

/** Where containers see the sandbox resolv.conf. */
export const RESOLV_CONF_DESTINATION = '/etc/resolv.conf';
/** More would only be ignored by resolvers (glibc reads 3 nameservers) or be an abuse. */
export const MAX_DNS_LINES = 32;
export const MAX_DNS_LINE_LENGTH = 512;

const DOMAIN_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
/** resolv.conf options: a name, optionally with a number (ndots:2, timeout:1, rotate, edns0, ...). */
const OPTION = /^[A-Za-z][A-Za-z0-9_-]*(:\d{1,5})?$/;
const ZONE = /^[A-Za-z0-9_.-]{1,32}$/;

/**
 * Checks CreateSandbox's dns lines and returns the resolv.conf text. Each
 * line is `nameserver IP`, `search DOMAIN...` or `options OPTION...`, of
 * printable ASCII (spaces and tabs between words), at most
 * MAX_DNS_LINE_LENGTH characters; at most MAX_DNS_LINES lines. Anything else
 * is an invalid-argument error naming the line, so nothing the resolver
 * would misread (a newline smuggling in another directive) gets written.
 */
export function resolvConfFromDns(lines: readonly string[]): string {
  if (lines.length > MAX_DNS_LINES) {
    throw invalidArgument(`dns has ${lines.length} lines; at most ${MAX_DNS_LINES} are accepted`);
  }
  return lines.map((line, i) => `${checkLine(line, `dns[${i}]`)}\n`).join('');
}

function checkLine(line: string, what: string): string {
  const bad = (why: string) => invalidArgument(`${what} ${excerpt(line, 80)} ${why}`);
  if (line.length > MAX_DNS_LINE_LENGTH) throw bad(`is longer than ${MAX_DNS_LINE_LENGTH} characters`);
  if (!/^[\x20-\x7e\t]*$/.test(line)) throw bad('has characters other than printable ASCII, spaces and tabs');
  const [keyword, ...args] = line.trim().split(/[ \t]+/);
  const usage = 'use "nameserver IP", "search DOMAIN..." or "options OPTION..."';
  switch (keyword) {
    case 'nameserver': {
      if (args.length !== 1) throw bad(`needs exactly one address: ${usage}`);
      if (!isAddress(args[0]!)) throw bad(`names ${excerpt(args[0])}, which is not an IPv4 or IPv6 address`);
      break;
    }
    case 'search': {
      if (args.length === 0) throw bad(`names no domain: ${usage}`);
      const wrong = args.find((d) => !isDomain(d));
      if (wrong !== undefined) throw bad(`names ${excerpt(wrong)}, which is not a domain name`);
      break;
    }
    case 'options': {
      if (args.length === 0) throw bad(`names no option: ${usage}`);
      const wrong = args.find((o) => !OPTION.test(o));
      if (wrong !== undefined) throw bad(`has ${excerpt(wrong)}, which is not a resolver option (name or name:number)`);
      break;
    }
    default:
      throw bad(`is not a supported resolv.conf line: ${usage}`);
  }
  return [keyword, ...args].join(' ');
}

function isAddress(text: string): boolean {
  const [address, zone, ...more] = text.split('%');
  if (more.length > 0) return false;
  if (zone !== undefined) return net.isIPv6(address!) && ZONE.test(zone);
  return net.isIP(address!) !== 0;
}

function isDomain(text: string): boolean {
  const name = text.endsWith('.') ? text.slice(0, -1) : text;
  return name.length > 0 && name.length <= 253 && name.split('.').every((l) => DOMAIN_LABEL.test(l));
}
