/**
 * The mesh CA: created once on the controller, long-lived (10 years), with
 * critical Name Constraints from the Topology. Files in the CA directory:
 *
 *   ca.pem        the CA certificate (0644), given to every host
 *   ca_key.pem    its private key (0600), never leaves this directory
 *   revoked.json  serials revoked with `meshplane pki revoke`
 *   crl.pem       the CRL signed from revoked.json (re-signed by init, revoke,
 *                 and issue once half its validity has passed)
 *
 * Rerunning init with a grown Topology (a new service, overlay or address)
 * widens the constraints by reissuing the CA certificate with the same key,
 * subject and lifetime: certificates already issued still verify.
 */
import { X509Certificate as NodeX509 } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MeshplaneError } from '../errors.js';
import type { Topology } from '../topology/index.js';
import { pkiPolicy } from '../topology/index.js';
import type { NameConstraintSet } from './constraints.js';
import { constraintsCover, mergeConstraints, nameConstraintsExtension, readConstraints, wantedConstraints } from './constraints.js';
import { currentCrl } from './crl.js';
import { DerReader, TAG } from './der.js';
import { MODES, ensureDir, writeFileSecure } from './files.js';
import { generateKeyPair, keyIdentifier, publicKeyOf, randomSerial, sameBytes } from './keys.js';
import type { Signer } from './signer.js';
import { keySigner, signerCrypto } from './signer.js';
import { VALIDITY, daysToMs } from './validity.js';
import { EC_ALGORITHM } from './oids.js';
import type { X509 } from './x509.js';
import { peculiar } from './x509.js';

interface CaFiles {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
  readonly revoked: string;
  readonly crl: string;
}

/** The CA directory's layout: its one home (init, load and status read it). */
export function caFiles(dir: string): CaFiles {
  return { dir, cert: join(dir, 'ca.pem'), key: join(dir, 'ca_key.pem'), revoked: join(dir, 'revoked.json'), crl: join(dir, 'crl.pem') };
}

/** The CA certificate's fields, read once (node:crypto and the DER reader: fast even with thousands of constraints). */
interface CaCertificate {
  readonly der: Uint8Array;
  /** The subject exactly as encoded: the issuer of every leaf. */
  readonly subjectDer: Uint8Array;
  /** e.g. "CN=meshplane CA mesh.internal, O=meshplane" */
  readonly subject: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKeySpki: Uint8Array;
}

export interface Ca {
  readonly files: CaFiles;
  readonly cert: CaCertificate;
  readonly certPem: string;
  readonly signer: Signer;
  /** Permitted subtrees of the CA certificate (undefined: none, everything allowed). */
  readonly constraints: NameConstraintSet | undefined;
}

interface InitCaOptions {
  readonly caDir: string;
  readonly topology: Topology;
  readonly permitIps?: readonly string[];
  readonly permitDns?: readonly string[];
  readonly now?: Date;
}

type InitAction = 'created' | 'updated' | 'unchanged';

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_READ', `cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Loads the CA and checks that its key and certificate belong together. */
export function loadCa(caDir: string): Ca {
  const files = caFiles(caDir);
  if (!existsSync(files.cert) || !existsSync(files.key)) {
    throw new MeshplaneError('PKI_ERR_CA_MISSING', `no CA in ${caDir} (expected ca.pem and ca_key.pem; create one with "meshplane pki init --ca-dir ${caDir}")`);
  }
  const certPem = readText(files.cert, 'CA certificate');
  let cert: CaCertificate;
  let constraints: NameConstraintSet | undefined;
  try {
    const node = new NodeX509(certPem);
    const der = new Uint8Array(node.raw);
    const subjectDer = tbsField(der, 5);
    cert = {
      der,
      subjectDer,
      // Node prints one RDN a line: "CN=meshplane CA mesh.internal\nO=meshplane".
      subject: node.subject.split('\n').join(', '),
      notBefore: new Date(node.validFrom),
      notAfter: new Date(node.validTo),
      publicKeySpki: node.publicKey.export({ type: 'spki', format: 'der' }),
    };
    constraints = readConstraints(der);
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_CA_INVALID', `${files.cert} is not a usable CA certificate: ${(err as Error).message}`, { cause: err });
  }
  const keyPem = readText(files.key, 'CA key');
  const keySpki = publicKeyOf(keyPem, files.key);
  if (!sameBytes(keySpki, cert.publicKeySpki)) {
    throw new MeshplaneError('PKI_ERR_CA_INVALID', `${files.key} does not belong to ${files.cert} (the public keys differ)`);
  }
  return { files, cert, certPem: ensureNewline(certPem), signer: keySigner(keyPem), constraints };
}

