/**
 * One check, made often by the online CA and by `pki sign`: is `signature`
 * an ECDSA P-256 / SHA-256 signature over `message` by the key whose public
 * point (65 bytes, uncompressed) is `point`? Three per renewal: the CSR's
 * own, the renewal proof by the current key, and the CA's over the
 * certificate presented.
 *
 * Two implementations that must agree (test/pki/p256.test.ts checks them
 * against each other on good, forged and malformed input):
 *
 * - native/p256.c, built by `npm install` when a C compiler is there
 *   (scripts/build-native.mjs): about 56 us a check, nearly all of it the
 *   curve arithmetic.
 * - node:crypto: 130-190 us a check on a key not seen before, because
 *   OpenSSL 3.0 builds a fresh key object (a new P-256 group, its Montgomery
 *   constants, a point-times-order check) and fetches its algorithms again
 *   for every call (BENCHMARKS.md, pki).
 *
 * MESHPLANE_NATIVE=0 in the environment forces node:crypto.
 */
import { createPublicKey, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

type Verify = (point: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;

/** Which implementation checks signatures here, and why (for the start-up log line and the metrics). */
interface P256Backend {
  readonly native: boolean;
  readonly detail: string;
}

const ADDON_PATH = fileURLToPath(new URL('../../build/Release/meshplane_p256.node', import.meta.url));

/** The uncompressed point in a P-256 key's BIT STRING content (an unused-bits byte 0, then 0x04 || X || Y), or undefined. */
export function uncompressedPoint(bitStringContent: Uint8Array): Uint8Array | undefined {
  return bitStringContent.length === 66 && bitStringContent[0] === 0 && bitStringContent[1] === 4 ? bitStringContent.subarray(1) : undefined;
}

/** A P-256 point as a node:crypto key. It goes in as JWK: OpenSSL 3 builds it from parameters, skipping the SPKI decoder chain. */
export function p256KeyObject(point: Uint8Array): KeyObject {
  const bytes = Buffer.from(point.buffer, point.byteOffset, point.byteLength);
  return createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: bytes.subarray(1, 33).toString('base64url'), y: bytes.subarray(33, 65).toString('base64url') }, format: 'jwk' });
}

/** The check through node:crypto: the point as a JWK key, then a one-shot verify. */
export const verifyWithNodeCrypto: Verify = (point, message, signature) => {
  if (point.length !== 65 || point[0] !== 4) return false;
  try {
    return verify('sha256', message, p256KeyObject(point), signature);
  } catch {
    // A point off the curve, or a signature that is not DER.
    return false;
  }
};

/** The native check, or why there is none. */
export function loadNativeP256(): { readonly verify: Verify } | { readonly reason: string } {
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as { verify?: unknown };
    if (typeof addon.verify !== 'function') return { reason: `${ADDON_PATH} has no verify()` };
    return { verify: addon.verify as Verify };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { reason: code === 'MODULE_NOT_FOUND' ? `not built (${ADDON_PATH} is missing; npm install builds it when a C compiler is there)` : `cannot load ${ADDON_PATH}: ${(err as Error).message}` };
  }
}

let chosen: { readonly check: Verify; readonly backend: P256Backend } | undefined;

function choose(): { readonly check: Verify; readonly backend: P256Backend } {
  if (chosen !== undefined) return chosen;
  if (process.env['MESHPLANE_NATIVE'] === '0') {
    chosen = { check: verifyWithNodeCrypto, backend: { native: false, detail: 'node:crypto (MESHPLANE_NATIVE=0)' } };
    return chosen;
  }
  const native = loadNativeP256();
  chosen = 'verify' in native ? { check: native.verify, backend: { native: true, detail: 'native (build/Release/meshplane_p256.node)' } } : { check: verifyWithNodeCrypto, backend: { native: false, detail: `node:crypto; the native check is ${native.reason}` } };
  return chosen;
}

/** Whether `signature` (DER) is an ECDSA P-256 SHA-256 signature over `message` by the key at `point` (0x04 || X || Y). */
export function verifyP256Sha256(point: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return choose().check(point, message, signature);
}

export function p256Backend(): P256Backend {
  return choose().backend;
}
