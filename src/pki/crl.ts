/**
 * Revocation: `revoked.json` in the CA directory is the list (serial, time,
 * reason); `crl.pem` is signed from it, valid for the CRL lifetime
 * (nextUpdate - thisUpdate: services.yml `pki_policy.crl_lifetime`, default
 * VALIDITY.crlDays). `meshplane pki issue` copies the CRL next to `ca.pem` so
 * the gateway (and openssl -crl_check) can enforce it, and reissues revoked
 * certificates.
 */
import { X509Certificate as NodeX509, verify } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { MeshplaneError } from '../errors.js';
import type { Ca } from './ca.js';
import { MODES, writeFileSecure } from './files.js';
import { keyIdentifier, normalizeSerial } from './keys.js';
import { signerCrypto } from './signer.js';
import { VALIDITY, daysToMs } from './validity.js';
import { DerReader, TAG, pem, positiveInteger, readTime, unpem } from './der.js';
import { EC_ALGORITHM } from './oids.js';
import { peculiar } from './x509.js';

export const REVOCATION_REASONS = ['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation'] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

interface RevokedEntry {
  readonly serial: string;
  readonly revoked_at: string;
  readonly reason: RevocationReason;
}


function readRevoked(ca: Ca): RevokedEntry[] {
  if (!existsSync(ca.files.revoked)) return [];
  try {
    const data = JSON.parse(readFileSync(ca.files.revoked, 'utf8')) as { revoked?: RevokedEntry[] };
    return data.revoked ?? [];
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_READ', `cannot read ${ca.files.revoked}: ${(err as Error).message}`, { cause: err });
  }
}

export function revokedSerials(ca: Ca): Set<string> {
  return new Set(readRevoked(ca).map((entry) => entry.serial));
}

/** How the CRL is signed; callers that hold the Topology pass its `pkiPolicy(topology).crl_lifetime_ms`. */
interface CrlOptions {
  /** nextUpdate - thisUpdate. Default: the lifetime of the CRL being replaced, else VALIDITY.crlDays. */
  readonly lifetimeMs?: number;
  /** currentCrl: re-sign only a CRL that has expired, not at half its life (pki serve's workers but the first: serve-cluster.ts). */
  readonly onlyWhenExpired?: boolean;
}

/** Signs crl.pem from revoked.json, valid `lifetimeMs` from a thisUpdate backdated like certificates (clock skew). */
async function writeCrl(ca: Ca, now: Date, lifetimeMs: number): Promise<string> {
  const x509 = await peculiar();
  const entries = readRevoked(ca);
  const { crypto, signingKey } = signerCrypto(ca.signer);
  const thisUpdate = now.getTime() - VALIDITY.backdateMs;
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: new x509.Name(ca.cert.subjectDer),
      thisUpdate: new Date(thisUpdate),
      nextUpdate: new Date(thisUpdate + lifetimeMs),
      signingAlgorithm: EC_ALGORITHM,
      signingKey,
      extensions: [
        new x509.AuthorityKeyIdentifierExtension(keyIdentifier(ca.signer.publicKeySpki).toString('hex')),
        // CRL number: seconds since the epoch, so it only grows without keeping a counter.
        new x509.Extension('2.5.29.20', false, positiveInteger(crlNumber(now))),
      ],
      entries: entries.map((entry) => ({
        serialNumber: entry.serial,
        revocationDate: new Date(entry.revoked_at),
        reason: x509.X509CrlReason[entry.reason],
      })),
    },
    crypto,
  );
  // openssl and Node read only the "X509 CRL" PEM label (@peculiar writes "CRL").
  const text = pem('X509 CRL', new Uint8Array(crl.rawData));
  writeFileSecure(ca.files.crl, text, MODES.public);
  return text;
}

function crlNumber(now: Date): Uint8Array {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(Math.floor(now.getTime() / 1000)));
  return bytes;
}

interface CrlInfo {
  readonly thisUpdate: Date | undefined;
  readonly nextUpdate: Date | undefined;
  /** Revoked serials, normalized (see normalizeSerial). */
  readonly serials: ReadonlySet<string>;
  /** Whether `caPem`'s key signed it (false when no CA was given). */
  readonly signedByCa: boolean;
}

