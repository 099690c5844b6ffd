/**
 * The mesh zone rendered for BIND 9, for big central servers: one `view`
 * per overlay set (`match-clients` = the addresses of its hosts), each with
 * the mesh zone and the reverse zones of the addresses the topology knows,
 * as zone files; a zone the same in several views is one file, loaded once
 * (`in-view`). The answers are those of our own server (zone.ts) for every
 * name and view; where BIND cannot do the same, src/dns/README.md ("BIND")
 * says what differs, and test/dns-bind.test.ts pins it.
 *
 * Pure: Topology in, file contents out, in a stable order, so the same
 * Topology and options give byte-identical files (write-bind.ts writes them).
 */
import type { Topology, TopologyHost } from '../topology/index.js';
import { addressesSeenBy, hostFqdn, instanceNames, masterNames, serviceNames, shardNames, srvNames, viewKey } from '../topology/index.js';
import type { SocketAddress } from './listen.js';
import type { ReverseData } from './reverse.js';
import { collectReverse, ownersSeenBy } from './reverse.js';

interface BindRenderOptions {
  /** The host BIND runs on: loopback askers no host owns get its view, and it names the NS. null: a central server. */
  readonly host: string | null;
  /** A central server's own addresses: `ns.<domain>` answers them (as our server's listen addresses). */
  readonly nsAddresses: readonly string[];
  /** Upstreams for names outside the mesh; none: recursion off (REFUSED, as `--no-forward`). */
  readonly forwarders: readonly SocketAddress[];
  readonly ttl: number;
  readonly negativeTtl: number;
  readonly serial: number;
}

export interface BindFile {
  /** Relative to the render directory. */
  readonly path: string;
  readonly content: string;
}

/** The fragment operators include from named.conf (inside no other block). */
export const BIND_CONF_FILE = 'named.conf';

/** One address-answer name (svc, host.svc, shard.svc, svc-master, host, ns): the hosts it stands for. */
interface AddressName {
  /** In the order ours lists them; a Set, as a service on every host has thousands. */
  readonly hosts: Set<TopologyHost>;
}

/** `_svc._tcp`: per target (instance) one SRV per port. */
interface SrvName {
  readonly targets: readonly { readonly host: TopologyHost; readonly fqdn: string }[];
  readonly ports: readonly number[];
}

interface BindView {
  /** BIND view name and directory of its zone files. */
  readonly name: string;
  /** What `addressesSeenBy` needs of the asker; null = the public view. */
  readonly viewer: { readonly overlays: Readonly<Record<string, string>> } | null;
  readonly addresses: string[];
}

/** Every file of a render: the named.conf fragment, then the zone files by view (each distinct zone once). */
export function renderBind(topology: Topology, options: BindRenderOptions): BindFile[] {
  const domain = topology.domain.toLowerCase();
  const central = options.host === null || !(options.host in topology.hosts);
  const nsName = central || options.host === null ? `ns.${domain}` : hostFqdn(topology, options.host);
  const { names, srv } = collectNames(topology, central ? options.nsAddresses : []);
  const views = collectViews(topology);
  const reverse = collectReverse(topology);
  const byZone = new Map<string, [string, ReverseData][]>();
  for (const entry of reverse) {
    const zone = reverseZoneOf(entry[0]);
    const list = byZone.get(zone);
    if (list === undefined) byZone.set(zone, [entry]);
    else list.push(entry);
  }
  const reverseZones = [...byZone.keys()].sort();
  const soa = `@ IN SOA ${nsName}. hostmaster.${domain}. ${options.serial >>> 0} 3600 600 86400 ${options.negativeTtl}\n@ IN NS ${nsName}.\n`;

  // A zone whose content is the same in several views (most reverse zones: only the overlay
  // addresses' PTRs differ) is written once, in the first of them, and the later ones take it
  // with `in-view`: fewer files to write and fsync, and BIND loads and holds it once.
  const files: BindFile[] = [];
  const holders = new Map<string, Map<string, string>>(); // zone -> content -> view that holds it
  const zonesOf = new Map<BindView, ZoneRef[]>();
  const place = (view: BindView, zone: string, content: string): ZoneRef => {
    let byContent = holders.get(zone);
    if (byContent === undefined) holders.set(zone, (byContent = new Map<string, string>()));
    const holder = byContent.get(content);
    if (holder !== undefined) return { zone, inView: holder };
    byContent.set(content, view.name);
    files.push({ path: `${view.name}/${zone}.zone`, content });
    return { zone, inView: null };
  };
  const forward = forwardZones(domain, options.ttl, soa, views, names, srv);
  for (const view of views) {
    const refs = [place(view, domain, forward.get(view)!)];
    for (const zone of reverseZones) refs.push(place(view, zone, reverseZone(zone, options.ttl, soa, view, byZone.get(zone)!, domain)));
    zonesOf.set(view, refs);
  }
  const conf = namedConf(topology, options, views, zonesOf);
  return [{ path: BIND_CONF_FILE, content: conf }, ...files];
}

