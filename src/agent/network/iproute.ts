// iproute2 as the agent uses it: `ip -json` for reading, plain `ip` commands
// for changes, each run through the Reaper. Failures become typed errors from
// ip's own message ("Cannot find device" → not-found, and so on).
import { AgentError, failedPrecondition, invalidArgument, notFound } from '../errors';
import type { Logger } from '../log';
import { runCommand, type CommandFailure, type Spawner } from '../process/command';
import type { IpFamily, NetInterface, NetRoute } from './types';
import { canonicalIp, maxPrefix } from './validate';

export interface IpOptions {
  /** The iproute2 binary; default "ip". */
  binary?: string;
  /** Arguments put before every command, e.g. ["-n", "NAME"] to act in a named netns. */
  globalArgs?: readonly string[];
  /** Deadline per command; default 10 s. */
  timeoutMs?: number;
}

/** One link as `ip -json -details address show` prints it (the fields we use). */
export interface IpLink {
  ifindex: number;
  ifname: string;
  flags?: string[];
  mtu?: number;
  min_mtu?: number;
  max_mtu?: number;
  link_type?: string;
  address?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ family?: string; local?: string; prefixlen?: number; scope?: string }>;
}

interface IpRouteJson {
  type?: string;
  dst?: string;
  gateway?: string;
  dev?: string;
  prefsrc?: string;
  scope?: string;
  protocol?: string;
  metric?: number;
  nexthops?: Array<{ gateway?: string; dev?: string }>;
}

export interface RouteEntry extends NetRoute {
  /** What deleting exactly this route needs beyond the NetRoute fields. */
  protocol: string;
  metric?: number;
  type: string;
}

export class IpTool {
  readonly binary: string;
  private readonly globalArgs: readonly string[];
  private readonly timeoutMs: number;

  constructor(
    private readonly spawner: Spawner,
    private readonly log: Logger,
    options: IpOptions = {},
  ) {
    this.binary = options.binary ?? 'ip';
    this.globalArgs = options.globalArgs ?? [];
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Runs a changing command, e.g. ["link", "set", "dev", "eth0", "up"]. */
  async run(args: readonly string[]): Promise<void> {
    const full = [...this.globalArgs, ...args];
    this.log.debug({ cmd: this.binary, args: full }, 'ip');
    await runCommand(this.spawner, this.binary, full, {
      timeoutMs: this.timeoutMs,
      onFailure: ipFailure,
      spawnHint: 'install iproute2 in the guest image',
    });
  }

  /** Runs `ip -json ARGS` and parses the array it prints. */
  async json<T>(args: readonly string[]): Promise<T[]> {
    const full = [...this.globalArgs, '-json', ...args];
    const { stdout } = await runCommand(this.spawner, this.binary, full, {
      timeoutMs: this.timeoutMs,
      onFailure: ipFailure,
      spawnHint: 'install iproute2 in the guest image',
    });
    if (stdout.trim() === '') return [];
    try {
      const parsed = JSON.parse(stdout) as unknown;
      if (!Array.isArray(parsed)) throw new Error('not an array');
      return parsed as T[];
    } catch (err) {
      throw new AgentError('internal', `${this.binary} ${full.join(' ')} printed no JSON array: ${(err as Error).message}`);
    }
  }

  links(): Promise<IpLink[]> {
    return this.json<IpLink>(['-details', 'address', 'show']);
  }

  /** The main table of one family. A kernel without IPv6 has no IPv6 routes. */
  async routes(family: IpFamily): Promise<RouteEntry[]> {
    let raw: IpRouteJson[];
    try {
      raw = await this.json<IpRouteJson>([`-${family}`, 'route', 'show', 'table', 'main']);
    } catch (err) {
      if (family === 6 && err instanceof AgentError && /family not supported/i.test(err.message)) return [];
      throw err;
    }
    return raw.flatMap((r) => toRoutes(family, r));
  }
}

export function toInterface(l: IpLink): NetInterface {
  return {
    name: l.ifname,
    index: l.ifindex,
    hwAddr: (l.address ?? '').toLowerCase(),
    mtu: l.mtu ?? 0,
    up: l.flags?.includes('UP') ?? false,
    type: l.linkinfo?.info_kind ?? l.link_type ?? '',
    addresses: (l.addr_info ?? []).flatMap((a) => {
      const family = a.family === 'inet' ? 4 : a.family === 'inet6' ? 6 : null;
      if (family === null || a.local === undefined) return [];
      return [{ family, address: canonicalIp(a.local), prefix: a.prefixlen ?? maxPrefix(family) }];
    }),
  };
}

/** One JSON route → route entries; a multipath route gives one entry per next hop. */
function toRoutes(family: IpFamily, r: IpRouteJson): RouteEntry[] {
  const dst = r.dst ?? 'default';
  const dest = dst === 'default' ? 'default' : dst.includes('/') ? canonicalCidr(dst) : `${canonicalIp(dst)}/${maxPrefix(family)}`;
  const base = {
    family,
    dest,
    source: r.prefsrc ? canonicalIp(r.prefsrc) : '',
    scope: r.scope && r.scope !== 'global' && r.scope !== 'universe' ? r.scope : '',
    protocol: r.protocol ?? '',
    type: r.type ?? 'unicast',
    ...(r.metric !== undefined ? { metric: r.metric } : {}),
  };
  const hops = r.nexthops?.length ? r.nexthops : [{ gateway: r.gateway, dev: r.dev }];
  return hops.map((h) => ({ ...base, gateway: h.gateway ? canonicalIp(h.gateway) : '', device: h.dev ?? '' }));
}

function canonicalCidr(text: string): string {
  const [a, p] = text.split('/');
  return `${canonicalIp(a!)}/${p}`;
}

/** ip's error output → the error kind a client can act on. */
export function ipFailure(f: CommandFailure): Error {
  const text = `${f.stderr}\n${f.stdout}`;
  if (f.timedOut || f.outputTooLarge || f.signal) return failedPrecondition(f.summary);
  if (/Cannot find device|does not exist|No such device/i.test(text)) return notFound(f.summary);
  if (/Invalid argument|invalid prefix|is expected rather than|greater than device maximum|less than device minimum|Numerical result out of range|Cannot assign requested address/i.test(text)) {
    return invalidArgument(f.summary);
  }
  return failedPrecondition(f.summary);
}
