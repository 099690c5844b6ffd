/**
 * The mesh zone built from a Topology: which names exist, which hosts each
 * name stands for, and the wire-format answer for (view, name, type),
 * encoded once and then reused for every query that asks the same thing.
 */
import type { Topology, TopologyHost } from '../topology/index.js';
import { addressesSeenBy, hostFqdn, instanceNames, masterNames, serviceNames, shardNames, srvNames, srvProtocolName } from '../topology/index.js';
import type { ReverseData } from './reverse.js';
import { collectReverse, ownersSeenBy } from './reverse.js';
import type { View } from './views.js';
import { ViewTable } from './views.js';
import { RCODE, TYPE, addressRdata, encodeName, encodeRecord, soaRdata, srvRdata } from './wire.js';
import type { Rcode } from './wire.js';

interface ZoneOptions {
  /** TTL of A, AAAA, NS and SOA records, seconds. */
  readonly ttl: number;
  /** SOA minimum: how long resolvers may cache "no such name", seconds. */
  readonly negativeTtl: number;
  /** The host this server runs on (its view for loopback askers, and the NS name); null for a central server. */
  readonly selfHost: string | null;
  /** SOA serial; defaults to the load time in seconds so that every reload counts up. */
  readonly serial?: number;
  /**
   * A central server (no selfHost) is named ns.<domain> in its SOA and NS
   * records; these addresses (its own) answer for that name, unless the
   * mesh has a host or service called ns.
   */
  readonly nsAddresses?: readonly string[];
}

export const DEFAULT_TTL = 5;
export const DEFAULT_NEGATIVE_TTL = 5;

/**
 * An answer ready to be copied into a reply. The records sit back to back
 * in one buffer (one allocation per answer, however many instances).
 * Address answers have records of one size, so they can be rotated and
 * capped: `next` is where the next reply starts.
 */
export interface Answer {
  readonly rcode: Rcode;
  readonly records: Buffer;
  readonly count: number;
  /** Size of every record when all are alike (A: 16, AAAA: 28 bytes); 0 = copy whole, no rotation. */
  readonly recordSize: number;
  readonly authority: Buffer | null;
  /** Records to send per reply (the service's answer cap); `count` when uncapped. */
  readonly limit: number;
  /**
   * SRV: one group per instance (its records, and its target's addresses for
   * the additional section); rotated and capped by group, `count` and
   * `limit` counting groups. null for every other answer.
   */
  readonly groups: readonly AnswerGroup[] | null;
  next: number;
}

export interface AnswerGroup {
  readonly records: Buffer;
  readonly count: number;
  readonly additional: Buffer;
  readonly additionalCount: number;
}

/** A name standing for hosts' addresses (A/AAAA). */
interface AddressName {
  readonly kind: 'address';
  readonly hosts: readonly TopologyHost[];
  /** Answer cap of the service behind the name, if any. */
  readonly cap: number | null;
}

/** An SRV name `_svc._tcp`: one target per instance, the service's ports. No targets: the name exists with no records. */
interface SrvName {
  readonly kind: 'srv';
  readonly targets: readonly { readonly host: TopologyHost; readonly fqdn: string }[];
  readonly ports: readonly number[];
  readonly cap: number | null;
}

type NameData = AddressName | SrvName;

interface NameAnswers {
  readonly a: Answer;
  readonly aaaa: Answer;
  readonly any: Answer;
  readonly srv: Answer;
  readonly ptr: Answer;
}

/**
 * Encoded answers kept before the cache starts over. Bounds memory on a
 * central server that many views ask about many names; a per-host server
 * (one view) never comes near it.
 */
const MAX_CACHED_NAMES = 200_000;

