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
  /** What `addressesSeenBy` needs of the asker; null = outside every overlay. */
  readonly viewer: { readonly overlays: Readonly<Record<string, string>> } | null;
}

/** Unknown askers (and hosts on no overlay) get every target's own addresses. */
const PUBLIC_VIEW: View = { label: 'public', viewer: null };

/** Bounds the memo of unknown sources, so a scan of many addresses cannot grow memory. */
const MAX_REMEMBERED_SOURCES = 10_000;

export class ViewTable {
  readonly views: readonly View[];
  private readonly byAddress: Map<string, View>;
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
        view = { label: key, viewer: { overlays: Object.fromEntries(Object.keys(host.overlays).map((name) => [name, ''])) } };
        byKey.set(key, view);
      }
      for (const address of [...host.ips, ...host.public_ips, ...Object.values(host.overlays)]) this.byAddress.set(address, view);
    }
    this.views = [...byKey.values()];
    const self = selfHost === null ? undefined : topology.hosts[selfHost];
    this.loopbackView = self === undefined ? PUBLIC_VIEW : (byKey.get(viewKey(self)) ?? PUBLIC_VIEW);
  }

  /** The view for a source address as Node reports it (IPv4-mapped IPv6 included). */
  select(source: string): View {
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
