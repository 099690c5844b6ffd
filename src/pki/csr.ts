/**
 * Certificate signing requests. The host makes one from its own key (the key
 * never leaves the host); the controller parses it into a plain value that
 * the authorization step checks against the Topology.
 */
import { createPublicKey, verify, webcrypto } from 'node:crypto';
import { MeshplaneError } from '../errors.js';
import type { Node as DerNode } from './der.js';
import { DerReader, TAG, oidText, readCommonName, readExtensionList, readGeneralNames, readOidList, unpem } from './der.js';
import type { CertKind, San } from './sans.js';
import { kindsOfUsages, toSan } from './sans.js';
import { EC_ALGORITHM, OID } from './oids.js';
import { p256KeyObject, uncompressedPoint, verifyP256Sha256 } from './p256.js';
import { peculiar } from './x509.js';

interface CsrRequest {
  readonly privateKeyPem: string;
  readonly credential: string;
  readonly kind: CertKind;
  readonly sans: readonly San[];
}

/** A PEM CSR: CN = credential, requested SANs and the EKU of `kind` in an extensionRequest. */
export async function makeCsr(request: CsrRequest): Promise<string> {
  const pkcs8 = Buffer.from(request.privateKeyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign']);
  const jwk = await webcrypto.subtle.exportKey('jwk', privateKey);
  const publicKey = await webcrypto.subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']);
  const x509 = await peculiar();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${request.credential}`,
    keys: { privateKey, publicKey },
    signingAlgorithm: EC_ALGORITHM,
    extensions: [
      // No SANs: the CA gives the ones the Topology entitles the host to (online renewal asks that way).
      ...(request.sans.length === 0 ? [] : [new x509.SubjectAlternativeNameExtension(request.sans.map((s) => ({ type: s.type === 'uri' ? ('url' as const) : s.type, value: s.value })))]),
      new x509.ExtendedKeyUsageExtension([request.kind === 'server' ? OID.serverAuth : OID.clientAuth]),
    ],
  });
  return `${csr.toString('pem')}\n`;
}

export interface ParsedCsr {
  /** The subject's common name ('' when absent). */
  readonly commonName: string;
  readonly publicKeySpki: Uint8Array;
  /** e.g. "ECDSA P-256", "RSA", "Ed25519" */
  readonly keyType: string;
  readonly keyIsP256: boolean;
  readonly sans: readonly San[];
  /** SAN entries of types other than DNS, IP and URI (refused). */
  readonly otherNames: readonly string[];
  /** Kinds named by the requested EKU; empty when the CSR asks for none. */
  readonly kinds: readonly CertKind[];
  readonly signatureValid: boolean;
}

const CURVES: Readonly<Record<string, string>> = { '1.2.840.10045.3.1.7': 'P-256', '1.3.132.0.34': 'P-384', '1.3.132.0.35': 'P-521' };
const KEY_TYPES: Readonly<Record<string, string>> = { '1.2.840.113549.1.1.1': 'RSA', '1.3.101.112': 'Ed25519', '1.3.101.113': 'Ed448' };
/** Signature algorithm OID -> hash for node:crypto.verify (null: the algorithm hashes itself). */
const SIGNATURE_HASHES: Readonly<Record<string, string | null>> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.3.101.112': null,
};

/**
 * Parses and verifies a PEM CSR with the strict DER reader (the signing fast
 * path). `source` names it in errors (a file, or a host).
 */
export function parseCsr(pemText: string, source: string): ParsedCsr {
  const der = unpem(pemText, 'CERTIFICATE REQUEST') ?? unpem(pemText, 'NEW CERTIFICATE REQUEST');
  if (der === undefined) throw new MeshplaneError('PKI_ERR_CSR_INVALID', `${source} is not a PEM certificate request (no "BEGIN CERTIFICATE REQUEST" block)`);
  const r = new DerReader(der, source);
  const outer = r.expect(r.node(0), TAG.sequence, 'CertificationRequest');
  if (outer.end !== der.length) r.fail('trailing bytes');
  const [info, signatureAlgorithm, signatureBits] = r.children(outer);
  const infoNode = r.expect(info, TAG.sequence, 'certificationRequestInfo');
  const [version, subject, spki, attributes] = r.children(infoNode);
  r.expect(version, TAG.integer, 'version');
  const spkiNode = r.expect(spki, TAG.sequence, 'subjectPKInfo');

  const commonName = readCommonName(r, subject);

  const [keyAlgorithm, keyBits] = r.children(spkiNode);
  r.expect(keyBits, TAG.bitString, 'subjectPublicKey');
  const [keyOid, keyParams] = r.children(r.expect(keyAlgorithm, TAG.sequence, 'key algorithm'));
  const keyOidText = oidText(r.content(r.expect(keyOid, TAG.oid, 'key algorithm OID')));
  let keyType = KEY_TYPES[keyOidText] ?? keyOidText;
  if (keyOidText === OID.ecPublicKey) {
    const curve = keyParams !== undefined && keyParams.tag === TAG.oid ? oidText(r.content(keyParams)) : 'unnamed curve';
    keyType = `ECDSA ${CURVES[curve] ?? curve}`;
  }

  const sans: San[] = [];
  const otherNames: string[] = [];
  const kinds: CertKind[] = [];
  if (attributes !== undefined) {
    if (attributes.tag !== 0xa0) r.fail('expected attributes [0]');
    for (const attribute of r.children(attributes)) {
      const [type, values] = r.children(r.expect(attribute, TAG.sequence, 'attribute'));
      if (type === undefined || oidText(r.content(r.expect(type, TAG.oid, 'attribute OID'))) !== '1.2.840.113549.1.9.14') continue;
      for (const extensions of r.children(r.expect(values, TAG.set, 'attribute values'))) {
        for (const { id, value } of readExtensionList(r, extensions)) {
          if (id === OID.subjectAltName) {
            const names = readGeneralNames(r, value);
            sans.push(...names.dns.map((name): San => ({ type: 'dns', value: name })), ...names.ips.map(toSan), ...names.uris.map((uri): San => ({ type: 'uri', value: uri })));
            otherNames.push(...names.others);
          }
          if (id === OID.extKeyUsage) kinds.push(...kindsOfUsages(readOidList(r, value)));
        }
      }
    }
  }

  const algorithmOid = oidText(r.content(r.expect(r.children(r.expect(signatureAlgorithm, TAG.sequence, 'signatureAlgorithm'))[0], TAG.oid, 'signature OID')));
  const signatureNode = r.expect(signatureBits, TAG.bitString, 'signature');
  let signatureValid = false;
  const hash = SIGNATURE_HASHES[algorithmOid];
  if (hash !== undefined && signatureNode.end > signatureNode.contentStart + 1) {
    const signature = r.buffer.subarray(signatureNode.contentStart + 1, signatureNode.end);
    const point = keyType === 'ECDSA P-256' ? uncompressedPoint(r.content(keyBits as DerNode)) : undefined;
    try {
      // The common case (every CSR meshplane makes) through the fast check (p256.ts).
      if (point !== undefined && algorithmOid === OID.ecdsaWithSha256) signatureValid = verifyP256Sha256(point, r.bytes(infoNode), signature);
      else {
        const key = point !== undefined ? p256KeyObject(point) : createPublicKey({ key: Buffer.from(r.bytes(spkiNode)), format: 'der', type: 'spki' });
        signatureValid = verify(hash, r.bytes(infoNode), key, signature);
      }
    } catch {
      signatureValid = false;
    }
  }
  return { commonName, publicKeySpki: r.bytes(spkiNode), keyType, keyIsP256: keyType === 'ECDSA P-256', sans, otherNames, kinds, signatureValid };
}