export class Zone {
  readonly domain: string;
  readonly views: ViewTable;
  private readonly suffix: string;
  private readonly names = new Map<string, NameData>();
  /** Built on the first name outside the domain (PTR, or a name to forward): a third of the zone's build, not needed for the first answer. */
  private reverseNames: ReadonlyMap<string, ReverseData> | null = null;
  private readonly topology: Topology;
  /** By view index (an array: no Map lookup per query), then by the name as asked. */
  private cache: (Map<string, NameAnswers> | undefined)[] = [];
  private reverseCache = new Map<View, Map<string, NameAnswers>>();
  private cached = 0;
  private readonly ttl: number;
  private readonly nodata: Answer;
  private readonly nxdomain: Answer;
  /** Reverse names: we own single addresses, not the reverse zones, so negative answers carry no SOA (as CoreDNS's hosts plugin). */
  private readonly reverseNodata: Answer;
  private readonly reverseNxdomain: Answer;
  private readonly apexSoa: Answer;
  private readonly apexNs: Answer;
  private readonly apexAny: Answer;

  constructor(topology: Topology, options: ZoneOptions) {
    this.domain = topology.domain.toLowerCase();
    this.suffix = `.${this.domain}`;
    this.ttl = options.ttl;
    this.views = new ViewTable(topology, options.selfHost);
    this.collectNames(topology);
    this.topology = topology;

    const central = !(options.selfHost !== null && options.selfHost in topology.hosts);
    const nsName = central ? `ns.${this.domain}` : hostFqdn(this, options.selfHost);
    if (central && !this.names.has('ns') && (options.nsAddresses ?? []).length > 0) {
      this.names.set('ns', { kind: 'address', hosts: [nameServerHost(nsName, options.nsAddresses!)], cap: null });
    }
    const apex = encodeName(this.domain);
    const soa = soaRdata({
      mname: nsName,
      rname: `hostmaster.${this.domain}`,
      serial: options.serial ?? Math.floor(Date.now() / 1000),
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: options.negativeTtl,
    });
    // RFC 2308 section 5: a negative answer lives min(SOA TTL, SOA minimum).
    const negativeSoa = encodeRecord(apex, TYPE.SOA, Math.min(options.ttl, options.negativeTtl), soa);
    const soaRecord = encodeRecord(null, TYPE.SOA, options.ttl, soa);
    const nsRecord = encodeRecord(null, TYPE.NS, options.ttl, encodeName(nsName));
    this.nodata = fixed(RCODE.NOERROR, [], negativeSoa);
    this.nxdomain = fixed(RCODE.NXDOMAIN, [], negativeSoa);
    this.apexSoa = fixed(RCODE.NOERROR, [soaRecord], null);
    this.apexNs = fixed(RCODE.NOERROR, [nsRecord], null);
    this.apexAny = fixed(RCODE.NOERROR, [soaRecord, nsRecord], null);
    this.reverseNodata = fixed(RCODE.NOERROR, [], null);
    this.reverseNxdomain = fixed(RCODE.NXDOMAIN, [], null);
  }

  /** Whether a (lowercased) query name is ours to answer. */
  contains(name: string): boolean {
    return name === this.domain || name.endsWith(this.suffix);
  }

  get nameCount(): number {
    return this.names.size;
  }

  /** The answer for an in-zone name; `contains(name)` must hold. */
  answer(view: View, name: string, type: number): Answer {
    if (name.length === this.domain.length) return this.apexAnswer(type);
    let perView = this.cache[view.index];
    if (perView === undefined) {
      perView = new Map();
      this.cache[view.index] = perView;
    }
    // Keyed by the name as asked (lowercased): a hit costs no string work.
    let answers = perView.get(name);
    if (answers === undefined) {
      const data = this.names.get(name.slice(0, name.length - this.suffix.length));
      if (data === undefined) return this.nxdomain;
      answers = data.kind === 'address' ? this.encodeAnswers(view, data) : this.encodeSrv(view, data);
      if (this.cached >= MAX_CACHED_NAMES) {
        perView = new Map<string, NameAnswers>();
        this.cache = [];
        this.cache[view.index] = perView;
        this.reverseCache = new Map();
        this.cached = 0;
      }
      perView.set(name, answers);
      this.cached++;
    }
    return pick(answers, type, this.nodata);
  }

