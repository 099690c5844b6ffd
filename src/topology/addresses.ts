/**
 * Per-host address choice: which of a target's addresses one host uses to
 * reach it. DNS answers follow it and `meshplane show` prints it. Two hosts
 * on a shared overlay talk over it (the lowest overlay name wins when they
 * share several); otherwise the target's own addresses are used.
 */
import type { HostAddresses } from './types.js';

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