/** A zone of a view: its own file (`<view>/<zone>.zone`), or the same zone of an earlier view. */
interface ZoneRef {
  readonly zone: string;
  readonly inView: string | null;
}

/**
 * The same render with another serial (in named.conf's header and every SOA): what
 * renderBind would give with it, without rendering again.
 */
export function reserialBind(files: readonly BindFile[], serial: number): BindFile[] {
  return files.map(({ path, content }) => ({
    path,
    content: path === BIND_CONF_FILE ? content.replace(/^\/\/ serial \d+$/m, `// serial ${serial >>> 0}`) : content.replace(/^(@ IN SOA \S+ \S+ )\d+ /m, `$1${serial >>> 0} `),
  }));
}

/** The serial a render carries (from its named.conf header); null when none. */
export function renderedSerial(conf: string): number | null {
  const match = /^\/\/ serial (\d+)$/m.exec(conf);
  return match === null ? null : Number(match[1]);
}

/**
 * Views in BIND's match order: one per overlay set with hosts (sorted by key), the public
 * view last for everyone else (unknown askers and hosts on no overlay), as views.ts selects.
 */
function collectViews(topology: Topology): BindView[] {
  const byKey = new Map<string, BindView>();
  // An address owned by several hosts: the last host (by name) decides its view, as in views.ts.
  const owner = new Map<string, string>();
  for (const host of Object.values(topology.hosts)) {
    const key = viewKey(host);
    if (key !== '' && !byKey.has(key)) byKey.set(key, { name: `on-${key.replaceAll(',', '+')}`, viewer: { overlays: host.overlays }, addresses: [] });
    for (const address of [...host.ips, ...host.public_ips, ...Object.values(host.overlays)]) owner.set(address, key);
  }
  for (const [address, key] of owner) if (key !== '') byKey.get(key)!.addresses.push(address);
  const sorted = [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, view]) => view);
  return [...sorted, { name: 'public', viewer: null, addresses: [] }];
}

/** The names of the zone, relative to the domain, as zone.ts collects them. */
function collectNames(topology: Topology, nsAddresses: readonly string[]): { names: Map<string, AddressName>; srv: Map<string, SrvName> } {
  const names = new Map<string, AddressName>();
  const srv = new Map<string, SrvName>();
  const add = (name: string, host: TopologyHost): void => {
    const existing = names.get(name);
    if (existing === undefined) names.set(name, { hosts: new Set([host]) });
    else existing.hosts.add(host);
  };
  for (const host of Object.values(topology.hosts)) add(host.name, host);
  for (const service of Object.values(topology.services)) {
    for (const instance of service.instances) {
      const host = topology.hosts[instance.host] as TopologyHost;
      add(serviceNames(topology, service.name).short, host);
      add(instanceNames(topology, service.name, host.name).short, host);
      if (instance.shard !== null) add(shardNames(topology, service.name, instance.shard).short, host);
    }
    const targets = service.instances.map((instance) => ({ host: topology.hosts[instance.host] as TopologyHost, fqdn: instanceNames(topology, service.name, instance.host).fqdn }));
    const udp = service.udp_ports ?? [];
    srv.set(srvNames(topology, service.name, 'tcp').short, { targets, ports: service.ports.filter((port) => !udp.includes(port)) });
    srv.set(srvNames(topology, service.name, 'udp').short, { targets, ports: udp });
    const master = service.master === null ? undefined : topology.hosts[service.master];
    if (master !== undefined) add(masterNames(topology, service.name).short, master);
  }
  // A central server names itself ns.<domain>; a mesh host or service called ns takes precedence.
  if (nsAddresses.length > 0 && !names.has('ns') && !srv.has('ns')) {
    names.set('ns', { hosts: new Set([{ name: 'ns', fqdn: '', shard: null, groups: [], services: [], masters: [], credentials: [], ips: nsAddresses, public_ips: nsAddresses, overlays: {} }]) });
  }
  return { names, srv };
}

