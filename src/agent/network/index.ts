// The guest network, version-free: interfaces, addresses, routes and
// neighbours, read and changed with iproute2. Reading is allowed anywhere;
// every change first checks that the agent owns the network namespace it runs
// in (machine.ts), so an agent started by mistake on a host refuses instead of
// rewiring the host. Changes are serialized: two calls never interleave their
// ip commands.
import { excerpt, failedPrecondition, invalidArgument, notFound } from '../errors';
import type { Logger } from '../log';
import { requireNamespace } from '../machine';
import type { Spawner } from '../process/command';
import { IpTool, toInterface, type IpLink, type IpOptions, type RouteEntry } from './iproute';
import type { ArpNeighbor, InterfaceUpdate, IpFamily, NetAddress, NetInterface, NetRoute, RouteRequest } from './types';
import {
  parseDest, parseIp, validateIfName, validateMac, validateMtu, validateNeighborState, validatePrefix, validateScope,
} from './validate';

export type { ArpNeighbor, InterfaceUpdate, IpFamily, NetAddress, NetInterface, NetRoute, RouteRequest } from './types';
export type NetworkOptions = IpOptions;

interface Planned {
  address: NetAddress;
  key: string;
}

export class Network {
  private readonly ip: IpTool;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    options: NetworkOptions,
    spawner: Spawner,
    private readonly log: Logger,
  ) {
    this.ip = new IpTool(spawner, log, options);
  }

  /** Every link with every address, loopback included. */
  async listInterfaces(): Promise<NetInterface[]> {
    return (await this.ip.links()).map(toInterface);
  }

  /** The main routing table, IPv4 then IPv6, kernel-made routes included. */
  async listRoutes(): Promise<NetRoute[]> {
    return (await this.routeEntries()).map(plainRoute);
  }

  /**
   * Configures one link: MTU, MAC (when the link is named), the exact set of
   * addresses, and up. Returns the link as it is afterwards.
   */
  updateInterface(req: InterfaceUpdate): Promise<NetInterface> {
    requireNamespace('net', 'changing a network interface');
    const name = req.name ? validateIfName('interface name', req.name) : undefined;
    const hwAddr = req.hwAddr ? validateMac('interface hw_addr', req.hwAddr, name !== undefined) : undefined;
    if (name === undefined && hwAddr === undefined) {
      throw invalidArgument('the interface has neither a name nor a hw_addr: one of them must say which link to configure');
    }
    const mtu = req.mtu ? validateMtu(`mtu of interface ${name ?? hwAddr}`, req.mtu) : undefined;
    const wanted = planAddresses(req.addresses);
    if (mtu !== undefined && mtu < 1280 && wanted.some((w) => w.address.family === 6)) {
      throw invalidArgument(`mtu ${mtu} is below 1280, the IPv6 minimum, but IPv6 addresses are requested`);
    }

    return this.exclusive(async () => {
      const link = findLink(await this.ip.links(), name, hwAddr);
      const dev = link.ifname;
      if (mtu !== undefined && mtu !== link.mtu) {
        if (link.max_mtu && (mtu > link.max_mtu || mtu < (link.min_mtu ?? 0))) {
          throw invalidArgument(`mtu ${mtu} is out of range for interface ${dev} (${link.min_mtu ?? 0}-${link.max_mtu})`);
        }
        await this.ip.run(['link', 'set', 'dev', dev, 'mtu', String(mtu)]);
      }
      if (name !== undefined && hwAddr !== undefined && hwAddr !== (link.address ?? '').toLowerCase()) {
        await this.ip.run(['link', 'set', 'dev', dev, 'address', hwAddr]);
      }

      const wantedKeys = new Set(wanted.map((w) => w.key));
      const removed: string[] = [];
      for (const a of toInterface(link).addresses) {
        const key = addressKey(a);
        if (wantedKeys.has(key) || isKernelLinkLocal(a)) continue;
        await this.ip.run([`-${a.family}`, 'address', 'del', `${a.address}/${a.prefix}`, 'dev', dev]);
        removed.push(key);
      }
      // Removing a primary IPv4 address can take its secondaries with it: look again before adding.
      const have = new Set((removed.length ? toInterface(await this.reread(dev)) : toInterface(link)).addresses.map(addressKey));
      const added: string[] = [];
      for (const w of wanted) {
        if (have.has(w.key)) continue;
        const { family, address, prefix } = w.address;
        // IPv4 gets the usual broadcast address; IPv6 skips duplicate address detection: the
        // runtime assigned the address, and a tentative address cannot be a route's source yet.
        const extra = family === 4 ? (prefix <= 30 ? ['broadcast', '+'] : []) : ['nodad'];
        await this.ip.run([`-${family}`, 'address', 'replace', `${address}/${prefix}`, 'dev', dev, ...extra]);
        added.push(w.key);
      }
      if (req.up && !link.flags?.includes('UP')) await this.ip.run(['link', 'set', 'dev', dev, 'up']);

      const result = toInterface(await this.reread(dev));
      this.log.info({ interface: dev, mtu: result.mtu, up: result.up, added, removed }, 'interface updated');
      return result;
    });
  }

  /**
   * Installs `routes` in the main table. For every device named, its routes
   * that are not requested are removed, except the kernel's own (proto
   * kernel: the subnet routes of its addresses). Routes without a gateway are
   * installed first, so gateways are reachable. Returns the whole table.
   */
  updateRoutes(routes: readonly RouteRequest[]): Promise<NetRoute[]> {
    requireNamespace('net', 'changing routes');
    const wanted = routes.map((r, i) => checkRoute(r, `routes[${i}]`));
    const seen = new Map<string, number>();
    wanted.forEach((r, i) => {
      const k = `${r.family}|${r.dest}`;
      const j = seen.get(k);
      if (j !== undefined) {
        throw invalidArgument(`routes[${j}] and routes[${i}] both have destination ${r.dest}: one would replace the other`);
      }
      seen.set(k, i);
    });

    return this.exclusive(async () => {
      const names = new Set((await this.ip.links()).map((l) => l.ifname));
      wanted.forEach((r, i) => {
        if (r.device && !names.has(r.device)) throw notFound(`routes[${i}].device ${excerpt(r.device)}: no such interface`);
      });
      const devices = new Set(wanted.map((r) => r.device).filter(Boolean));
      const wantedKeys = new Set(wanted.map(routeKey));
      const removed: string[] = [];
      for (const e of await this.routeEntries()) {
        if (!devices.has(e.device) || e.protocol === 'kernel' || wantedKeys.has(routeKey(e))) continue;
        const args = [`-${e.family}`, 'route', 'del', e.dest, ...(e.gateway ? ['via', e.gateway] : []), 'dev', e.device,
          ...(e.metric !== undefined ? ['metric', String(e.metric)] : []), 'table', 'main'];
        try {
          await this.ip.run(args);
        } catch (err) {
          // A multipath route goes with its first next hop; the others are gone already.
          if (!/No such process/i.test((err as Error).message)) throw err;
        }
        removed.push(routeKey(e));
      }
      const ordered = [...wanted.filter((r) => !r.gateway), ...wanted.filter((r) => r.gateway)];
      for (const r of ordered) {
        await this.ip.run([
          `-${r.family}`, 'route', 'replace', r.dest,
          ...(r.gateway ? ['via', r.gateway] : []),
          ...(r.device ? ['dev', r.device] : []),
          ...(r.source ? ['src', r.source] : []),
          ...(r.scope ? ['scope', r.scope] : []),
          'table', 'main',
        ]);
      }
      this.log.info({ installed: ordered.map(routeKey), removed }, 'routes updated');
      return (await this.routeEntries()).map(plainRoute);
    });
  }

  /** Adds or replaces neighbour (ARP / NDP) entries. */
  addArpNeighbors(neighbors: readonly ArpNeighbor[]): Promise<void> {
    requireNamespace('net', 'adding ARP neighbours');
    const checked = neighbors.map((n, i) => {
      const what = `neighbors[${i}]`;
      const ip = parseIp(`${what}.address`, n.address, n.family);
      if (!n.device) throw invalidArgument(`${what}.device is empty: a neighbour entry belongs to an interface`);
      return {
        ip,
        device: validateIfName(`${what}.device`, n.device),
        lladdr: validateMac(`${what}.lladdr`, n.lladdr),
        state: validateNeighborState(`${what}.state`, n.state || 'permanent'),
      };
    });
    return this.exclusive(async () => {
      const names = new Set((await this.ip.links()).map((l) => l.ifname));
      checked.forEach((n, i) => {
        if (!names.has(n.device)) throw notFound(`neighbors[${i}].device ${excerpt(n.device)}: no such interface`);
      });
      for (const n of checked) {
        await this.ip.run([`-${n.ip.family}`, 'neigh', 'replace', n.ip.address, 'lladdr', n.lladdr, 'dev', n.device, 'nud', n.state]);
      }
      this.log.info({ neighbors: checked.map((n) => `${n.ip.address}@${n.device}`) }, 'neighbours added');
    });
  }

  private async routeEntries(): Promise<RouteEntry[]> {
    return [...(await this.ip.routes(4)), ...(await this.ip.routes(6))];
  }

  private async reread(dev: string): Promise<IpLink> {
    const link = (await this.ip.links()).find((l) => l.ifname === dev);
    if (!link) throw notFound(`interface ${excerpt(dev)} disappeared while it was being configured`);
    return link;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function planAddresses(addresses: InterfaceUpdate['addresses']): Planned[] {
  const out: Planned[] = [];
  const byAddress = new Map<string, number>();
  addresses.forEach((a, i) => {
    const ip = parseIp(`addresses[${i}].address`, a.address, a.family);
    const prefix = validatePrefix(`addresses[${i}].prefix (of ${a.address})`, a.prefix, ip.family);
    const j = byAddress.get(ip.address);
    if (j !== undefined) throw invalidArgument(`addresses[${j}] and addresses[${i}] are both ${ip.address}`);
    byAddress.set(ip.address, i);
    const address: NetAddress = { family: ip.family, address: ip.address, prefix };
    out.push({ address, key: addressKey(address) });
  });
  return out;
}

function findLink(links: IpLink[], name: string | undefined, hwAddr: string | undefined): IpLink {
  if (name !== undefined) {
    const link = links.find((l) => l.ifname === name);
    if (!link) throw notFound(`interface ${excerpt(name)} not found`);
    return link;
  }
  const matches = links.filter((l) => (l.address ?? '').toLowerCase() === hwAddr);
  if (matches.length === 0) throw notFound(`no interface has hw_addr ${hwAddr}`);
  if (matches.length > 1) {
    throw failedPrecondition(`${matches.length} interfaces have hw_addr ${hwAddr} (${matches.map((l) => l.ifname).join(', ')}): name the one to configure`);
  }
  return matches[0]!;
}

const addressKey = (a: NetAddress) => `${a.address}/${a.prefix}`;

/** fe80::/10: made by the kernel for every IPv6 link; kept unless asked for explicitly. */
function isKernelLinkLocal(a: NetAddress): boolean {
  return a.family === 6 && /^fe[89ab][0-9a-f]:/.test(a.address);
}

function checkRoute(r: RouteRequest, what: string): NetRoute {
  const device = r.device ? validateIfName(`${what}.device`, r.device) : '';
  const gw = r.gateway ? parseIp(`${what}.gateway`, r.gateway, r.family) : undefined;
  if (!r.dest) throw invalidArgument(`${what}.dest is empty: use "default" or a CIDR such as 10.0.0.0/8`);
  const dest = parseDest(`${what}.dest`, r.dest, r.family);
  // "default" says nothing about its family: the gateway's decides, else IPv4.
  const family: IpFamily = r.dest === 'default' && r.family === undefined ? gw?.family ?? 4 : dest.family;
  if (gw && gw.family !== family) {
    throw invalidArgument(`${what}.gateway ${gw.address} is IPv${gw.family}, but ${what}.dest ${r.dest} is IPv${family}`);
  }
  const source = r.source ? parseIp(`${what}.source`, r.source, family).address : '';
  if (!device && !gw) throw invalidArgument(`${what} to ${r.dest} has neither a device nor a gateway`);
  return { family, dest: dest.dest, gateway: gw?.address ?? '', device, source, scope: validateScope(`${what}.scope`, r.scope) };
}

const routeKey = (r: NetRoute) => [r.family, r.dest, r.gateway, r.device, r.source, r.scope].join('|');

const plainRoute = (e: RouteEntry): NetRoute => ({
  family: e.family, dest: e.dest, gateway: e.gateway, device: e.device, source: e.source, scope: e.scope,
});
