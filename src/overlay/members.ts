/**
 * Who is on the overlays of one host. The Topology was checked when it was
 * read (src/topology/validate.ts: every overlay address inside its network,
 * no address twice, overlay members agreeing with the hosts' addresses, a
 * public address for every host), so this only looks the facts up.
 */
import type { Topology, TopologyHost, TopologyOverlay } from '../topology/index.js';
import { parseIp, parseNetwork } from '../lib/ip.js';
import type { IpAddress, IpNetwork } from '../lib/ip.js';
import { OverlayError } from './errors.js';

export interface OverlayMember {
  readonly host: TopologyHost;
  readonly address: IpAddress;
}

export interface HostOverlay {
  readonly overlay: TopologyOverlay;
  readonly network: IpNetwork;
  /** This host's membership. */
  readonly self: OverlayMember;
  /** Every member, this host included, sorted by host name. */
  readonly members: readonly OverlayMember[];
}

export interface HostOverlays {
  readonly host: TopologyHost;
  readonly overlays: readonly HostOverlay[];
}

/** The overlays `hostName` is on, with their members; OVERLAY_ERR_UNKNOWN_HOST when the topology has no such host. */
export function overlaysOfHost(topology: Topology, hostName: string): HostOverlays {
  const host = topology.hosts[hostName];
  if (host === undefined) {
    const known = Object.keys(topology.hosts);
    throw new OverlayError([
      { code: 'OVERLAY_ERR_UNKNOWN_HOST', overlay: null, host: hostName, message: `no such host in the topology (it has ${known.length} hosts${known.length > 0 ? `: ${known.slice(0, 5).join(', ')}${known.length > 5 ? ', ...' : ''}` : ''})` },
    ]);
  }
  const overlays = topology.overlays.filter((overlay) => overlay.name in host.overlays).map((overlay) => overlayOf(topology, overlay, hostName));
  return { host, overlays };
}

function overlayOf(topology: Topology, overlay: TopologyOverlay, selfName: string): HostOverlay {
  // overlay.hosts is sorted and lists exactly the hosts with an address on it.
  const members: OverlayMember[] = overlay.hosts.map((name) => {
    const host = topology.hosts[name] as TopologyHost;
    return { host, address: parseIp(host.overlays[overlay.name] as string) as IpAddress };
  });
  const self = members.find((m) => m.host.name === selfName) as OverlayMember;
  return { overlay, network: parseNetwork(overlay.network) as IpNetwork, self, members };
}

/** `/32` for IPv4, `/128` for IPv6: one overlay address. */
export function hostPrefix(address: IpAddress): string {
  return `${address.text}/${address.family === 4 ? 32 : 128}`;
}