/**
 * Bytes of answer records one name and type may have: what fits in one DNS message (65,535
 * bytes, less header, question and OPT). BIND refuses to load a zone with a bigger RRset
 * ("ran out of space"), and ours cannot send one either (TC even over TCP), so the render
 * writes the first records that fit (README, "BIND": set dns_max_answers on such services).
 */
const MAX_RRSET_BYTES = 64_000;
/** Wire size of an answer record: compressed owner (2), type, class, TTL, length (10), RDATA. */
const A_BYTES = 2 + 10 + 4;
const AAAA_BYTES = 2 + 10 + 16;

/**
 * The mesh zone as each view sees it. A name's lines differ from the public view's only in
 * a view sharing an overlay with one of its hosts (addressesSeenBy: else the host's own
 * addresses), so the public lines are made once and only those names are made again per
 * view; the SRV lines are the same in every view.
 */
function forwardZones(domain: string, ttl: number, soa: string, views: readonly BindView[], names: Map<string, AddressName>, srv: Map<string, SrvName>): Map<BindView, string> {
  const entries = [...names];
  const overlaysOf = entries.map(([, data]) => {
    const overlays = new Set<string>();
    for (const host of data.hosts) for (const overlay in host.overlays) overlays.add(overlay);
    return [...overlays];
  });
  const publicSeen = hostLines(null);
  const publicLines = entries.map(([name, data]) => addressLines(name, data, publicSeen));
  const srvLines = srvSection(srv);
  const zones = new Map<BindView, string>();
  for (const view of views) {
    const { viewer } = view;
    let lines = publicLines;
    if (viewer !== null) {
      const seen = hostLines(viewer);
      lines = entries.map(([name, data], i) => (overlaysOf[i]!.some((overlay) => overlay in viewer.overlays) ? addressLines(name, data, seen) : publicLines[i]!));
    }
    zones.set(view, `$ORIGIN ${domain}.\n$TTL ${ttl}\n${soa}${lines.join('')}${srvLines}`);
  }
  return zones;
}

/** A host's A/AAAA lines (without the owner) as one viewer sees them, made once per host. */
function hostLines(viewer: BindView['viewer']): (host: TopologyHost) => string[] {
  const seen = new Map<TopologyHost, string[]>();
  return (host) => {
    let records = seen.get(host);
    if (records === undefined) seen.set(host, (records = addressesSeenBy(viewer, host).map((address) => (address.includes(':') ? ` IN AAAA ${address}\n` : ` IN A ${address}\n`))));
    return records;
  };
}

/** One address name's lines: its hosts' records, each once, within one message. */
function addressLines(name: string, data: AddressName, recordsOf: (host: TopologyHost) => string[]): string {
  const out: string[] = [];
  if (data.hosts.size === 1) {
    for (const host of data.hosts) for (const record of recordsOf(host)) out.push(name, record);
    return out.join('');
  }
  const unique = new Set<string>();
  let a = 0;
  let aaaa = 0;
  for (const host of data.hosts) {
    for (const record of recordsOf(host)) {
      if (unique.has(record)) continue;
      const v6 = record.startsWith(' IN AAAA');
      if ((v6 ? (aaaa += AAAA_BYTES) : (a += A_BYTES)) > MAX_RRSET_BYTES) continue;
      unique.add(record);
    }
  }
  for (const record of unique) out.push(name, record);
  return out.join('');
}

function srvSection(srv: Map<string, SrvName>): string {
  const out: string[] = [];
  for (const [name, data] of srv) {
    let bytes = 0;
    for (const { fqdn } of data.targets) {
      for (const port of data.ports) {
        // RDATA: priority, weight, port (6) and the target, never compressed (RFC 2782).
        if ((bytes += 2 + 10 + 6 + fqdn.length + 2) > MAX_RRSET_BYTES) break;
        out.push(name, ` IN SRV 1 1 ${port} ${fqdn}.\n`);
      }
    }
  }
  return out.join('');
}

