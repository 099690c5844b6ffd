/**
 * Overlay key pairs. The private key is made on the host and never leaves
 * it; the public key is written to `<host>.<overlay>.pub`, which Ansible
 * gathers from every host into one directory that the renderer reads.
 *
 * tinc 1.0: RSA (2048 bits, as `tincd -K` makes), PKCS#1 PEM, the form
 * tincd reads and writes. WireGuard: X25519, base64 of the raw 32 bytes,
 * the form `wg genkey` / `wg pubkey` use. Both come from node:crypto, so
 * keygen needs neither tincd nor wg on the host.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { OverlayDriver } from '../topology/index.js';

const TINC_RSA_BITS = 2048;
/** PKCS#8 DER header of an X25519 private key (RFC 8410); the raw 32 bytes follow. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

interface KeyPair {
  /** File contents of the private key. */
  readonly privateKey: string;
  /** File contents of the public key (`<host>.<overlay>.pub`). */
  readonly publicKey: string;
}

export function generateKeyPair(driver: OverlayDriver): KeyPair {
  if (driver === 'tinc') {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: TINC_RSA_BITS });
    return { privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }) as string, publicKey: tincPublicPem(createPublicKey(privateKey)) };
  }
  const { privateKey } = generateKeyPairSync('x25519');
  return { privateKey: `${rawX25519(privateKey, 'd')}\n`, publicKey: `${rawX25519(createPublicKey(privateKey), 'x')}\n` };
}

/** The public key file for an existing private key file; undefined when the private key is unreadable as such. */
export function publicKeyOf(driver: OverlayDriver, privateKeyText: string): string | undefined {
  try {
    if (driver === 'tinc') return tincPublicPem(createPublicKey(createPrivateKey({ key: privateKeyText, format: 'pem' })));
    const raw = decodeWireguardKey(privateKeyText);
    if (raw === undefined) return undefined;
    const key = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
    return `${rawX25519(createPublicKey(key), 'x')}\n`;
  } catch {
    return undefined;
  }
}

/**
 * A public key as read from a `.pub` file, in the one form the renderer
 * writes: tinc keys as PKCS#1 PEM (SPKI PEM is accepted and converted, so a
 * key taken from a `tincd -K` host file works too), WireGuard keys as
 * base64. Undefined when the text is not such a key.
 */
export function normalizePublicKey(driver: OverlayDriver, text: string): string | undefined {
  if (driver === 'wireguard') {
    const raw = decodeWireguardKey(text);
    return raw === undefined ? undefined : raw.toString('base64');
  }
  const pem = /-----BEGIN (RSA )?PUBLIC KEY-----[\s\S]*?-----END (RSA )?PUBLIC KEY-----/.exec(text)?.[0];
  if (pem === undefined) return undefined;
  try {
    const key = createPublicKey({ key: pem, format: 'pem' });
    if (key.asymmetricKeyType !== 'rsa') return undefined;
    return tincPublicPem(key).trimEnd();
  } catch {
    return undefined;
  }
}

function tincPublicPem(key: KeyObject): string {
  return key.export({ type: 'pkcs1', format: 'pem' }) as string;
}

function rawX25519(key: KeyObject, part: 'd' | 'x'): string {
  const jwk = key.export({ format: 'jwk' });
  const value = jwk[part];
  if (typeof value !== 'string') throw new Error(`x25519 key has no "${part}"`);
  return Buffer.from(value, 'base64url').toString('base64');
}

function decodeWireguardKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]{43}=$/.test(trimmed)) return undefined;
  const raw = Buffer.from(trimmed, 'base64');
  return raw.length === 32 ? raw : undefined;
}
