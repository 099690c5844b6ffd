/**
 * Reads the public keys the renderer needs from the keys directory
 * (`<host>.<overlay>.pub`, gathered from every host by Ansible). A missing
 * or malformed key is a problem naming the overlay and the host whose key
 * it is, with the file that was looked for.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OverlayProblem } from './errors.js';
import { normalizePublicKey } from './keys.js';
import type { HostOverlay } from './members.js';
import { publicKeyFile } from './paths.js';

/** Key of the map returned by `loadPublicKeys`. */
export function keyId(host: string, overlay: string): string {
  return `${host}.${overlay}`;
}

export function loadPublicKeys(keysDir: string, overlays: readonly HostOverlay[], viewer: string): { keys: Map<string, string>; problems: OverlayProblem[] } {
  const keys = new Map<string, string>();
  const problems: OverlayProblem[] = [];
  for (const { overlay, members } of overlays) {
    for (const { host } of members) {
      const file = join(keysDir, publicKeyFile(host.name, overlay.name));
      const whose = host.name === viewer ? 'this host' : `peer ${host.name}`;
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
        problems.push({
          code: missing ? 'OVERLAY_ERR_MISSING_KEY' : 'OVERLAY_ERR_KEY_FILE',
          overlay: overlay.name,
          host: host.name,
          message: missing
            ? `no public key for ${whose}: ${file} does not exist (run "meshplane overlay keygen" on ${host.name} and gather its .pub files into ${keysDir})`
            : `cannot read the public key of ${whose}: ${(err as Error).message}`,
        });
        continue;
      }
      const key = normalizePublicKey(overlay.driver, text);
      if (key === undefined) {
        problems.push({
          code: 'OVERLAY_ERR_BAD_KEY',
          overlay: overlay.name,
          host: host.name,
          message: `${file} is not a ${overlay.driver === 'tinc' ? 'PEM RSA public key (tinc)' : 'base64 X25519 public key (WireGuard)'}; run "meshplane overlay keygen" on ${host.name} again`,
        });
        continue;
      }
      keys.set(keyId(host.name, overlay.name), key);
    }
  }
  return { keys, problems };
}
