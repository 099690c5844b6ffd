/**
 * What one host sees of another: the address rule that DNS answers follow
 * and `meshplane show` prints. Two hosts on a shared overlay talk over it
 * (the lowest overlay name wins when they share several); otherwise the
 * target's own addresses are used.
 */
import type { HostAddresses, Topology, TopologyHost } from './types.js';

/** The overlay both hosts are on, lowest name first; null when none. */
function sharedOverlay(viewer: Pick<HostAddresses, 'overlays'> | null, target: Pick<HostAddresses, 'overlays'>): string | null {
  if (viewer === null) return null;
  let best: string | null = null;
  for (const name of Object.keys(target.overlays)) {
    if (name in viewer.overlays && (best === null || name < best)) best = name;
  }
  return best;
}

/** Addresses of `target` as `viewer` should use them; viewer null = outside the mesh. */
export function addressesSeenBy(viewer: Pick<HostAddresses, 'overlays'> | null, target: HostAddresses): readonly string[] {
  const overlay = sharedOverlay(viewer, target);
  if (overlay !== null) return [target.overlays[overlay] as string];
  return target.ips;
}

/**
 * Hosts with the same overlay memberships see identical answers; this key
 * names that group ("" for hosts on no overlay).
 */
export function viewKey(host: Pick<HostAddresses, 'overlays'>): string {
  return Object.keys(host.overlays).sort().join(',');
}

/** Hosts grouped by view key, for printing one line per distinct view. */
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
