/**
 * Who is asking: the query's source address selects a view. A view is a set
 * of overlay memberships, not a host, because hosts on the same overlays see
 * identical answers; so the number of views (and cached answers) grows with
 * distinct overlay sets, not with the fleet.
 */
import { isLoopback, parseIp } from '../lib/ip.js';
import type { Topology } from '../topology/index.js';
import { viewKey } from '../topology/index.js';

export interface View {
  /** Overlay names joined by ",", or "public" for hosts on no overlay and unknown askers. */
  readonly label: string;
  /** 0 for the public view, then 1, 2, ... within one ViewTable: the zone's per-view caches are arrays indexed by it. */
  readonly index: number;
  /** What `addressesSeenBy` needs of the asker; null = outside every overlay. */
  readonly viewer: { readonly overlays: Readonly<Record<string, string>> } | null;
}

/** Unknown askers (and hosts on no overlay) get every target's own addresses. */
const PUBLIC_VIEW: View = { label: 'public', index: 0, viewer: null };

/** Bounds the memo of unknown sources, so a scan of many addresses cannot grow memory. */
const MAX_REMEMBERED_SOURCES = 10_000;

export class ViewTable {
  readonly views: readonly View[];
  private readonly byAddress: Map<string, View>;
  /** The IPv4 entries of byAddress again, numeric: no string hashing per packet (the common case). */
  private readonly byIpv4: Ipv4Table;
  private readonly loopbackView: View;
  /** Views worked out for addresses no host owns (127.0.0.1, clients outside the mesh). */
  private readonly others = new Map<string, View>();

  /**
   * @param selfHost the host this server runs on: loopback askers that no
   *   host owns (127.0.0.1, ::1) are local processes and see its view.
   */
  constructor(topology: Topology, selfHost: string | null) {
    const byKey = new Map<string, View>([['', PUBLIC_VIEW]]);
    this.byAddress = new Map();
    for (const host of Object.values(topology.hosts)) {
      const key = viewKey(host);
      let view = byKey.get(key);
      if (view === undefined) {
        view = { label: key, index: byKey.size, viewer: { overlays: Object.fromEntries(Object.keys(host.overlays).map((name) => [name, ''])) } };
        byKey.set(key, view);
      }
      for (const address of [...host.ips, ...host.public_ips, ...Object.values(host.overlays)]) this.byAddress.set(address, view);
    }
    this.views = [...byKey.values()];
    this.byIpv4 = new Ipv4Table(this.byAddress);
    const self = selfHost === null ? undefined : topology.hosts[selfHost];
    this.loopbackView = self === undefined ? PUBLIC_VIEW : (byKey.get(viewKey(self)) ?? PUBLIC_VIEW);
  }

  /** The view for a source address as Node reports it (IPv4-mapped IPv6 included). */
  select(source: string): View {
    const ipv4 = ipv4Number(source);
    if (ipv4 !== null) {
      // The whole of selectSlow for IPv4, without strings: owned, else loopback (127/8), else public.
      return this.byIpv4.get(ipv4) ?? ((ipv4 >>> 24) === 127 ? this.loopbackView : PUBLIC_VIEW);
    }
    const direct = this.byAddress.get(source) ?? this.others.get(source);
    if (direct !== undefined) return direct;
    const view = this.selectSlow(source);
    if (this.others.size >= MAX_REMEMBERED_SOURCES) this.others.clear();
    this.others.set(source, view);
    return view;
  }

  private selectSlow(source: string): View {
    const unmapped = source.startsWith('::ffff:') && source.includes('.') ? source.slice(7) : source;
    const address = parseIp(unmapped);
    if (address === undefined) return PUBLIC_VIEW;
    const owned = this.byAddress.get(address.text);
    if (owned !== undefined) return owned;
    return isLoopback(address) ? this.loopbackView : PUBLIC_VIEW;
  }
}

/**
 * A dotted quad as Node reports a source ("10.1.2.3") to its 32-bit value
 * (signed, as an Int32Array holds it), or null for anything else (IPv6,
 * mapped addresses, junk). No allocation: it runs once per packet.
 */
function ipv4Number(text: string): number | null {
  const length = text.length;
  if (length < 7 || length > 15) return null;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return null;
      value = (value << 8) | octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      if (octet > 255) return null;
      digits++;
    } else {
      return null;
    }
  }
  if (dots !== 3 || digits === 0) return null;
  return (value << 8) | octet;
}

/** Open addressing over two typed arrays: IPv4 number -> view. Built once per zone. */
class Ipv4Table {
  private readonly keys: Int32Array;
  /** Index into `values` + 1; 0 = empty slot. */
  private readonly slots: Uint32Array;
  private readonly values: View[] = [];
  private readonly mask: number;

  constructor(byAddress: ReadonlyMap<string, View>) {
    let capacity = 16;
    while (capacity < byAddress.size * 2) capacity *= 2;
    this.keys = new Int32Array(capacity);
    this.slots = new Uint32Array(capacity);
    this.mask = capacity - 1;
    const indexOf = new Map<View, number>();
    for (const [address, view] of byAddress) {
      const key = ipv4Number(address);
      if (key === null) continue;
      let index = indexOf.get(view);
      if (index === undefined) {
        index = this.values.push(view);
        indexOf.set(view, index);
      }
      let slot = hash(key) & this.mask;
      while (this.slots[slot] !== 0 && this.keys[slot] !== key) slot = (slot + 1) & this.mask;
      this.keys[slot] = key;
      this.slots[slot] = index;
    }
  }

  get(key: number): View | undefined {
    let slot = hash(key) & this.mask;
    for (;;) {
      const index = this.slots[slot]!;
      if (index === 0) return undefined;
      if (this.keys[slot] === key) return this.values[index - 1];
      slot = (slot + 1) & this.mask;
    }
  }
}

/** Spreads neighbouring addresses (hosts are numbered in runs) over the table. */
function hash(key: number): number {
  return Math.imul(key ^ (key >>> 16), 0x45d9f3b) ^ (Math.imul(key, 0x45d9f3b) >>> 16);
}
