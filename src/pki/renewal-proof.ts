/**
 * Proof that a renewal request comes from the holder of the credential's
 * current key, carried in the request itself, so that one mutual-TLS
 * connection can renew every due credential of a host (`POST /renewals`):
 * the handshake authenticates the host (with any one of its credentials),
 * and each item proves its own credential by a signature of its current key
 * over the new CSR.
 *
 * The signature covers a fixed context string and the CSR's DER, nothing
 * else. Replaying a captured item is harmless: it yields a certificate for
 * the CSR's public key, whose private key never left the host, and it is
 * refused anyway once the presented certificate expires or is revoked
 * (and rate-limited per identity until then).
 */
import { createPrivateKey, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { unpem } from './der.js';
import { verifyP256Sha256 } from './p256.js';

const CONTEXT = Buffer.from('meshplane renewal proof v1\0', 'latin1');

function signedBytes(csrPem: string): Buffer | undefined {
  const der = unpem(csrPem, 'CERTIFICATE REQUEST');
  return der === undefined ? undefined : Buffer.concat([CONTEXT, der]);
}

/** The proof for `csrPem` by the current key (base64 of an ECDSA-SHA256 signature). */
export function renewalProof(currentKey: string | KeyObject, csrPem: string): string {
  const bytes = signedBytes(csrPem);
  if (bytes === undefined) throw new Error('renewalProof: not a PEM CERTIFICATE REQUEST');
  const key = typeof currentKey === 'string' ? createPrivateKey(currentKey) : currentKey;
  return sign('sha256', bytes, key).toString('base64');
}

/** Whether `proof` is the signature, by the key at `point` (a P-256 point: every meshplane credential's), over `csrPem`. */
export function proofHolds(point: Uint8Array | undefined, csrPem: string, proof: string): boolean {
  const bytes = signedBytes(csrPem);
  if (point === undefined || bytes === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(proof)) return false;
  return verifyP256Sha256(point, bytes, Buffer.from(proof, 'base64'));
}
