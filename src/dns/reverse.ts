/**
 * Reverse names (RFC 1035 3.5, RFC 3596 2.5): the in-addr.arpa / ip6.arpa
 * name a PTR query for an address asks about. Built from the address's
 * bytes, so every text form of one address gives the same name.
 */
import { isIPv4 } from 'node:net';
import { ipToBytes, parseIp } from '../lib/ip.js';
import type { Topology, TopologyHost } from '../topology/index.js';

/** `4.3.2.1.in-addr.arpa` for 1.2.3.4; nibbles, lowest first, under ip6.arpa for IPv6. Lowercase, no trailing dot. */
function reverseName(address: string): string {
  if (isIPv4(address)) {
    // The common case without the bigint parse: a valid dotted quad has no leading zeros, so its octets are its bytes.
    const octets = address.split('.');
    return `${octets[3]}.${octets[2]}.${octets[1]}.${octets[0]}.in-addr.arpa`;
  }
  const parsed = parseIp(address);
  if (parsed === undefined) throw new RangeError(`not an IP address: ${address}`);
  const bytes = ipToBytes(parsed);
  if (parsed.family === 4) return `${[...bytes].reverse().join('.')}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = bytes.length - 1; i >= 0; i--) nibbles.push((bytes[i]! & 0xf).toString(16), (bytes[i]! >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}

/** The hosts an address belongs to: its owners by ips/public_ips (seen by all), and by overlay (seen on that overlay). */
export interface ReverseData {
  readonly everyone: TopologyHost[];
  readonly byOverlay: { readonly overlay: string; readonly host: TopologyHost }[];
}

/** Every address of every host (ips, public_ips, overlay addresses), by reverse name: what PTR answers come from, in our server and in the BIND render. */
export function collectReverse(topology: Topology): Map<string, ReverseData> {
  const reverse = new Map<string, ReverseData>();
  const entry = (address: string): ReverseData => {
    const name = reverseName(address);
    let data = reverse.get(name);
    if (data === undefined) reverse.set(name, (data = { everyone: [], byOverlay: [] }));
    return data;
  };
  for (const host of Object.values(topology.hosts)) {
    for (const list of [host.ips, host.public_ips]) {
      for (const address of list) {
        const data = entry(address);
        if (!data.everyone.includes(host)) data.everyone.push(host);
      }
    }
    for (const [overlay, address] of Object.entries(host.overlays)) entry(address).byOverlay.push({ overlay, host });
  }
  return reverse;
}

/** The owners of an address that a viewer may know of: those by ips/public_ips, plus those by an overlay the viewer is on (null: the public view). */
export function ownersSeenBy(data: ReverseData, viewer: { readonly overlays: Readonly<Record<string, string>> } | null): TopologyHost[] {
  const hosts = [...data.everyone];
  for (const { overlay, host } of data.byOverlay) if (viewer !== null && overlay in viewer.overlays && !hosts.includes(host)) hosts.push(host);
  return hosts;
}