/** The n-th field of a certificate's TBSCertificate, as DER. */
function tbsField(der: Uint8Array, index: number): Uint8Array {
  const r = new DerReader(der, 'CA certificate');
  const [tbs] = r.children(r.expect(r.node(0), TAG.sequence, 'Certificate'));
  const field = r.children(r.expect(tbs, TAG.sequence, 'TBSCertificate'))[index];
  return r.bytes(r.expect(field, TAG.sequence, 'TBSCertificate name field'));
}

function ensureNewline(text: string): string {
  return text.endsWith('\n') ? text : `${text}\n`;
}

/** CA subject: names the mesh so operators can tell CAs of different meshes apart. */
function caSubject(domain: string): string {
  return `CN=meshplane CA ${domain}, O=meshplane`;
}

/** `subject`: RFC 4514 text for a new CA, or the DER of the existing subject when reissuing. */
async function buildCaCert(signer: Signer, subject: string | Uint8Array, constraints: NameConstraintSet, notBefore: Date, notAfter: Date): Promise<string> {
  const x509: X509 = await peculiar();
  const { crypto, signingKey } = signerCrypto(signer);
  const name = typeof subject === 'string' ? subject : new x509.Name(subject);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: name,
      issuer: name,
      notBefore,
      notAfter,
      publicKey: signer.publicKeySpki,
      signingKey,
      signingAlgorithm: EC_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectKeyIdentifierExtension(keyIdentifier(signer.publicKeySpki).toString('hex')),
        await nameConstraintsExtension(constraints),
      ],
    },
    crypto,
  );
  return `${cert.toString('pem')}\n`;
}

/**
 * Creates the CA in `caDir`, or brings an existing CA's Name Constraints up
 * to date with the Topology (they only grow). Idempotent.
 */
export async function initCa(options: InitCaOptions): Promise<{ ca: Ca; action: InitAction }> {
  const files = caFiles(options.caDir);
  const now = options.now ?? new Date();
  const wanted = wantedConstraints(options.topology, options.permitIps, options.permitDns);
  ensureDir(files.dir, MODES.caDir);
  const haveKey = existsSync(files.key);
  const haveCert = existsSync(files.cert);
  if (haveCert && !haveKey) {
    throw new MeshplaneError('PKI_ERR_CA_INVALID', `${files.cert} exists but its key ${files.key} is missing; restore the key from backup (a new key would invalidate every certificate)`);
  }
  if (!haveKey) {
    const pair = generateKeyPair();
    writeFileSecure(files.key, pair.privateKeyPem, MODES.caKey);
  }
  if (!haveCert) {
    const signer = keySigner(readText(files.key, 'CA key'));
    const cert = await buildCaCert(signer, caSubject(options.topology.domain), wanted, new Date(now.getTime() - VALIDITY.backdateMs), new Date(now.getTime() + daysToMs(VALIDITY.caDays)));
    writeFileSecure(files.cert, cert, MODES.public);
    return { ca: await withFreshCrl(loadCa(files.dir), now, options.topology), action: 'created' };
  }
  const ca = loadCa(files.dir);
  const current = ca.constraints ?? { dns: [], ip: [] };
  if (ca.constraints === undefined || constraintsCover(current, wanted)) return { ca: await withFreshCrl(ca, now, options.topology), action: 'unchanged' };
  const merged = mergeConstraints(current, wanted);
  const cert = await buildCaCert(ca.signer, ca.cert.subjectDer, merged, ca.cert.notBefore, ca.cert.notAfter);
  writeFileSecure(files.cert, cert, MODES.public);
  return { ca: await withFreshCrl(loadCa(files.dir), now, options.topology), action: 'updated' };
}

/** Every init also keeps the CRL from running out (it lasts pki_policy.crl_lifetime, default VALIDITY.crlDays). */
async function withFreshCrl(ca: Ca, now: Date, topology: Topology): Promise<Ca> {
  await currentCrl(ca, now, { lifetimeMs: pkiPolicy(topology).crl_lifetime_ms });
  return ca;
}