/** Reads a PEM CRL with the DER reader; checks its signature when `caPem` is given. */
export function readCrl(pemText: string, source: string, caPem?: string): CrlInfo {
  const der = unpem(pemText, 'X509 CRL');
  if (der === undefined) throw new MeshplaneError('PKI_ERR_READ', `${source} is not a PEM CRL`);
  const r = new DerReader(der, source);
  const [tbs, , signature] = r.children(r.expect(r.node(0), TAG.sequence, 'CertificateList'));
  const tbsNode = r.expect(tbs, TAG.sequence, 'TBSCertList');
  const fields = r.children(tbsNode);
  // [version], signature, issuer, thisUpdate, nextUpdate?, revokedCertificates?, [0] extensions?
  const times = fields.filter((f) => f.tag === TAG.utcTime || f.tag === TAG.generalizedTime);
  const next = times[1];
  const serials = new Set<string>();
  const revokedList = fields.find((f, i) => f.tag === TAG.sequence && i > fields.indexOf(times[0] ?? f));
  if (revokedList !== undefined) {
    for (const entry of r.children(revokedList)) {
      const [serial] = r.children(r.expect(entry, TAG.sequence, 'revoked certificate'));
      serials.add(normalizeSerial(Buffer.from(r.content(r.expect(serial, TAG.integer, 'serial'))).toString('hex')));
    }
  }
  let signedByCa = false;
  if (caPem !== undefined) {
    const signatureNode = r.expect(signature, TAG.bitString, 'signature');
    try {
      signedByCa = verify('sha256', r.bytes(tbsNode), new NodeX509(caPem).publicKey, r.buffer.subarray(signatureNode.contentStart + 1, signatureNode.end));
    } catch {
      signedByCa = false;
    }
  }
  const first = times[0];
  return { thisUpdate: first === undefined ? undefined : readTime(r, first), nextUpdate: next === undefined ? undefined : readTime(r, next), serials, signedByCa };
}

/**
 * The serials a CRL revokes, when it is there, readable and signed by the
 * CA; undefined otherwise (a CRL we cannot trust revokes nothing).
 */
export function trustedRevokedSerials(crlPem: string | undefined, source: string, caPem: string | undefined): ReadonlySet<string> | undefined {
  if (crlPem === undefined || caPem === undefined) return undefined;
  try {
    const crl = readCrl(crlPem, source, caPem);
    return crl.signedByCa ? crl.serials : undefined;
  } catch {
    return undefined;
  }
}

/** A PEM CRL's nextUpdate (undefined when it has none). */
export function crlNextUpdate(pemText: string, source: string): Date | undefined {
  return readCrl(pemText, source).nextUpdate;
}

/** The CA's crl.pem with its dates, when there is one it can read (an unreadable one is signed again). */
function existingCrl(ca: Ca): { text: string; thisUpdate: number; nextUpdate: number } | undefined {
  if (!existsSync(ca.files.crl)) return undefined;
  try {
    const text = readFileSync(ca.files.crl, 'utf8');
    const info = readCrl(text, ca.files.crl);
    return { text, thisUpdate: info.thisUpdate?.getTime() ?? 0, nextUpdate: info.nextUpdate?.getTime() ?? 0 };
  } catch {
    return undefined;
  }
}

/** The lifetime to sign with: the one asked for, else the replaced CRL's (so `revoke`, which reads no Topology, keeps the policy), else the default. */
function lifetimeFor(options: CrlOptions, existing: { thisUpdate: number; nextUpdate: number } | undefined): number {
  if (options.lifetimeMs !== undefined) return options.lifetimeMs;
  const previous = existing === undefined ? 0 : existing.nextUpdate - existing.thisUpdate;
  return previous > 0 ? previous : daysToMs(VALIDITY.crlDays);
}

/**
 * The CA's current CRL, re-signed when missing, once half of its lifetime
 * has passed (so a rerun in between changes no file: playbook reruns stay
 * `changed=0`), or when `options.lifetimeMs` differs from the one it was
 * signed with (a changed pki_policy.crl_lifetime applies at once).
 */
export async function currentCrl(ca: Ca, now: Date = new Date(), options: CrlOptions = {}): Promise<string> {
  const existing = existingCrl(ca);
  const lifetimeMs = lifetimeFor(options, existing);
  if (existing !== undefined) {
    if (options.onlyWhenExpired === true && existing.nextUpdate > now.getTime()) return existing.text;
    // CRLs signed before the lifetime counted from thisUpdate ran 5 minutes longer: the same policy.
    const sameLifetime = Math.abs(existing.nextUpdate - existing.thisUpdate - lifetimeMs) <= VALIDITY.backdateMs;
    if (sameLifetime && existing.nextUpdate - now.getTime() > lifetimeMs / 2) return existing.text;
  }
  return writeCrl(ca, now, lifetimeMs);
}

/** Adds `serial` to the revoked list (idempotent) and re-signs the CRL. */
export async function revoke(ca: Ca, serialText: string, reason: RevocationReason = 'unspecified', now: Date = new Date(), options: CrlOptions = {}): Promise<{ added: boolean; entry: RevokedEntry }> {
  const serial = normalizeSerial(serialText);
  const entries = readRevoked(ca);
  const existing = entries.find((entry) => entry.serial === serial);
  const lifetimeMs = lifetimeFor(options, existingCrl(ca));
  if (existing !== undefined) {
    await writeCrl(ca, now, lifetimeMs);
    return { added: false, entry: existing };
  }
  const entry: RevokedEntry = { serial, revoked_at: now.toISOString(), reason };
  writeFileSecure(ca.files.revoked, `${JSON.stringify({ revoked: [...entries, entry] }, null, 2)}\n`, MODES.public);
  await writeCrl(ca, now, lifetimeMs);
  return { added: true, entry };
}
