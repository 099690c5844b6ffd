// The zone as each view sees it, worked out from the Topology with the same
// per-host address choice as `meshplane dns` (addressesSeenBy), so the peers
// of bench:dns serve what ours answers (bench/dns.mjs checks a sample of
// names against ours before it measures anything). BIND gets one view per
// overlay set from this; NSD, Knot and dnsmasq get the public view.
//
// Stand-in: `meshplane dns render --engine bind` (issue 20, being written on
// another branch) renders named.conf and the zone files from the Topology;
// once it is merged, bench:dns should run BIND on its output instead.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addressesSeenBy } from '../../dist/topology/index.js';

/** name (relative to the domain) -> addresses, as `viewer` ({overlays} or null = public) sees them. */
export function zoneFor(topology, viewer) {
  const names = new Map();
  const add = (name, host) => {
    const list = names.get(name) ?? [];
    for (const address of addressesSeenBy(viewer, host)) if (!list.includes(address)) list.push(address);
    names.set(name, list);
  };
  for (const host of Object.values(topology.hosts)) add(host.name, host);
  for (const service of Object.values(topology.services)) {
    for (const instance of service.instances) {
      const host = topology.hosts[instance.host];
      add(service.name, host);
      add(`${host.name}.${service.name}`, host);
      if (instance.shard !== null) add(`${instance.shard}.${service.name}`, host);
    }
    if (service.master !== null) add(`${service.name}-master`, topology.hosts[service.master]);
  }
  return names;
}

/** A zone file (RFC 1035 master format) with the SOA ours gives (TTL 5, minimum 5). */
export function zoneFile(domain, names, nsAddress = '127.0.0.1') {
  const lines = [`$ORIGIN ${domain}.`, '$TTL 5', '@ IN SOA ns hostmaster 1 3600 600 86400 5', '@ IN NS ns', `ns IN A ${nsAddress}`];
  for (const [name, addresses] of names) for (const address of addresses) lines.push(`${name} IN ${address.includes(':') ? 'AAAA' : 'A'} ${address}`);
  return `${lines.join('\n')}\n`;
}

/** Every address of the hosts of one overlay set: BIND's match-clients for that view. */
export function viewClients(topology, key) {
  const clients = [];
  for (const host of Object.values(topology.hosts)) {
    if (Object.keys(host.overlays).sort().join(',') !== key) continue;
    clients.push(...host.ips, ...host.public_ips, ...Object.values(host.overlays));
  }
  return [...new Set(clients)];
}

/**
 * named.conf (BIND 9) with one view per entry of `views` ({name, clients,
 * names}) in order, then a `public` view for everyone else; one zone file per
 * view. `threads`: named -n (given on its command line, noted here).
 */
export function writeBind(dir, { domain, port, views, publicNames }) {
  mkdirSync(dir, { recursive: true });
  const blocks = [];
  const all = [...views, { name: 'public', clients: null, names: publicNames }];
  for (const view of all) {
    const file = join(dir, `${view.name}.zone`);
    writeFileSync(file, zoneFile(domain, view.names));
    const match = view.clients === null ? 'any;' : view.clients.map((c) => `${c};`).join(' ');
    blocks.push(`view "${view.name}" {\n  match-clients { ${match} };\n  recursion no;\n  zone "${domain}" { type primary; file "${file}"; };\n};`);
  }
  writeFileSync(
    join(dir, 'named.conf'),
    `options {\n  directory "${dir}";\n  pid-file "${dir}/named.pid";\n  listen-on port ${port} { 127.0.0.1; };\n  listen-on-v6 { none; };\n  recursion no;\n  rate-limit { responses-per-second 0; };\n  minimal-responses yes;\n  max-records-per-type 0;\n  max-types-per-name 0;\n  notify no;\n};\ncontrols { };\n${blocks.join('\n')}\n`,
  );
  return join(dir, 'named.conf');
}

/** nsd.conf: one server process, no rate limiting (Debian turns RRL on). */
export function writeNsd(dir, { domain, port, names }) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'zone'), zoneFile(domain, names));
  writeFileSync(
    join(dir, 'nsd.conf'),
    `server:\n  ip-address: 127.0.0.1@${port}\n  server-count: 1\n  username: ""\n  chroot: ""\n  zonesdir: "${dir}"\n  database: ""\n  pidfile: "${dir}/nsd.pid"\n  xfrdfile: "${dir}/xfrd.state"\n  zonelistfile: "${dir}/zone.list"\n  logfile: "${dir}/nsd.log"\n  rrl-ratelimit: 0\n  verbosity: 0\nremote-control:\n  control-enable: no\nzone:\n  name: ${domain}\n  zonefile: zone\n`,
  );
  return join(dir, 'nsd.conf');
}

/** knot.conf: one UDP worker (like NSD's one server), the public view (see bench/dns.mjs on mod-geoip). */
export function writeKnot(dir, { domain, port, names }) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'zone'), zoneFile(domain, names));
  writeFileSync(
    join(dir, 'knot.conf'),
    `server:\n  rundir: "${dir}"\n  listen: 127.0.0.1@${port}\n  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\nlog:\n  - target: stderr\n    any: error\ndatabase:\n  storage: "${dir}"\ntemplate:\n  - id: default\n    storage: "${dir}"\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n    semantic-checks: off\nzone:\n  - domain: ${domain}\n    file: "${dir}/zone"\n`,
  );
  return join(dir, 'knot.conf');
}

/** Names with more addresses than this are left out of dnsmasq's hosts file (see dnsmasqArgs). */
const DNSMASQ_MAX_ADDRESSES = 64;

/**
 * dnsmasq: the public view as a hosts file, local to the domain (never
 * forwarded). Names with more than 64 addresses (the services on every host:
 * 13,000 lines each) are left out: dnsmasq reads a hosts file in time that
 * grows with the square of a name's addresses (37 s for the whole file here),
 * and the query mix never asks for them (services of at most 20 instances).
 */
export function dnsmasqArgs(dir, { domain, port, names }) {
  mkdirSync(dir, { recursive: true });
  const lines = [];
  for (const [name, addresses] of names) {
    if (addresses.length > DNSMASQ_MAX_ADDRESSES) continue;
    for (const address of addresses) lines.push(`${address} ${name}.${domain}`);
  }
  writeFileSync(join(dir, 'hosts'), `${lines.join('\n')}\n`);
  return ['--keep-in-foreground', '--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${join(dir, 'hosts')}`, `--local=/${domain}/`, `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--user=root', '--cache-size=10000', `--pid-file=${join(dir, 'dnsmasq.pid')}`, '--log-facility=-', '--quiet-dhcp'];
}
