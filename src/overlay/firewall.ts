/**
 * The nftables ruleset of one host. meshplane keeps to its own table,
 * `inet meshplane`, which the file deletes and recreates in one transaction,
 * so loading it never touches the operator's tables.
 *
 * In nftables every base chain on a hook sees every packet and a drop in any
 * of them is final, so a table can close ports but cannot open what another
 * table drops. This table therefore only guards the ports meshplane owns:
 * - the ports of the services this host runs: open to the mesh hosts that
 *   share an overlay with it over that overlay's interface (DNS gives them
 *   the overlay address), to mesh hosts sharing no overlay with it on their
 *   own addresses (DNS gives them this host's), and, for services with
 *   gateway endpoints, to the gateway hosts on their own addresses;
 *   dropped for everyone else;
 * - each overlay's daemon port: open to that overlay's members, dropped for
 *   everyone else.
 * Every other packet is accepted here and left to the operator's rules.
 */
import type { Topology, TopologyHost } from '../topology/index.js';
import { parseIp } from '../lib/ip.js';
import type { HostOverlays } from './members.js';
import { paths } from './paths.js';
import type { RenderedFile } from './write.js';

interface FirewallOptions {
  /** Inventory group whose hosts run the gateway. */
  readonly gatewayGroup: string;
}

interface AddressSet {
  readonly name: string;
  readonly comment: string;
  readonly v4: string[];
  readonly v6: string[];
}