  /**
   * The answer for a reverse name (in-addr.arpa, ip6.arpa) of an address the
   * topology knows; null for any other name (forwarded, or REFUSED).
   */
  reverse(view: View, name: string, type: number): Answer | null {
    this.reverseNames ??= collectReverse(this.topology);
    const data = this.reverseNames.get(name);
    if (data === undefined) return null;
    let perView = this.reverseCache.get(view);
    if (perView === undefined) {
      perView = new Map();
      this.reverseCache.set(view, perView);
    }
    let answers = perView.get(name);
    if (answers === undefined) {
      answers = this.encodePtr(view, data);
      if (this.cached >= MAX_CACHED_NAMES) {
        perView = new Map<string, NameAnswers>();
        this.reverseCache = new Map([[view, perView]]);
        this.cache = [];
        this.cached = 0;
      }
      perView.set(name, answers);
      this.cached++;
    }
    return pick(answers, type, this.reverseNodata);
  }

  private apexAnswer(type: number): Answer {
    switch (type) {
      case TYPE.SOA:
        return this.apexSoa;
      case TYPE.NS:
        return this.apexNs;
      case TYPE.ANY:
        return this.apexAny;
      default:
        return this.nodata;
    }
  }

  private encodeAnswers(view: View, data: AddressName): NameAnswers {
    const v4: Buffer[] = [];
    const v6: Buffer[] = [];
    const seen = new Set<string>();
    for (const host of data.hosts) {
      for (const address of addressesSeenBy(view.viewer, host)) {
        if (seen.has(address)) continue;
        seen.add(address);
        (address.includes(':') ? v6 : v4).push(this.addressRecord(null, address));
      }
    }
    const answer = (records: Buffer[], recordSize: number): Answer =>
      records.length === 0
        ? this.nodata
        : {
            rcode: RCODE.NOERROR,
            records: Buffer.concat(records),
            count: records.length,
            recordSize,
            authority: null,
            limit: recordSize === 0 ? records.length : Math.min(records.length, data.cap ?? Infinity),
            groups: null,
            next: 0,
          };
    const a = answer(v4, A_RECORD_SIZE);
    const aaaa = answer(v6, AAAA_RECORD_SIZE);
    return { a, aaaa, any: answer([...v4, ...v6], v4.length === 0 || v6.length === 0 ? (v4.length > 0 ? A_RECORD_SIZE : AAAA_RECORD_SIZE) : 0), srv: this.nodata, ptr: this.nodata };
  }

  /** A or AAAA record; owner null = the question's name. */
  private addressRecord(owner: Buffer | null, address: string): Buffer {
    return encodeRecord(owner, address.includes(':') ? TYPE.AAAA : TYPE.A, this.ttl, addressRdata(address));
  }

  /**
   * SRV answer: per instance one record per port (priority 1, weight 1, as
   * Consul), target `host.svc.<domain>`; its addresses, as the A/AAAA answer
   * for that name gives them to this view, go in the additional section.
   */
  private encodeSrv(view: View, data: SrvName): NameAnswers {
    const groups: AnswerGroup[] = [];
    if (data.ports.length > 0) {
      for (const { host, fqdn } of data.targets) {
        const target = encodeName(fqdn);
        const records = data.ports.map((port) => encodeRecord(null, TYPE.SRV, this.ttl, srvRdata(1, 1, port, target)));
        const additional = [...new Set(addressesSeenBy(view.viewer, host))].map((address) => this.addressRecord(target, address));
        groups.push({ records: Buffer.concat(records), count: records.length, additional: Buffer.concat(additional), additionalCount: additional.length });
      }
    }
    const srv: Answer =
      groups.length === 0
        ? this.nodata
        : { rcode: RCODE.NOERROR, records: EMPTY, count: groups.length, recordSize: 0, authority: null, limit: Math.min(groups.length, data.cap ?? Infinity), groups, next: 0 };
    return { a: this.nodata, aaaa: this.nodata, any: srv, srv, ptr: this.nodata };
  }

