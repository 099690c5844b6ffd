/** Reading certificates back: what install, renewal and status look at. */
import { X509Certificate as NodeX509, createPrivateKey } from 'node:crypto';
import { MeshplaneError } from '../errors.js';
import type { CertKind, San } from './sans.js';
import { kindsOfUsages, toSan } from './sans.js';
import { DerReader, certificateExtensions, readGeneralNames, readOidList } from './der.js';
import { normalizeSerial } from './keys.js';
import { OID } from './oids.js';
import { VALIDITY } from './validity.js';

interface CertInfo {
  readonly serial: string;
  readonly commonName: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly sans: readonly San[];
  readonly kinds: readonly CertKind[];
}

export function inspectCert(pemText: string, source: string): CertInfo {
  let cert: NodeX509;
  try {
    cert = new NodeX509(pemText);
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_CERT_INVALID', `${source} is not a PEM certificate: ${(err as Error).message}`, { cause: err });
  }
  const { sans, kinds } = readExtensions(new Uint8Array(cert.raw), source);
  return {
    serial: normalizeSerial(cert.serialNumber),
    commonName: /^CN=(.*)$/m.exec(cert.subject)?.[1] ?? '',
    // Node prints one RDN a line.
    issuer: cert.issuer.split('\n').join(', '),
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    sans,
    kinds,
  };
}

/** SANs (DNS and IP) and EKU kinds, read with the DER reader. */
function readExtensions(der: Uint8Array, source: string): { sans: San[]; kinds: CertKind[] } {
  const r = new DerReader(der, source);
  const sans: San[] = [];
  const kinds: CertKind[] = [];
  for (const { id, value } of certificateExtensions(r)) {
    if (id === OID.subjectAltName) {
      const names = readGeneralNames(r, value);
      sans.push(...names.dns.map((name): San => ({ type: 'dns', value: name })), ...names.ips.map(toSan), ...names.uris.map((uri): San => ({ type: 'uri', value: uri })));
    } else if (id === OID.extKeyUsage) kinds.push(...kindsOfUsages(readOidList(r, value)));
  }
  return { sans, kinds };
}

/** Why `cert` (PEM, or already read) cannot be installed with `keyPem` under `caPem` at `now`, or undefined when it can. */
export function trustProblem(cert: string | NodeX509, caPem: string, now: Date, keyPem?: string): { code: string; reason: string } | undefined {
  let leaf: NodeX509;
  let ca: NodeX509;
  try {
    leaf = typeof cert === 'string' ? new NodeX509(cert) : cert;
    ca = new NodeX509(caPem);
  } catch (err) {
    return { code: 'PKI_ERR_CERT_INVALID', reason: `cannot read the certificate or the CA: ${(err as Error).message}` };
  }
  if (keyPem !== undefined) {
    let matches: boolean;
    try {
      matches = leaf.checkPrivateKey(createPrivateKey(keyPem));
    } catch {
      matches = false;
    }
    if (!matches) return { code: 'PKI_ERR_CERT_MISMATCH', reason: 'the certificate does not match the private key' };
  }
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) return { code: 'PKI_ERR_CERT_UNTRUSTED', reason: 'the certificate was not issued by this CA' };
  if (new Date(leaf.validTo).getTime() <= now.getTime()) return { code: 'PKI_ERR_CERT_UNTRUSTED', reason: `the certificate expired ${new Date(leaf.validTo).toISOString()}` };
  if (new Date(leaf.validFrom).getTime() > now.getTime() + VALIDITY.futureToleranceMs) return { code: 'PKI_ERR_CERT_UNTRUSTED', reason: `the certificate is not valid before ${new Date(leaf.validFrom).toISOString()}` };
  return undefined;
}
