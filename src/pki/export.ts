/**
 * PKCS#12 export of an installed credential (key, certificate, CA) for
 * Java keystores and Windows, which do not read PEM key files. Built with
 * node-forge: it cannot read P-256 keys, so the key goes in as its PKCS#8
 * bytes, which forge wraps and encrypts without looking inside.
 */
import { createPrivateKey, X509Certificate as NodeX509 } from 'node:crypto';
import { readFileSync } from 'node:fs';
import forge from 'node-forge';
import { MeshplaneError } from '../errors.js';
import { writeFileAtomic } from '../lib/atomic-write.js';
import { credentialFiles } from '../topology/index.js';
import type { CertKind } from './sans.js';

interface ExportOptions {
  readonly root: string;
  readonly credential: string;
  readonly kind: CertKind;
  readonly out: string;
  /** The file's first line is the password (a trailing newline is not part of it). */
  readonly passwordFile: string;
}

function read(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_READ', `cannot read the ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** The PKCS#12 (PFX) DER of `keyPem` with `certPem` and the CA, encrypted with `password`. */
function pkcs12(keyPem: string, certPem: string, caPem: string, password: string, friendlyName: string): Uint8Array {
  const pkcs8 = createPrivateKey(keyPem).export({ format: 'der', type: 'pkcs8' });
  const keyInfo = forge.asn1.fromDer(forge.util.createBuffer(pkcs8.toString('binary')));
  // Certificates go in as their ASN.1, unread (forge cannot parse a certificate with an EC key either).
  const certs = [certPem, caPem].map((pem) => ({ asn1: forge.asn1.fromDer(forge.util.createBuffer(Buffer.from(new NodeX509(pem).raw).toString('binary'))) }));
  // forge builds the key bag from an RSA key object (privateKeyToAsn1, then wrapRsaPrivateKey) and the
  // certificate bags from certificate objects (certificateToAsn1). For this one synchronous call those
  // hand back our PKCS#8 PrivateKeyInfo and certificates as they are: forge then encrypts the key into
  // a pkcs8ShroudedKeyBag, builds the certificate bags and the MAC as usual.
  const pki = forge.pki as unknown as Record<'privateKeyToAsn1' | 'wrapRsaPrivateKey' | 'certificateToAsn1', unknown>;
  const saved = { privateKeyToAsn1: pki.privateKeyToAsn1, wrapRsaPrivateKey: pki.wrapRsaPrivateKey, certificateToAsn1: pki.certificateToAsn1 };
  pki.privateKeyToAsn1 = () => keyInfo;
  pki.wrapRsaPrivateKey = (info: unknown) => info;
  pki.certificateToAsn1 = (cert: { asn1: forge.asn1.Asn1 }) => cert.asn1;
  let pfx: forge.asn1.Asn1;
  try {
    // 3DES/SHA-1 PBE for the key: what every keytool and Windows version imports (AES needs newer ones).
    pfx = forge.pkcs12.toPkcs12Asn1({} as forge.pki.rsa.PrivateKey, certs as unknown as forge.pki.Certificate[], password, { algorithm: '3des', friendlyName, generateLocalKeyId: true });
  } finally {
    Object.assign(pki, saved);
  }
  return Buffer.from(forge.asn1.toDer(pfx).getBytes(), 'binary');
}

/** Writes the credential's key, certificate and CA as a PKCS#12 file (atomically, mode 0600). */
export function exportPkcs12(options: ExportOptions): { out: string; serial: string } {
  const files = credentialFiles(options.root, options.credential, options.kind);
  const keyPem = read(files.key, 'private key');
  const certPem = read(files.cert, 'certificate');
  const caPem = read(files.ca, 'CA certificate');
  const password = read(options.passwordFile, 'password file').split('\n')[0] ?? '';
  if (password === '') throw new MeshplaneError('PKI_ERR_EXPORT', `the password file ${options.passwordFile} is empty: a PKCS#12 file with the private key needs a password`);
  const cert = new NodeX509(certPem);
  if (!cert.checkPrivateKey(createPrivateKey(keyPem))) {
    throw new MeshplaneError('PKI_ERR_EXPORT', `the ${options.kind} certificate ${files.cert} does not match the private key ${files.key}: run "meshplane pki issue" (or request/install) first`);
  }
  writeFileAtomic(options.out, pkcs12(keyPem, certPem, caPem, password, `${options.credential}-${options.kind}`), 0o600);
  return { out: options.out, serial: cert.serialNumber };
}
