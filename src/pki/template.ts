/**
 * The leaf certificate as DER: constant parts (version, algorithm, issuer,
 * basic constraints, key usage, AKI, both EKUs) encoded once per CA; the
 * variable parts (serial, validity, subject, key, SKI, SAN) per certificate.
 */
import { randomFillSync } from 'node:crypto';
import { parseIp } from '../lib/ip.js';
import type { Ca } from './ca.js';
import { TAG, oid, pem, positiveInteger, seq, time, tlv } from './der.js';
import { keyIdentifier } from './keys.js';
import type { CertKind, San } from './sans.js';
import type { Validity } from './validity.js';
import { OID } from './oids.js';

const VERSION_3 = Uint8Array.of(0xa0, 0x03, 0x02, 0x01, 0x02);
/** AlgorithmIdentifier ecdsa-with-SHA256 (no parameters). */
const ECDSA_SHA256 = Uint8Array.of(0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02);
const OID_CN = Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x03);
const OID_SKI = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x0e);
const OID_SAN = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x11);

const TRUE = Uint8Array.of(0x01, 0x01, 0xff);
/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } */
const extension = (id: string, critical: boolean, value: Uint8Array): Uint8Array => seq(oid(id), ...(critical ? [TRUE] : []), tlv(TAG.octetString, value));

interface LeafFields {
  readonly commonName: string;
  readonly kind: CertKind;
  readonly sans: readonly San[];
  readonly publicKeySpki: Uint8Array;
  readonly validity: Validity;
}

/**
 * Random bytes for serial numbers, drawn from the CSPRNG 4 KiB at a time:
 * one randomBytes(16) a certificate was 3% of an online renewal's CPU.
 */
class RandomPool {
  private readonly pool = Buffer.alloc(4096);
  private used = this.pool.length;

  /** `count` fresh bytes (a copy: never handed out twice). */
  take(count: number): Buffer {
    if (this.used + count > this.pool.length) {
      randomFillSync(this.pool);
      this.used = 0;
    }
    const out = Buffer.from(this.pool.subarray(this.used, this.used + count));
    this.used += count;
    return out;
  }
}

const serialRandom = new RandomPool();

export class LeafTemplate {
  private readonly issuer: Uint8Array;
  private readonly constantExtensions: Uint8Array;
  private readonly eku: Readonly<Record<CertKind, Uint8Array>>;

  constructor(private readonly ca: Ca) {
    // The issuer is the CA's subject exactly as encoded in its certificate.
    this.issuer = ca.cert.subjectDer;
    this.constantExtensions = concat([
      // basicConstraints: critical, CA:FALSE (an empty SEQUENCE)
      extension(OID.basicConstraints, true, seq()),
      // keyUsage: critical, digitalSignature (bit 0 of a BIT STRING with 7 unused bits)
      extension(OID.keyUsage, true, tlv(TAG.bitString, Uint8Array.of(0x07, 0x80))),
      // authorityKeyIdentifier: [0] keyIdentifier of the CA key
      extension('2.5.29.35', false, seq(tlv(0x80, keyIdentifier(ca.signer.publicKeySpki)))),
    ]);
    this.eku = {
      client: extension(OID.extKeyUsage, false, seq(oid(OID.clientAuth))),
      server: extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
    };
  }

  /** Builds and signs the certificate; returns its PEM and serial (hex). */
  sign(fields: LeafFields): { pem: string; serial: string; der: Uint8Array } {
    const serialBytes = serialRandom.take(16);
    serialBytes[0] = ((serialBytes[0] ?? 0) & 0x7f) | 0x10;
    const tbs = seq(
      VERSION_3,
      positiveInteger(serialBytes),
      ECDSA_SHA256,
      this.issuer,
      seq(time(fields.validity.notBefore), time(fields.validity.notAfter)),
      seq(tlv(TAG.set, seq(OID_CN, tlv(TAG.utf8String, Buffer.from(fields.commonName, 'utf8'))))),
      fields.publicKeySpki,
      tlv(
        0xa3,
        seq(
          this.constantExtensions,
          this.eku[fields.kind],
          seq(OID_SKI, tlv(TAG.octetString, tlv(TAG.octetString, keyIdentifier(fields.publicKeySpki)))),
          seq(OID_SAN, tlv(TAG.octetString, seq(...fields.sans.map(generalName)))),
        ),
      ),
    );
    const signature = this.ca.signer.sign(tbs);
    const der = seq(tbs, ECDSA_SHA256, tlv(TAG.bitString, Uint8Array.of(0), signature));
    return { pem: pem('CERTIFICATE', der), serial: serialBytes.toString('hex'), der };
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

function generalName(san: San): Uint8Array {
  if (san.type === 'dns') return tlv(0x82, Buffer.from(san.value, 'latin1'));
  // uniformResourceIdentifier [6] IA5String
  if (san.type === 'uri') return tlv(0x86, Buffer.from(san.value, 'latin1'));
  const address = parseIp(san.value);
  if (address === undefined) throw new Error(`not an IP address: ${san.value}`);
  const size = address.family === 4 ? 4 : 16;
  const bytes = new Uint8Array(size);
  let value = address.value;
  for (let i = size - 1; i >= 0; i--) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return tlv(0x87, bytes);
}
