/**
 * `pki issue`: request, sign and install on one machine, for every
 * credential a host needs (development and single-machine setups), and
 * `issueMeshCredentials`, which does that for every host of a Topology under
 * a local state directory (what `npm start` uses).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { didYouMean } from '../lib/did-you-mean.js';
import { MeshplaneError } from '../errors.js';
import type { Topology, TopologyCredential } from '../topology/index.js';
import { pkiPolicy, stateCredentialsRoot } from '../topology/index.js';
import type { Ca } from './ca.js';
import { initCa, loadCa } from './ca.js';
import { currentCrl, revokedSerials } from './crl.js';
import { credentialPaths } from './files.js';
import { installCertificate, requestCertificate } from './host.js';
import type { CertKind } from './sans.js';
import { kindsOf } from './sans.js';
import { LeafSigner } from './sign.js';

interface IssueHostOptions {
  readonly ca: Ca;
  readonly topology: Topology;
  readonly host: string;
  /** Credentials root; certificates go to <root>/x509/<name>/. */
  readonly root: string;
  readonly now?: Date;
  readonly lifetimeMs?: number;
  /** Reissue even when the certificate is good. */
  readonly force?: boolean;
  /** chown keys to root:<name>-credentials, creating groups: see RequestOptions.manageOwnership (default: only under /etc/credentials). */
  readonly manageOwnership?: boolean;
}

interface IssueResult {
  readonly credential: string;
  readonly kind: CertKind;
  readonly action: 'issued' | 'unchanged';
  /** Why it was issued ("no certificate yet", "the SANs changed (...)", ...). */
  readonly reason: string | undefined;
  readonly certPath: string;
  readonly notAfter?: Date;
}

/** Issues (or keeps) every certificate `host` needs. */
export async function issueHost(options: IssueHostOptions, signer: LeafSigner = new LeafSigner(options.ca)): Promise<IssueResult[]> {
  const { topology, ca } = options;
  const now = options.now ?? new Date();
  const host = topology.hosts[options.host];
  if (host === undefined) {
    const hint = didYouMean(options.host, Object.keys(topology.hosts));
    throw new MeshplaneError('PKI_ERR_UNKNOWN_HOST', `host "${options.host}" is not in the topology${hint ? ` (did you mean "${hint}"?)` : ''}`);
  }
  const revoked = revokedSerials(ca);
  const crlPem = await currentCrl(ca, now, { lifetimeMs: pkiPolicy(topology).crl_lifetime_ms });
  const results: IssueResult[] = [];
  for (const name of host.credentials) {
    // The topology's contract: a host's credentials are all in topology.credentials.
    const credential = topology.credentials[name] as TopologyCredential;
    for (const kind of kindsOf(credential)) {
      const certPath = credentialPaths(options.root, name).cert(kind);
      const request = await requestCertificate({ root: options.root, topology, host: options.host, credential: name, kind, caPem: ca.certPem, revoked, force: options.force, now, writeCsr: false, manageOwnership: options.manageOwnership });
      if (request.csrPem === undefined) {
        // Still refresh ca.pem/crl.pem: the CA certificate may have been widened.
        const installed = installCertificate({ root: options.root, credential: name, kind, certPem: readCert(certPath), caPem: ca.certPem, crlPem, now, manageOwnership: options.manageOwnership });
        results.push({ credential: name, kind, action: installed.changed ? 'issued' : 'unchanged', reason: undefined, certPath });
        continue;
      }
      const signed = signer.signCsr(topology, { csrPem: request.csrPem, host: options.host, kind, source: `the ${kind} CSR of ${name} on ${options.host}`, now, lifetimeMs: options.lifetimeMs });
      installCertificate({ root: options.root, credential: name, kind, certPem: signed.pem, caPem: ca.certPem, crlPem, now, manageOwnership: options.manageOwnership });
      results.push({ credential: name, kind, action: 'issued', reason: request.reason, certPath, notAfter: signed.notAfter });
    }
  }
  return results;
}

function readCert(path: string): string {
  return readFileSync(path, 'utf8');
}

interface MeshIssueOptions {
  readonly topology: Topology;
  /** State directory: the CA goes to <stateDir>/ca, credentials to <stateDir>/credentials/<host>/x509/<name>/. */
  readonly stateDir: string;
  readonly now?: Date;
}

interface MeshIssueReport {
  readonly caDir: string;
  readonly caAction: 'created' | 'updated' | 'unchanged';
  /** Host name -> its credentials root and results. */
  readonly hosts: Readonly<Record<string, { readonly root: string; readonly results: readonly IssueResult[] }>>;
}

/**
 * Creates (or updates) a CA under `stateDir` and issues every host's
 * credentials under `stateDir/credentials/<host>`. Needs no root and never
 * changes owners or creates groups (even as root): files get their modes and
 * stay owned by the current user. Idempotent: a second run issues nothing.
 */
export async function issueMeshCredentials(options: MeshIssueOptions): Promise<MeshIssueReport> {
  const caDir = join(options.stateDir, 'ca');
  const { action } = await initCa({ caDir, topology: options.topology, now: options.now });
  const ca = loadCa(caDir);
  const signer = new LeafSigner(ca);
  const hosts: Record<string, { root: string; results: IssueResult[] }> = {};
  for (const hostName of Object.keys(options.topology.hosts)) {
    const root = stateCredentialsRoot(options.stateDir, hostName);
    // A local state directory: never chown or create system groups, even as root.
    hosts[hostName] = { root, results: await issueHost({ ca, topology: options.topology, host: hostName, root, now: options.now, manageOwnership: false }, signer) };
  }
  return { caDir, caAction: action, hosts };
}