export function renderFirewall(topology: Topology, mine: HostOverlays, options: FirewallOptions): RenderedFile {
  const self = mine.host;
  const others = Object.values(topology.hosts).filter((h) => h.name !== self.name);
  const sets: AddressSet[] = [];
  const rules: string[] = [];
  const addSet = (name: string, comment: string, addresses: Iterable<string>): AddressSet => {
    const set: AddressSet = { name, comment, v4: [], v6: [] };
    for (const text of new Set(addresses)) {
      const ip = parseIp(text);
      if (ip !== undefined) (ip.family === 4 ? set.v4 : set.v6).push(ip.text);
    }
    sets.push(set);
    return set;
  };
  /** `ip saddr @x_v4 <tail>` and/or `ip6 saddr @x_v6 <tail>` for the families the set has. */
  const fromSet = (set: AddressSet, head: string, tail: string): string[] => [
    ...(set.v4.length > 0 ? [`${head}ip saddr @${set.name}_v4 ${tail}`] : []),
    ...(set.v6.length > 0 ? [`${head}ip6 saddr @${set.name}_v6 ${tail}`] : []),
  ];

  for (const { overlay, members, self: me } of mine.overlays) {
    const peers = members.filter((m) => m !== me).map((m) => m.host);
    const set = addSet(`${overlay.name}_peers`, `hosts of overlay ${overlay.name}, on their own addresses`, peers.flatMap(ownAddresses));
    const proto = overlay.driver === 'tinc' ? 'meta l4proto { tcp, udp } th' : 'udp';
    rules.push(`# overlay ${overlay.name} (${overlay.driver}): the daemon's port, for its members only`);
    rules.push(...fromSet(set, '', `${proto} dport ${overlay.port} accept`), `${proto} dport ${overlay.port} drop`);
  }

  const services = self.services.map((name) => topology.services[name]).filter((s) => s !== undefined);
  const servicePorts = [...new Set(services.flatMap((s) => s.ports))].sort((a, b) => a - b);
  const gatewayPorts = [...new Set(services.filter((s) => s.gateway_endpoints.length > 0).flatMap((s) => s.ports))].sort((a, b) => a - b);
  const portSets: string[] = [];
  if (servicePorts.length > 0) {
    portSets.push(portSet('service_ports', `ports of the services on this host: ${services.filter((s) => s.ports.length > 0).map((s) => `${s.name} ${s.ports.join(' ')}`).join(', ')}`, servicePorts));
    const l4 = 'meta l4proto { tcp, udp } th dport @service_ports';
    /** Rules under a comment, the comment only when there are rules. */
    const section = (comment: string, lines: string[]): void => {
      if (lines.length > 0) rules.push(`# ${comment}`, ...lines);
    };
    section(
      'services: mesh hosts that share an overlay with this host, over that overlay',
      mine.overlays.flatMap(({ overlay, members, self: me }) => {
        const set = addSet(`${overlay.name}_members`, `overlay addresses of the other hosts on ${overlay.name}`, members.filter((m) => m !== me).map((m) => m.address.text));
        return fromSet(set, `iifname "${overlay.name}" `, `${l4} accept`);
      }),
    );
    const shares = (host: TopologyHost): boolean => Object.keys(host.overlays).some((name) => name in self.overlays);
    const direct = addSet('direct', 'mesh hosts that share no overlay with this host, on their own addresses', others.filter((h) => !shares(h)).flatMap(ownAddresses));
    section('services: mesh hosts that share no overlay with this host', fromSet(direct, '', `${l4} accept`));
    if (gatewayPorts.length > 0) {
      portSets.push(portSet('gateway_ports', `ports of the services on this host with gateway endpoints: ${services.filter((s) => s.gateway_endpoints.length > 0).map((s) => s.name).join(', ')}`, gatewayPorts));
      const gateways = addSet('gateways', `hosts of group "${options.gatewayGroup}", on their own addresses`, others.filter((h) => h.groups.includes(options.gatewayGroup)).flatMap(ownAddresses));
      section(`services with gateway endpoints: the gateway hosts (group "${options.gatewayGroup}")`, fromSet(gateways, '', 'meta l4proto { tcp, udp } th dport @gateway_ports accept'));
    }
    rules.push('# services: closed to everyone else', `${l4} drop`);
  }

  const declarations = [
    ...portSets,
    ...sets.flatMap((set) => [
      ...(set.v4.length > 0 ? [addressSet(`${set.name}_v4`, 'ipv4_addr', set.comment, set.v4)] : []),
      ...(set.v6.length > 0 ? [addressSet(`${set.name}_v6`, 'ipv6_addr', set.comment, set.v6)] : []),
    ]),
  ];
  const content = [
    `# meshplane.nft: the firewall meshplane keeps for host ${self.name}. Do not edit:`,
    '# change the inventory and run "meshplane overlay render" again.',
    '# Load with "nft -f"; it replaces table inet meshplane and touches no other table.',
    'table inet meshplane',
    'delete table inet meshplane',
    '',
    'table inet meshplane {',
    ...declarations.map((d) => `${d}\n`),
    '\tchain input {',
    '\t\ttype filter hook input priority filter; policy accept;',
    '\t\tct state established,related accept',
    '\t\tiif "lo" accept',
    ...rules.map((rule) => `\t\t${rule}`),
    '\t}',
    '}',
    '',
  ].join('\n');
  return { path: paths.firewall, content, mode: 0o644 };
}

function ownAddresses(host: TopologyHost): string[] {
  return [...host.ips, ...host.public_ips];
}

function portSet(name: string, comment: string, ports: readonly number[]): string {
  return `\t# ${comment}\n\tset ${name} {\n\t\ttype inet_service\n\t\telements = { ${ports.join(', ')} }\n\t}`;
}

function addressSet(name: string, type: string, comment: string, addresses: readonly string[]): string {
  const sorted = [...addresses].sort(compareAddresses);
  return `\t# ${comment}\n\tset ${name} {\n\t\ttype ${type}\n\t\telements = { ${sorted.join(', ')} }\n\t}`;
}

function compareAddresses(a: string, b: string): number {
  const x = parseIp(a)?.value ?? 0n;
  const y = parseIp(b)?.value ?? 0n;
  return x < y ? -1 : x > y ? 1 : 0;
}