/**
 * BIND answers only inside zones, so the reverse names go into one zone per IPv4 /24
 * (`3.2.1.in-addr.arpa`) or IPv6 /64 that holds a known address (see README, "BIND").
 */
function reverseZoneOf(name: string): string {
  const labels = name.split('.');
  // in-addr.arpa: 4 octets + 2 labels, zone drops the host octet; ip6.arpa: 32 nibbles + 2, zone keeps the first 16.
  return name.endsWith('.in-addr.arpa') ? labels.slice(1).join('.') : labels.slice(16).join('.');
}

function reverseZone(zone: string, ttl: number, soa: string, view: BindView, entries: readonly [string, ReverseData][], domain: string): string {
  const out: string[] = [`$ORIGIN ${zone}.\n$TTL ${ttl}\n`, soa];
  const suffix = `.${zone}`;
  for (const [name, data] of entries) {
    const label = name.slice(0, name.length - suffix.length);
    for (const host of ownersSeenBy(data, view.viewer)) out.push(`${label} IN PTR ${hostFqdn({ domain }, host.name)}.\n`);
  }
  return out.join('');
}

/** Loopback askers no host owns: a per-host BIND gives them its host's view (as `--host`). */
const LOOPBACK = ['127.0.0.0/8', '::1'];

function namedConf(topology: Topology, options: BindRenderOptions, views: readonly BindView[], zonesOf: ReadonlyMap<BindView, readonly ZoneRef[]>): string {
  const self = options.host === null ? undefined : topology.hosts[options.host];
  const selfKey = self === undefined ? '' : viewKey(self);
  const out: string[] = [
    '// Generated by `meshplane dns render --engine bind`: do not edit, render again.\n',
    `// serial ${options.serial >>> 0}\n`,
    '// Include from named.conf at the top level, with `directory` set to the render directory\n',
    '// (zone files are named relative to it). Views match in this order; the last is for everyone else.\n',
  ];
  const otherAddresses = views.filter((view) => view.name !== `on-${selfKey.replaceAll(',', '+')}`).flatMap((view) => view.addresses);
  // Hosts on no overlay fall to the public view: their addresses must not be taken by the loopback ranges either.
  for (const host of Object.values(topology.hosts)) if (viewKey(host) === '') otherAddresses.push(...host.ips, ...host.public_ips);
  const recursion =
    options.forwarders.length === 0
      ? '  recursion no;\n'
      : `  recursion yes;\n  allow-recursion { any; };\n  allow-query-cache { any; };\n  forward only;\n  forwarders { ${options.forwarders.map((f) => `${f.address} port ${f.port};`).join(' ')} };\n`;
  for (const view of views) {
    const isSelf = self !== undefined && view.name === (selfKey === '' ? 'public' : `on-${selfKey.replaceAll(',', '+')}`);
    let match: string;
    if (view.viewer === null) match = 'any;';
    else if (isSelf) match = `${list(view.addresses)}!{ ${list([...new Set(otherAddresses)])}};\n    ${list(LOOPBACK)}`;
    else match = list(view.addresses);
    out.push(`view "${view.name}" {\n  match-clients {\n    ${match}\n  };\n`);
    out.push(recursion);
    // As our server: no NS in the authority section of answers, every instance in one
    // answer (no per-RRset cap at 100 records), no transfers, no NOTIFY to the NS name.
    out.push('  minimal-responses no-auth;\n  rrset-order { order cyclic; };\n  max-records-per-type 0;\n  allow-transfer { none; };\n  notify no;\n');
    for (const { zone, inView } of zonesOf.get(view)!) {
      out.push(inView === null ? `  zone "${zone}" { type primary; file "${view.name}/${zone}.zone"; };\n` : `  zone "${zone}" { in-view "${inView}"; };\n`);
    }
    out.push('};\n');
  }
  return out.join('');
}

/** `a; b; ` for an address match list (IPv6 written in full form by BIND anyway). */
function list(addresses: readonly string[]): string {
  return addresses.map((address) => `${address}; `).join('');
}
