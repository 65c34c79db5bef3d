// Version-free network types of the core. Handler sets convert their
// messages to and from these; nothing here knows a protocol version.

export type IpFamily = 4 | 6;

export interface NetAddress {
  family: IpFamily;
  /** Canonical text form (IPv6 compressed, lower case). */
  address: string;
  /** Prefix length: 0-32 for IPv4, 0-128 for IPv6. */
  prefix: number;
}

export interface NetInterface {
  name: string;
  index: number;
  /** Link-layer address, lower case; "" for links without one (tun). */
  hwAddr: string;
  mtu: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Driver kind ("veth", "virtio"...) when the kernel reports one, else the link type ("ether", "loopback"). */
  type: string;
  addresses: NetAddress[];
}

/** What UpdateInterface asks for. */
export interface InterfaceUpdate {
  /** The link to configure; when absent it is found by `hwAddr`. */
  name?: string;
  /** With `name`: the MAC to set. Without: the MAC that finds the link. */
  hwAddr?: string;
  /** The MTU to set; absent or 0 leaves it unchanged. */
  mtu?: number;
  /** true brings the link up; false leaves its state unchanged. */
  up: boolean;
  /**
   * The complete set of addresses the link should have. Addresses it has and
   * this set lacks are removed, except IPv6 link-local ones (fe80::/10),
   * which the kernel manages and neighbour discovery needs.
   */
  addresses: Array<{ family?: IpFamily; address: string; prefix: number }>;
}

export interface NetRoute {
  family: IpFamily;
  /** "default" or a CIDR ("10.0.0.0/8", "fd00::/64"; a host route is "10.0.0.1/32"). */
  dest: string;
  /** "" when the destination is directly reachable. */
  gateway: string;
  /** "" when the kernel picks the device from the gateway. */
  device: string;
  /** Preferred source address; "". */
  source: string;
  /** "" (global), "link", "host", "site", "nowhere" or a number. */
  scope: string;
}

/** A route as requested: the family may be left to be inferred from the addresses. */
export type RouteRequest = Omit<NetRoute, 'family'> & { family?: IpFamily };

export type NeighborState =
  | 'permanent' | 'noarp' | 'reachable' | 'stale' | 'none' | 'incomplete' | 'delay' | 'probe' | 'failed';

export interface ArpNeighbor {
  /** IPv4 (ARP) or IPv6 (neighbour discovery) address. */
  address: string;
  family?: IpFamily;
  device: string;
  lladdr: string;
  /** Absent means permanent. */
  state?: NeighborState | string;
}
