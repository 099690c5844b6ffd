/**
 * `meshplane overlay keygen`, run on the host itself: a key pair per overlay
 * the host is on. An existing private key is kept (its public key is derived
 * again), so rerunning changes nothing and never rotates keys by accident.
 * Private keys are written 0600 where the daemons look for them; public keys
 * go to `<keysDir>/<host>.<overlay>.pub`, the only part that leaves the host.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Topology } from '../topology/index.js';
import { writeFileAtomic } from '../lib/atomic-write.js';
import { OverlayError } from './errors.js';
import type { OverlayProblem } from './errors.js';
import { generateKeyPair, publicKeyOf } from './keys.js';
import { paths, publicKeyFile } from './paths.js';

interface KeygenResult {
  readonly overlay: string;
  readonly driver: 'tinc' | 'wireguard';
  /** Absolute paths. */
  readonly privateKeyFile: string;
  readonly publicKeyFile: string;
  /** `generated` a new pair, or `kept` the existing private key. */
  readonly action: 'generated' | 'kept';
  /** Whether the public key file was (re)written. */
  readonly publicWritten: boolean;
}

export function generateHostKeys(topology: Topology, hostName: string, options: { root: string; keysDir: string }): KeygenResult[] {
  const host = topology.hosts[hostName];
  if (host === undefined) {
    throw new OverlayError([{ code: 'OVERLAY_ERR_UNKNOWN_HOST', overlay: null, host: hostName, message: 'no such host in the topology' }]);
  }
  const problems: OverlayProblem[] = [];
  // Check every overlay first and write only when all are fine, so an error
  // really means that nothing was written (the CLI says so).
  const plans: { result: KeygenResult; privateKey: string | undefined; publicKey: string }[] = [];
  // The topology was checked when read: every overlay the host has an address on exists.
  for (const overlay of topology.overlays.filter((o) => o.name in host.overlays)) {
    const name = overlay.name;
    const privatePath = join(options.root, overlay.driver === 'tinc' ? paths.tincPrivateKey(name) : paths.wireguardPrivateKey(name));
    const publicPath = join(options.keysDir, publicKeyFile(hostName, name));
    const existing = readIfExists(privatePath);
    let privateKey: string | undefined;
    let publicKey: string;
    if (existing === undefined) {
      const pair = generateKeyPair(overlay.driver);
      privateKey = pair.privateKey;
      publicKey = pair.publicKey;
    } else {
      const derived = publicKeyOf(overlay.driver, existing);
      if (derived === undefined) {
        problems.push({ code: 'OVERLAY_ERR_BAD_KEY', overlay: name, host: hostName, message: `${privatePath} exists but is not a ${overlay.driver} private key; move it away to generate a new one` });
        continue;
      }
      publicKey = derived;
    }
    const publicWritten = readIfExists(publicPath) !== publicKey;
    plans.push({
      result: { overlay: name, driver: overlay.driver, privateKeyFile: privatePath, publicKeyFile: publicPath, action: privateKey === undefined ? 'kept' : 'generated', publicWritten },
      privateKey,
      publicKey,
    });
  }
  if (problems.length > 0) throw new OverlayError(problems);
  for (const { result, privateKey, publicKey } of plans) {
    if (privateKey !== undefined) writeFileAtomic(result.privateKeyFile, privateKey, 0o600);
    if (result.publicWritten) writeFileAtomic(result.publicKeyFile, publicKey, 0o644);
  }
  return plans.map((p) => p.result);
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    // ENOTDIR: a part of the path is a file (--out under a file); the write then says so.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
}
