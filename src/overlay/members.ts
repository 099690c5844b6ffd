/**
 * Who is on the overlays of one host, checked. The Topology was validated
 * when it was compiled, but the renderer reads it from a file that may have
 * been edited or mixed up, and a wrong address here silently breaks a mesh,
 * so the facts each file depends on are checked again, with errors naming
 * the overlay and the host.
 */
import type { Topology, TopologyHost, TopologyOverlay } from '../topology/index.js';
import { networkContains, parseIp, parseNetwork } from '../lib/ip.js';
import type { IpAddress, IpNetwork } from '../lib/ip.js';
import type { OverlayProblem } from './errors.js';

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

/** The overlays `hostName` is on, with their members; problems instead when any fact is wrong. */
export function overlaysOfHost(topology: Topology, hostName: string): { value: HostOverlays; problems: [] } | { value: undefined; problems: OverlayProblem[] } {
  const host = topology.hosts[hostName];
  if (host === undefined) {
    const known = Object.keys(topology.hosts);
    return {
      value: undefined,
      problems: [{ code: 'OVERLAY_ERR_UNKNOWN_HOST', overlay: null, host: hostName, message: `no such host in the topology (it has ${known.length} hosts${known.length > 0 ? `: ${known.slice(0, 5).join(', ')}${known.length > 5 ? ', ...' : ''}` : ''})` }],
    };
  }
  const problems: OverlayProblem[] = [];
  const overlays: HostOverlay[] = [];
  for (const name of Object.keys(host.overlays).sort()) {
    const overlay = topology.overlays.find((o) => o.name === name);
    if (overlay === undefined) {
      problems.push({ code: 'OVERLAY_ERR_UNKNOWN_OVERLAY', overlay: name, host: hostName, message: `the host has an address on overlay "${name}", but the topology defines no such overlay` });
      continue;
    }
    const checked = checkOverlay(topology, overlay, hostName, problems);
    if (checked !== undefined) overlays.push(checked);
  }
  if (problems.length > 0) return { value: undefined, problems };
  return { value: { host, overlays }, problems: [] };
}

function checkOverlay(topology: Topology, overlay: TopologyOverlay, selfName: string, problems: OverlayProblem[]): HostOverlay | undefined {
  const network = parseNetwork(overlay.network);
  if (network === undefined) {
    problems.push({ code: 'OVERLAY_ERR_ADDRESS_OUTSIDE', overlay: overlay.name, host: selfName, message: `the overlay's network "${overlay.network}" is not a CIDR network, so no address can be inside it` });
    return undefined;
  }
  const before = problems.length;
  const members: OverlayMember[] = [];
  const owners = new Map<string, string>();
  const hostNames = Object.keys(topology.hosts).sort();
  for (const name of hostNames) {
    const host = topology.hosts[name] as TopologyHost;
    const text = host.overlays[overlay.name];
    if (text === undefined) continue;
    const address = parseIp(text);
    if (address === undefined || !networkContains(network, address)) {
      problems.push({ code: 'OVERLAY_ERR_ADDRESS_OUTSIDE', overlay: overlay.name, host: name, message: `address ${text} is outside the overlay's network ${network.text}` });
      continue;
    }
    const other = owners.get(address.text);
    if (other !== undefined) {
      problems.push({ code: 'OVERLAY_ERR_DUPLICATE_ADDRESS', overlay: overlay.name, host: name, message: `address ${address.text} is also host ${other}'s address on this overlay` });
      continue;
    }
    owners.set(address.text, name);
    if (host.public_ips.length === 0 && name !== selfName) {
      problems.push({ code: 'OVERLAY_ERR_NO_ENDPOINT', overlay: overlay.name, host: name, message: 'the host has no public_ips (nor ips) for its peers to reach it at' });
      continue;
    }
    members.push({ host, address });
  }
  if (problems.length > before) return undefined;
  const self = members.find((m) => m.host.name === selfName) as OverlayMember;
  return { overlay, network, self, members };
}

/** `/32` for IPv4, `/128` for IPv6: one overlay address. */
export function hostPrefix(address: IpAddress): string {
  return `${address.text}/${address.family === 4 ? 32 : 128}`;
}
