/**
 * Everything one host needs for its overlays: the daemon files of each
 * overlay it is on (tinc or WireGuard, by the overlay's driver) and its
 * firewall. Pure: reads the Topology and the public keys, returns files.
 */
import type { Topology } from '../topology/index.js';
import { OverlayError } from './errors.js';
import { renderFirewall } from './firewall.js';
import { overlaysOfHost } from './members.js';
import { keyId, loadPublicKeys } from './public-keys.js';
import { renderTinc } from './tinc.js';
import { renderWireguard } from './wireguard.js';
import type { RenderedFile } from './write.js';

interface RenderOptions {
  /** Directory of `<host>.<overlay>.pub` files. */
  readonly keysDir: string;
  /** Inventory group of the gateway hosts (default `gateway`). */
  readonly gatewayGroup?: string;
}

export const DEFAULT_GATEWAY_GROUP = 'gateway';

/** The host's files; throws OverlayError listing every problem found. */
export function renderHost(topology: Topology, hostName: string, options: RenderOptions): RenderedFile[] {
  const mine = overlaysOfHost(topology, hostName);
  const { keys, problems } = loadPublicKeys(options.keysDir, mine.overlays, hostName);
  if (problems.length > 0) throw new OverlayError(problems);

  const files: RenderedFile[] = [];
  for (const entry of mine.overlays) {
    const publicKeyOf = (host: string): string => keys.get(keyId(host, entry.overlay.name)) as string;
    files.push(...(entry.overlay.driver === 'tinc' ? renderTinc(entry, publicKeyOf) : renderWireguard(entry, publicKeyOf)));
  }
  files.push(renderFirewall(topology, mine, { gatewayGroup: options.gatewayGroup ?? DEFAULT_GATEWAY_GROUP }));
  return files;
}
