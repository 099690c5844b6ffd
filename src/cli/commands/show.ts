import { parseArgs } from 'node:util';
import { MeshplaneError, UsageError } from '../../errors.js';
import { didYouMean } from '../../lib/did-you-mean.js';
import { addressesSeenBy, hostsByView, masterNames, serviceNames } from '../../topology/index.js';
import { INPUT_OPTIONS, INPUT_USAGE, topologyFrom } from '../inputs.js';
import type { Topology, TopologyHost, TopologyService } from '../../topology/index.js';
import type { Command, CommandIO } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { renderTable } from '../table.js';

export const showCommand: Command = {
  name: 'show',
  summary: 'show one service or host: instances, master, and what each host resolves',
  usage: `meshplane show service NAME [options]
meshplane show host NAME [options]

service: its instances (host, shard, addresses), master, ports, credentials,
gateway endpoints, and the addresses each group of hosts gets for it in DNS.
host: its addresses, overlays, groups, services, and what it resolves for
every service.

${INPUT_USAGE}
  -t, --topology FILE    read a compiled Topology instead of the inputs
      --json             print the object as JSON`,
  run(args, io) {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: { ...INPUT_OPTIONS, topology: { type: 'string', short: 't' }, json: { type: 'boolean', default: false } },
      allowPositionals: true,
      strict: true,
    });
    const [kind, name, ...extra] = positionals;
    if ((kind !== 'service' && kind !== 'host') || name === undefined || extra.length > 0) {
      throw new UsageError('usage: meshplane show service NAME | meshplane show host NAME');
    }
    const topology = topologyFrom(values, io);
    if (topology === undefined) return EXIT_INVALID;
    const table = kind === 'service' ? topology.services : topology.hosts;
    const item = table[name];
    if (item === undefined) {
      const suggestion = didYouMean(name, Object.keys(table));
      throw new MeshplaneError('CLI_ERR_NOT_FOUND', `no ${kind} "${name}" in the topology${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`);
    }
    if (values.json) io.stdout(`${JSON.stringify(item, null, 2)}\n`);
    else if (kind === 'service') printService(topology, item as TopologyService, io);
    else printHost(topology, item as TopologyHost, io);
    return EXIT_OK;
  },
};

const dash = (value: string | null | undefined): string => (value === null || value === undefined || value === '' ? '-' : value);
const overlaysText = (overlays: Readonly<Record<string, string>>): string =>
  dash(Object.entries(overlays).map(([name, ip]) => `${name}=${ip}`).join(' '));

function listText(items: readonly string[], max = 8): string {
  if (items.length <= max) return dash(items.join(', '));
  return `${items.slice(0, max).join(', ')}, … (+${items.length - max})`;
}

function printService(topology: Topology, service: TopologyService, io: CommandIO): void {
  const placement = service.schedule_with !== null ? `schedule_with ${service.schedule_with}` : `num_instances ${service.num_instances} in ${service.scheduling_groups.join(', ')}`;
  const lines = [
    `service ${serviceNames(topology, service.name).fqdn}`,
    `  placement:   ${service.instances.length} instance(s); ${placement}`,
    `  master:      ${service.master_election ? `${dash(service.master)} (${masterNames(topology, service.name).fqdn})` : '- (no election)'}`,
    `  ports:       ${dash(service.ports.join(', '))}`,
    `  credentials: ${dash(service.credentials.join(', '))}`,
  ];
  for (const endpoint of service.gateway_endpoints) {
    lines.push(`  gateway:     ${endpoint.name}: ${endpoint.mode} :${endpoint.port} ${endpoint.hostnames.join(' ')} (proxy_protocol ${endpoint.proxy_protocol}, balance ${endpoint.balance})`);
  }
  io.stdout(`${lines.join('\n')}\n\n`);
  io.stdout(
    `${renderTable(
      ['INSTANCE', 'SHARD', 'IPS', 'OVERLAYS', 'MASTER'],
      service.instances.map((i) => [i.host, dash(i.shard), i.ips.join(' '), overlaysText(i.overlays), i.host === service.master ? 'yes' : '']),
    )}\n\n`,
  );
  io.stdout(`What ${serviceNames(topology, service.name).fqdn} resolves to, by asking host (hosts on the same overlays see the same):\n`);
  const rows: string[][] = [];
  for (const [key, hosts] of hostsByView(topology)) {
    const viewer = hosts[0] as TopologyHost;
    const addresses = service.instances.flatMap((instance) => addressesSeenBy(viewer, instance));
    rows.push([dash(key), listText(hosts.map((h) => h.name), 6), listText(addresses)]);
  }
  rows.push(['(outside the mesh)', '-', listText(service.instances.flatMap((i) => addressesSeenBy(null, i)))]);
  io.stdout(`${renderTable(['VIEW (OVERLAYS)', 'HOSTS', 'ADDRESSES'], rows)}\n`);
}

function printHost(topology: Topology, host: TopologyHost, io: CommandIO): void {
  const lines = [
    `host ${host.name} (${host.fqdn})`,
    `  ips:         ${dash(host.ips.join(', '))}`,
    `  public ips:  ${dash(host.public_ips.join(', '))}`,
    `  overlays:    ${overlaysText(host.overlays)}`,
    `  shard:       ${dash(host.shard)}`,
    `  groups:      ${dash(host.groups.join(', '))}`,
    `  credentials: ${dash(host.credentials.join(', '))}`,
  ];
  io.stdout(`${lines.join('\n')}\n\n`);
  const rows = Object.values(topology.services).map((service) => [
    service.name,
    host.services.includes(service.name) ? 'yes' : '',
    service.master === host.name ? 'yes' : '',
    listText(service.instances.flatMap((instance) => addressesSeenBy(host, instance))),
  ]);
  io.stdout(`What ${host.name} resolves for each service:\n`);
  io.stdout(`${renderTable(['SERVICE', 'RUNS HERE', 'MASTER', 'ADDRESSES SEEN FROM THIS HOST'], rows)}\n`);
}
