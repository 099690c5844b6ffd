/**
 * Views: a view is the set of hosts with the same overlay memberships. They
 * see the same DNS answers (see addresses.ts for the rule), so DNS caches
 * per view (src/dns/views.ts) and `meshplane show` prints one line per view.
 */
import type { HostAddresses, Topology, TopologyHost } from './types.js';

/** Names a view: its overlays joined by "," ("" for hosts on no overlay). */
export function viewKey(host: Pick<HostAddresses, 'overlays'>): string {
  return Object.keys(host.overlays).sort().join(',');
}

/** Hosts grouped by view key, sorted by key. */
export function hostsByView(topology: Topology): Map<string, TopologyHost[]> {
  const groups = new Map<string, TopologyHost[]>();
  for (const host of Object.values(topology.hosts)) {
    const key = viewKey(host);
    const list = groups.get(key) ?? [];
    list.push(host);
    groups.set(key, list);
  }
  return new Map([...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
