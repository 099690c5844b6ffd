/**
 * The CA's signing key behind a small interface: a key file today, an HSM or
 * KMS tomorrow. Signatures are ECDSA P-256 over SHA-256, DER-encoded as
 * X.509 certificates and CRLs carry them.
 */
import { createPrivateKey, createPublicKey, randomFillSync, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { derSignatureToP1363 } from './der.js';
import type { X509Crypto, X509CryptoKey } from './oids.js';
import { EC_ALGORITHM } from './oids.js';

export interface Signer {
  /** The signing key's public half, SPKI DER. */
  readonly publicKeySpki: Uint8Array;
  /** Signs `data` with ECDSA P-256 over SHA-256; returns the DER signature. */
  sign(data: Uint8Array): Uint8Array;
}

/** A signer over a PKCS#8 PEM private key held in memory (read from the CA key file). */
export function keySigner(privateKeyPem: string): Signer {
  const key: KeyObject = createPrivateKey(privateKeyPem);
  const publicKeySpki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  return {
    publicKeySpki,
    // node:crypto's one-shot signer is several times faster than WebCrypto's.
    sign: (data) => sign('sha256', data, key),
  };
}

/**
 * Adapts a Signer to the slice of the WebCrypto `Crypto` interface that
 * @peculiar/x509's generators call (`subtle.sign`, which returns r||s, and
 * `getRandomValues`), and a stand-in `CryptoKey` naming the algorithm. Used
 * for the CA certificate and CRLs.
 */
export function signerCrypto(signer: Signer): { crypto: X509Crypto; signingKey: X509CryptoKey } {
  const crypto: X509Crypto = {
    getRandomValues: (array: Uint8Array): Uint8Array => randomFillSync(array),
    subtle: {
      sign: (_algorithm: unknown, _key: unknown, data: ArrayBuffer | ArrayBufferView): Promise<ArrayBuffer> => {
        const bytes = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
        const signature = derSignatureToP1363(signer.sign(bytes));
        return Promise.resolve(signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.byteLength) as ArrayBuffer);
      },
    },
  };
  const signingKey: X509CryptoKey = { algorithm: { name: EC_ALGORITHM.name, namedCurve: EC_ALGORITHM.namedCurve }, type: 'private' };
  return { crypto, signingKey };
}
