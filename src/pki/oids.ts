/** Algorithm and OID constants, and the WebCrypto shapes we hand to @peculiar/x509. */

/** ECDSA P-256 with SHA-256: the only algorithm the mesh uses. */
export const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export const OID = {
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  subjectAltName: '2.5.29.17',
  extKeyUsage: '2.5.29.37',
  nameConstraints: '2.5.29.30',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecPublicKey: '1.2.840.10045.2.1',
  prime256v1: '1.2.840.10045.3.1.7',
} as const;

/**
 * The slices of WebCrypto's types that we hand to @peculiar/x509. Its
 * declarations name the DOM's `Crypto`/`CryptoKey`, which this Node-only
 * project does not load, so we describe what we pass ourselves.
 */
export interface X509Crypto {
  readonly subtle: object;
  getRandomValues(array: Uint8Array): Uint8Array;
}
export interface X509CryptoKey {
  readonly algorithm: { readonly name: string; readonly namedCurve: string };
  readonly type: string;
}
