/** Key material helpers: P-256 key pairs, serial numbers, key identifiers. */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { MeshplaneError } from '../errors.js';
import { DerReader, TAG } from './der.js';

interface KeyPair {
  /** PKCS#8 PEM ("BEGIN PRIVATE KEY"), what openssl, curl and Node read. */
  readonly privateKeyPem: string;
  readonly publicKeySpki: Uint8Array;
}

/** A fresh ECDSA P-256 key pair (node:crypto: thousands per second). */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeySpki: publicKey.export({ type: 'spki', format: 'der' }),
  };
}

/** The SPKI DER of a PEM private key; refuses anything but an EC P-256 key. */
export function publicKeyOf(privateKeyPem: string, what: string): Uint8Array {
  let key;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_KEY_TYPE', `${what} is not a readable private key: ${(err as Error).message}`, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new MeshplaneError('PKI_ERR_KEY_TYPE', `${what} is a ${key.asymmetricKeyType ?? 'unknown'} ${key.asymmetricKeyDetails?.namedCurve ?? ''} key (expected ECDSA P-256)`.replace(/\s+\(/, ' ('));
  }
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

/** 128 random bits, positive, no leading zero byte: unique without a serial database. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x10;
  return bytes.toString('hex');
}

/** RFC 5280 method 1 key identifier: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Uint8Array): Buffer {
  const r = new DerReader(spki, 'public key');
  const [, bits] = r.children(r.expect(r.node(0), TAG.sequence, 'SubjectPublicKeyInfo'));
  // Skip the BIT STRING's unused-bits byte.
  return createHash('sha1').update(r.content(r.expect(bits, TAG.bitString, 'subjectPublicKey')).subarray(1)).digest();
}

/** Serial numbers as lowercase hex without separators or leading zeros. */
export function normalizeSerial(text: string): string {
  const hex = text.trim().toLowerCase().replace(/^0x/, '').replace(/:/g, '');
  if (!/^[0-9a-f]+$/.test(hex)) throw new MeshplaneError('PKI_ERR_SERIAL', `"${text}" is not a serial number (expected hex, such as 1a2b3c or 1A:2B:3C)`);
  return hex.replace(/^0+(?=.)/, '');
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
