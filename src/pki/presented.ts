/**
 * A certificate presented to the online CA for renewal (in the TLS
 * handshake, or as an item of POST /renewals), read with the strict DER
 * reader and checked against the CA with the P-256 check of p256.ts.
 *
 * Why not node:crypto's X509Certificate: parsing one costs about 150 us
 * (OpenSSL 3.0 decodes its key through the provider decoders) and its
 * verify() about 75 us more, for a certificate whose every field we read
 * from the DER anyway; here a presented certificate costs one signature
 * check and microseconds of JavaScript. The signature covers exactly the
 * TBSCertificate bytes read here, so nothing read is trusted before it holds.
 */
import { MeshplaneError } from '../errors.js';
import type { Ca } from './ca.js';
import type { Node as DerNode } from './der.js';
import { DerReader, TAG, oidText, readCommonName, readExtensionList, readGeneralNames, readTime } from './der.js';
import { sameBytes } from './keys.js';
import { OID } from './oids.js';
import { uncompressedPoint, verifyP256Sha256 } from './p256.js';

export interface PresentedCertificate {
  /** Lower-case hex without leading zeros (normalizeSerial's form, as revoked.json holds it). */
  readonly serial: string;
  readonly commonName: string;
  readonly issuerCommonName: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** URI SANs (the workload identity is one of them). */
  readonly uris: readonly string[];
  /** The subject key's uncompressed point when it is a P-256 key (every meshplane credential's). */
  readonly publicPoint: Uint8Array | undefined;
  readonly issuerDer: Uint8Array;
  readonly subjectDer: Uint8Array;
  readonly tbs: Uint8Array;
  readonly signatureAlgorithm: string;
  readonly signature: Uint8Array;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex').replace(/^0+(?=.)/, '');
}

function algorithmOf(r: DerReader, node: DerNode | undefined, what: string): string {
  return oidText(r.content(r.expect(r.children(r.expect(node, TAG.sequence, what))[0], TAG.oid, `${what} OID`)));
}

/** Reads a DER certificate; undefined when it is not one (a truncated or malformed encoding). */
export function readCertificate(der: Uint8Array): PresentedCertificate | undefined {
  try {
    return readStrict(new DerReader(der, 'the certificate'));
  } catch (err) {
    if (err instanceof MeshplaneError) return undefined;
    throw err;
  }
}

/** The point of a SubjectPublicKeyInfo when it is an uncompressed P-256 key; undefined for any other key. */
function p256PointOf(r: DerReader, spki: DerNode | undefined): Uint8Array | undefined {
  const [keyAlgorithm, keyBits] = r.children(r.expect(spki, TAG.sequence, 'subjectPublicKeyInfo'));
  const [keyOid, keyParams] = r.children(r.expect(keyAlgorithm, TAG.sequence, 'key algorithm'));
  const keyContent = r.content(r.expect(keyBits, TAG.bitString, 'subjectPublicKey'));
  const isP256 = oidText(r.content(r.expect(keyOid, TAG.oid, 'key OID'))) === OID.ecPublicKey && keyParams?.tag === TAG.oid && oidText(r.content(keyParams)) === OID.prime256v1;
  return isP256 ? uncompressedPoint(keyContent) : undefined;
}

function readStrict(r: DerReader): PresentedCertificate {
  const outer = r.expect(r.node(0), TAG.sequence, 'Certificate');
  if (outer.end !== r.buffer.length) r.fail('trailing bytes');
  const [tbsNode, outerAlgorithm, signatureBits] = r.children(outer);
  const tbs = r.expect(tbsNode, TAG.sequence, 'TBSCertificate');
  const fields = r.children(tbs);
  // [0] version is optional (v1); everything after it has a fixed place.
  const at = fields[0]?.tag === 0xa0 ? 1 : 0;
  const [serial, innerAlgorithm, issuer, validity, subject, spki] = fields.slice(at, at + 6);
  const signatureAlgorithm = algorithmOf(r, outerAlgorithm, 'signatureAlgorithm');
  if (algorithmOf(r, innerAlgorithm, 'signature') !== signatureAlgorithm) r.fail('the two signature algorithms differ');
  const [notBefore, notAfter] = r.children(r.expect(validity, TAG.sequence, 'validity'));
  if (notBefore === undefined || notAfter === undefined) r.fail('validity needs two times');

  const publicPoint = p256PointOf(r, spki);

  const uris: string[] = [];
  const extensions = fields.slice(at + 6).find((n) => n.tag === 0xa3);
  if (extensions !== undefined) {
    for (const { id, value } of readExtensionList(r, r.children(extensions)[0])) if (id === OID.subjectAltName) uris.push(...readGeneralNames(r, value).uris);
  }
  const signature = r.content(r.expect(signatureBits, TAG.bitString, 'signature'));
  if (signature[0] !== 0) r.fail('the signature has unused bits');
  return {
    serial: hex(r.content(r.expect(serial, TAG.integer, 'serialNumber'))),
    commonName: readCommonName(r, subject),
    issuerCommonName: readCommonName(r, issuer),
    notBefore: readTime(r, notBefore),
    notAfter: readTime(r, notAfter),
    uris,
    publicPoint,
    issuerDer: r.bytes(r.expect(issuer, TAG.sequence, 'issuer')),
    subjectDer: r.bytes(r.expect(subject, TAG.sequence, 'subject')),
    tbs: r.bytes(tbs),
    signatureAlgorithm,
    signature: signature.subarray(1),
  };
}

/**
 * Checks that certificates were issued by one CA: its subject as their
 * issuer, and its signature over them. The CA's key is P-256 (loadCa
 * refuses any other), so the check is always the fast one of p256.ts.
 */
export class IssuerCheck {
  private readonly subjectDer: Uint8Array;
  private readonly point: Uint8Array;

  constructor(ca: Pick<Ca['cert'], 'subjectDer' | 'publicKeySpki'>) {
    const r = new DerReader(ca.publicKeySpki, 'the CA key');
    const point = p256PointOf(r, r.node(0));
    if (point === undefined) throw new MeshplaneError('PKI_ERR_CA_INVALID', 'the CA key is not an uncompressed ECDSA P-256 key');
    this.subjectDer = ca.subjectDer;
    this.point = point;
  }

  issued(cert: PresentedCertificate): boolean {
    return sameBytes(cert.issuerDer, this.subjectDer) && cert.signatureAlgorithm === OID.ecdsaWithSha256 && verifyP256Sha256(this.point, cert.tbs, cert.signature);
  }
}