  /** PTR answer: the hosts owning the address that this view may know of; none = NXDOMAIN (an overlay address is not theirs to resolve). */
  private encodePtr(view: View, data: ReverseData): NameAnswers {
    const hosts = ownersSeenBy(data, view.viewer);
    if (hosts.length === 0) return { a: this.reverseNxdomain, aaaa: this.reverseNxdomain, any: this.reverseNxdomain, srv: this.reverseNxdomain, ptr: this.reverseNxdomain };
    const records = hosts.map((host) => encodeRecord(null, TYPE.PTR, this.ttl, encodeName(hostFqdn(this, host.name))));
    const ptr = fixed(RCODE.NOERROR, records, null);
    return { a: this.reverseNodata, aaaa: this.reverseNodata, any: ptr, srv: this.reverseNodata, ptr };
  }

  /** Every name of the zone, relative to the domain: svc, host.svc, shard.svc, svc-master, host. */
  private collectNames(topology: Topology): void {
    // Host lists grow in place while the names are collected (a copy per instance was quadratic in a service's size).
    const add = (name: string, host: TopologyHost, cap: number | null): void => {
      const existing = this.names.get(name);
      if (existing === undefined) this.names.set(name, { kind: 'address', hosts: [host], cap });
      else if (existing.kind === 'address' && !existing.hosts.includes(host)) {
        (existing.hosts as TopologyHost[]).push(host);
        if (existing.cap === null && cap !== null) this.names.set(name, { ...existing, cap });
      }
    };
    const noRecords: SrvName = { kind: 'srv', targets: [], ports: [], cap: null };
    this.names.set(srvProtocolName('tcp'), noRecords);
    this.names.set(srvProtocolName('udp'), noRecords);
    for (const host of Object.values(topology.hosts)) add(host.name, host, null);
    for (const service of Object.values(topology.services)) {
      const cap = service.dns_max_answers ?? null;
      for (const instance of service.instances) {
        // The topology's contract: every instance's host exists.
        const host = topology.hosts[instance.host] as TopologyHost;
        add(serviceNames(topology, service.name).short, host, cap);
        add(instanceNames(topology, service.name, host.name).short, host, null);
        if (instance.shard !== null) add(shardNames(topology, service.name, instance.shard).short, host, cap);
      }
      // SRV: ports written N/udp under _udp, the rest under _tcp; both names exist for every service.
      const targets = service.instances.map((instance) => ({ host: topology.hosts[instance.host] as TopologyHost, fqdn: instanceNames(this, service.name, instance.host).fqdn }));
      const udp = service.udp_ports ?? [];
      this.names.set(srvNames(topology, service.name, 'tcp').short, { kind: 'srv', targets, ports: service.ports.filter((port) => !udp.includes(port)), cap });
      this.names.set(srvNames(topology, service.name, 'udp').short, { kind: 'srv', targets, ports: udp, cap });
      const master = service.master === null ? undefined : topology.hosts[service.master];
      if (master !== undefined) add(masterNames(topology, service.name).short, master, null);
    }
  }
}

/** Compressed owner (2) + type, class, TTL, length (10) + address. */
const A_RECORD_SIZE = 2 + 10 + 4;
const AAAA_RECORD_SIZE = 2 + 10 + 16;

const EMPTY = Buffer.alloc(0);

function fixed(rcode: Rcode, records: Buffer[], authority: Buffer | null): Answer {
  return { rcode, records: Buffer.concat(records), count: records.length, recordSize: 0, authority, limit: records.length, groups: null, next: 0 };
}

function pick(answers: NameAnswers, type: number, nodata: Answer): Answer {
  switch (type) {
    case TYPE.A:
      return answers.a;
    case TYPE.AAAA:
      return answers.aaaa;
    case TYPE.ANY:
      return answers.any;
    case TYPE.SRV:
      return answers.srv;
    case TYPE.PTR:
      return answers.ptr;
    default:
      return nodata;
  }
}

/** The central server itself as a host of the zone: its own addresses, on no overlay. */
function nameServerHost(fqdn: string, addresses: readonly string[]): TopologyHost {
  return { name: 'ns', fqdn, shard: null, groups: [], services: [], masters: [], credentials: [], ips: addresses, public_ips: addresses, overlays: {} };
}
