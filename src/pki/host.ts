/**
 * The host side: make the key (if missing) and a CSR, and install a signed
 * certificate after checking it against the key and the CA. Private keys are
 * made here and never read by anything but this host.
 *
 * Pairs stay consistent: a key is only ever written when there is none (and
 * a certificate left without its key is removed first), and a certificate
 * only replaces the old one (atomically) after it has been checked against
 * the key on disk. A crash at any point leaves either the
 * old good pair or a key waiting for its first certificate.
 */
import { X509Certificate as NodeX509, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { MeshplaneError } from '../errors.js';
import type { Topology, TopologyCredential, TopologyHost } from '../topology/index.js';
import { trustedRevokedSerials } from './crl.js';
import { makeCsr } from './csr.js';
import type { Owner } from './files.js';
import { MODES, credentialOwner, credentialPaths, ensureDir, publicOwner, removeFileDurable, wantsSystemOwners, writeFileSecure } from './files.js';
import { generateKeyPair, publicKeyOf } from './keys.js';
import { renewalReason } from './renewal.js';
import type { CertKind, San } from './sans.js';
import { entitledSans, kindsOf } from './sans.js';
import { inspectCert, trustProblem } from './inspect.js';

function readIfExists(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

function lookupHostCredential(topology: Topology, hostName: string, credentialName: string, kind: CertKind): { host: TopologyHost; credential: TopologyCredential } {
  const host = topology.hosts[hostName];
  if (host === undefined) throw new MeshplaneError('PKI_ERR_UNKNOWN_HOST', `host "${hostName}" is not in the topology`);
  const credential = topology.credentials[credentialName];
  if (credential === undefined || !credential.hosts.includes(hostName)) {
    throw new MeshplaneError('PKI_ERR_NOT_ENTITLED', `host ${hostName} does not use credential "${credentialName}" (it uses ${host.credentials.join(', ') || 'none'})`);
  }
  if (!kindsOf(credential).includes(kind)) throw new MeshplaneError('PKI_ERR_KIND_DISABLED', `credential ${credentialName} has enable_${kind}: false`);
  return { host, credential };
}

interface RequestOptions {
  readonly root: string;
  readonly topology: Topology;
  readonly host: string;
  readonly credential: string;
  readonly kind: CertKind;
  /** The CA certificate the host trusts, to judge the existing certificate (default: the credential's ca.pem). */
  readonly caPem: string | undefined;
  /** Revoked serials (default: those in the credential's crl.pem, when the CA signed it). */
  readonly revoked?: ReadonlySet<string>;
  readonly force?: boolean;
  readonly now?: Date;
  /** Write the CSR to <kind>/request.csr (default true). */
  readonly writeCsr?: boolean;
  /**
   * chown to root:<name>-credentials, creating the group: true asks for it
   * (PKI_ERR_NOT_ROOT without root), false never; default only under
   * /etc/credentials and as root (see wantsSystemOwners).
   */
  readonly manageOwnership?: boolean;
}

interface RequestResult {
  readonly keyCreated: boolean;
  /** Undefined when the existing certificate is good and nothing was requested. */
  readonly csrPem: string | undefined;
  readonly reason: string | undefined;
  readonly sans: readonly San[];
  readonly csrPath: string;
}

/** Makes the key if missing and, when the certificate needs (re)issuing, a CSR. */
export async function requestCertificate(options: RequestOptions): Promise<RequestResult> {
  const { host, credential } = lookupHostCredential(options.topology, options.host, options.credential, options.kind);
  const paths = credentialPaths(options.root, credential.name);
  const owner = credentialOwner(credential.name, wantsSystemOwners(options.root, options.manageOwnership), options.manageOwnership === true);
  prepareDirs(paths, options.kind, owner);
  let keyPem = readIfExists(paths.key(options.kind));
  let keyCreated = false;
  if (keyPem === undefined) {
    keyPem = generateKeyPair().privateKeyPem;
    // A certificate left from a deleted key (after a key compromise) can never match the new key:
    // remove it first, so that no crash or pause before install leaves a mismatched pair.
    removeFileDurable(paths.cert(options.kind));
    writeFileSecure(paths.key(options.kind), keyPem, MODES.privateKey, owner);
    keyCreated = true;
  } else {
    publicKeyOf(keyPem, paths.key(options.kind));
  }
  const sans = entitledSans(options.topology, credential, host, options.kind);
  const caPem = options.caPem ?? readIfExists(paths.ca);
  const existing = { certPem: readIfExists(paths.cert(options.kind)), keyPem, caPem, revoked: options.revoked ?? trustedRevokedSerials(readIfExists(paths.crl), paths.crl, caPem) };
  const reason = options.force === true ? 'forced' : renewalReason(existing, sans, options.kind, options.now ?? new Date());
  if (reason === undefined) return { keyCreated, csrPem: undefined, reason, sans, csrPath: paths.csr(options.kind) };
  const csrPem = await makeCsr({ privateKeyPem: keyPem, credential: credential.name, kind: options.kind, sans });
  if (options.writeCsr !== false) writeFileSecure(paths.csr(options.kind), csrPem, MODES.certificate, publicOwner(owner));
  return { keyCreated, csrPem, reason, sans, csrPath: paths.csr(options.kind) };
}

function prepareDirs(paths: ReturnType<typeof credentialPaths>, kind: CertKind, owner: Owner | undefined): void {
  ensureDir(paths.dir, MODES.credentialDir, publicOwner(owner));
  ensureDir(paths.kindDir(kind), MODES.kindDir, owner);
}

interface InstallOptions {
  readonly root: string;
  readonly credential: string;
  readonly kind: CertKind;
  readonly certPem: string;
  readonly caPem: string;
  readonly crlPem?: string;
  readonly now?: Date;
  /** As in RequestOptions. */
  readonly manageOwnership?: boolean;
}

/**
 * Checks the certificate against the key on disk and the CA, then writes
 * ca.pem, crl.pem and <kind>/cert.pem. `certPem` may be a host's batch
 * file with several certificates: the matching one is installed. Refuses
 * (and writes nothing) on any mismatch. Returns whether cert.pem changed.
 */
export function installCertificate(options: InstallOptions): { changed: boolean } {
  const paths = credentialPaths(options.root, options.credential);
  const keyPath = paths.key(options.kind);
  const keyPem = readIfExists(keyPath);
  if (keyPem === undefined) throw new MeshplaneError('PKI_ERR_KEY_MISSING', `no private key at ${keyPath} (run "meshplane pki request" on this host first)`);
  const certPem = pickCertificate(options.certPem, options.credential, options.kind, keyPem);
  const problem = trustProblem(certPem, options.caPem, options.now ?? new Date(), keyPem);
  if (problem !== undefined) throw new MeshplaneError(problem.code, `not installing the ${options.kind} certificate of ${options.credential}: ${problem.reason}`);

  const owner = credentialOwner(options.credential, wantsSystemOwners(options.root, options.manageOwnership), options.manageOwnership === true);
  prepareDirs(paths, options.kind, owner);
  const rootOwner = publicOwner(owner);
  // CA first: whoever reads the new certificate can already verify it.
  if (readIfExists(paths.ca) !== options.caPem) writeFileSecure(paths.ca, options.caPem, MODES.certificate, rootOwner);
  if (options.crlPem !== undefined && readIfExists(paths.crl) !== options.crlPem) writeFileSecure(paths.crl, options.crlPem, MODES.certificate, rootOwner);
  const changed = readIfExists(paths.cert(options.kind)) !== certPem;
  if (changed) writeFileSecure(paths.cert(options.kind), certPem, MODES.certificate, rootOwner);
  return { changed };
}

/**
 * The certificate to install from `text`: the only one, or, from a host's
 * batch file (`pki sign --csr-dir`), the one for this credential and kind
 * that matches the key.
 */
function pickCertificate(text: string, credential: string, kind: CertKind, keyPem: string): string {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g) ?? [];
  if (blocks.length === 0) throw new MeshplaneError('PKI_ERR_CERT_INVALID', 'the file holds no PEM certificate');
  const fits = (pem: string): string | undefined => {
    const info = inspectCert(pem, 'the certificate');
    if (info.commonName !== credential) return `it is for "${info.commonName}", not credential ${credential}`;
    if (info.kinds.length !== 1 || info.kinds[0] !== kind) return `it is for ${info.kinds.join('+') || 'no'} use, not ${kind}`;
    return undefined;
  };
  const withNewline = (pem: string): string => (pem.endsWith('\n') ? pem : `${pem}\n`);
  if (blocks.length === 1) {
    const only = withNewline(blocks[0] ?? '');
    const reason = fits(only);
    if (reason !== undefined) throw new MeshplaneError('PKI_ERR_CERT_MISMATCH', `the certificate does not fit: ${reason}`);
    return only;
  }
  const key = createPrivateKey(keyPem);
  const match = blocks.map(withNewline).find((pem) => fits(pem) === undefined && new NodeX509(pem).checkPrivateKey(key));
  if (match === undefined) {
    throw new MeshplaneError('PKI_ERR_CERT_MISMATCH', `none of the ${blocks.length} certificates in the file is the ${kind} certificate of ${credential} for this host's key`);
  }
  return match;
}

interface RenewalInstall {
  readonly root: string;
  readonly credential: string;
  readonly kind: CertKind;
  /** The new key, made on this host for this renewal. */
  readonly keyPem: string;
  readonly certPem: string;
  readonly caPem: string;
  readonly now?: Date;
  readonly manageOwnership?: boolean;
}

/**
 * Installs a renewed pair (a new key and its certificate) after checking
 * the certificate against that key and the CA. The files keep their modes
 * and owners. Two files cannot be renamed at once, so the order keeps the
 * rule of this module, never a key beside a certificate it does not match:
 * the old certificate goes first, then the new key, then the new
 * certificate (a crash in between leaves a key waiting for its
 * certificate, which `pki issue` or the playbook completes).
 */
export function installRenewal(options: RenewalInstall): void {
  const problem = trustProblem(options.certPem, options.caPem, options.now ?? new Date(), options.keyPem);
  if (problem !== undefined) throw new MeshplaneError(problem.code, `not installing the renewed ${options.kind} certificate of ${options.credential}: ${problem.reason}`);
  const paths = credentialPaths(options.root, options.credential);
  const owner = credentialOwner(options.credential, wantsSystemOwners(options.root, options.manageOwnership), options.manageOwnership === true);
  prepareDirs(paths, options.kind, owner);
  removeFileDurable(paths.cert(options.kind));
  writeFileSecure(paths.key(options.kind), options.keyPem, MODES.privateKey, owner);
  writeFileSecure(paths.cert(options.kind), options.certPem, MODES.certificate, publicOwner(owner));
}

/** Writes crl.pem beside a credential when `ca.pem` there signed it and it differs; returns whether it changed. */
export function installCrl(root: string, credential: string, crlPem: string, manageOwnership?: boolean): boolean {
  const paths = credentialPaths(root, credential);
  const caPem = readIfExists(paths.ca);
  if (trustedRevokedSerials(crlPem, 'the CRL from the CA', caPem) === undefined) {
    throw new MeshplaneError('PKI_ERR_CRL_UNTRUSTED', `not installing the CRL for ${credential}: it is not a CRL signed by ${paths.ca}`);
  }
  if (readIfExists(paths.crl) === crlPem) return false;
  const owner = credentialOwner(credential, wantsSystemOwners(root, manageOwnership), manageOwnership === true);
  writeFileSecure(paths.crl, crlPem, MODES.certificate, publicOwner(owner));
  return true;
}
