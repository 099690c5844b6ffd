/**
 * `pki status`: every installed credential with its expiry, and the same as
 * Prometheus metrics in node-exporter textfile format (written atomically, as
 * the textfile collector requires), so operators can alert before anything
 * expires.
 */
import { X509Certificate as NodeX509 } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { credentialsDir } from '../topology/index.js';
import { caFiles } from './ca.js';
import { MODES, credentialPaths, writeFileSecure } from './files.js';
import { inspectCert, trustProblem } from './inspect.js';
import type { CertKind } from './sans.js';
import { CERT_KINDS } from './sans.js';
import { VALIDITY } from './validity.js';
import { crlNextUpdate, readCrl, trustedRevokedSerials } from './crl.js';

type CertStatus = 'ok' | 'renew' | 'expired' | 'invalid' | 'revoked';

interface CredentialStatus {
  readonly credential: string;
  readonly kind: CertKind;
  readonly path: string;
  readonly status: CertStatus;
  /** Why it is not ok. */
  readonly detail: string;
  readonly serial?: string;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

interface FileExpiry {
  readonly path: string;
  readonly what: 'ca' | 'crl';
  readonly notAfter: Date;
  /** A CRL's thisUpdate (so alerts can be relative to its lifetime). */
  readonly thisUpdate?: Date;
}

interface StatusReport {
  readonly credentials: readonly CredentialStatus[];
  readonly files: readonly FileExpiry[];
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Looks at every <root>/x509/<name>/{client,server}/cert.pem (and, optionally, a CA directory). */
export function credentialStatus(root: string, now: Date = new Date(), caDir?: string): StatusReport {
  const credentials: CredentialStatus[] = [];
  const files: FileExpiry[] = [];
  const x509Dir = credentialsDir(root);
  const names = existsSync(x509Dir) ? readdirSync(x509Dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort() : [];
  // The CA's own CRL (with --ca-dir) is the newest word on revocation; the one beside each credential is what its services use.
  const ca = caDir === undefined ? undefined : caFiles(caDir);
  const caCrl = ca === undefined ? undefined : { path: ca.crl, pem: read(ca.crl), caPem: read(ca.cert) };
  // Read and verified once, not once per credential.
  const caCrlSerials = caCrl === undefined ? undefined : trustedRevokedSerials(caCrl.pem, caCrl.path, caCrl.caPem);
  for (const name of names) {
    const paths = credentialPaths(root, name);
    const caPem = read(paths.ca);
    if (caPem !== undefined) addFile(files, paths.ca, 'ca', caPem);
    const crlPem = read(paths.crl);
    if (crlPem !== undefined) addFile(files, paths.crl, 'crl', crlPem);
    const crls: Revocations[] = [];
    const besideSerials = trustedRevokedSerials(crlPem, paths.crl, caPem);
    if (besideSerials !== undefined) crls.push({ path: paths.crl, serials: besideSerials });
    if (caCrl !== undefined && caCrlSerials !== undefined) crls.push({ path: caCrl.path, serials: caCrlSerials });
    for (const kind of CERT_KINDS) {
      const path = paths.cert(kind);
      const certPem = read(path);
      if (certPem === undefined) continue;
      credentials.push(judge(name, kind, path, certPem, caPem, read(paths.key(kind)), crls, now));
    }
  }
  if (ca !== undefined && caCrl !== undefined) {
    if (caCrl.caPem !== undefined) addFile(files, ca.cert, 'ca', caCrl.caPem);
    if (caCrl.pem !== undefined) addFile(files, caCrl.path, 'crl', caCrl.pem);
  }
  return { credentials, files };
}

function addFile(files: FileExpiry[], path: string, what: 'ca' | 'crl', pem: string): void {
  try {
    if (what === 'ca') files.push({ path, what, notAfter: new Date(new NodeX509(pem).validTo) });
    else {
      const notAfter = crlNextUpdate(pem, path);
      const thisUpdate = readCrl(pem, path).thisUpdate;
      if (notAfter !== undefined) files.push({ path, what, notAfter, ...(thisUpdate === undefined ? {} : { thisUpdate }) });
    }
  } catch {
    // An unreadable CA or CRL shows up as invalid certificates instead.
  }
}

/** A CRL the CA signed, and the serials it revokes. */
interface Revocations {
  readonly path: string;
  readonly serials: ReadonlySet<string>;
}

function judge(credential: string, kind: CertKind, path: string, certPem: string, caPem: string | undefined, keyPem: string | undefined, crls: readonly Revocations[], now: Date): CredentialStatus {
  let info;
  try {
    info = inspectCert(certPem, path);
  } catch (err) {
    return { credential, kind, path, status: 'invalid', detail: (err as Error).message };
  }
  const base = { credential, kind, path, serial: info.serial, notBefore: info.notBefore, notAfter: info.notAfter };
  if (info.notAfter.getTime() <= now.getTime()) return { ...base, status: 'expired', detail: 'expired' };
  if (caPem === undefined) return { ...base, status: 'invalid', detail: 'no ca.pem beside it' };
  const problem = trustProblem(certPem, caPem, now, keyPem);
  if (keyPem === undefined) return { ...base, status: 'invalid', detail: 'private key missing or unreadable' };
  if (problem !== undefined) return { ...base, status: 'invalid', detail: problem.reason };
  const revokedBy = crls.find((crl) => crl.serials.has(info.serial));
  if (revokedBy !== undefined) return { ...base, status: 'revoked', detail: `revoked by ${revokedBy.path}` };
  const life = info.notAfter.getTime() - info.notBefore.getTime();
  if (info.notAfter.getTime() - now.getTime() < life * VALIDITY.renewFraction) return { ...base, status: 'renew', detail: 'in its renewal window (last third of its life)' };
  return { ...base, status: 'ok', detail: '' };
}

const escapeLabel = (value: string): string => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const seconds = (date: Date): string => String(Math.floor(date.getTime() / 1000));

/** The report in Prometheus text exposition format (node-exporter textfile collector). */
export function statusMetrics(report: StatusReport, now: Date = new Date()): string {
  const lines: string[] = [];
  const metric = (name: string, help: string, samples: readonly string[]): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, ...samples);
  };
  const leafLabels = (c: CredentialStatus): string => `credential="${escapeLabel(c.credential)}",kind="${c.kind}",path="${escapeLabel(c.path)}"`;
  const dated = report.credentials.filter((c) => c.notAfter !== undefined);
  metric(
    'meshplane_pki_certificate_expiry_timestamp_seconds',
    'When each installed certificate expires (notAfter), as a Unix time.',
    dated.map((c) => `meshplane_pki_certificate_expiry_timestamp_seconds{${leafLabels(c)}} ${seconds(c.notAfter as Date)}`),
  );
  metric(
    'meshplane_pki_certificate_not_before_timestamp_seconds',
    'When each installed certificate became valid (notBefore), as a Unix time.',
    dated.map((c) => `meshplane_pki_certificate_not_before_timestamp_seconds{${leafLabels(c)}} ${seconds(c.notBefore as Date)}`),
  );
  metric(
    'meshplane_pki_certificate_valid',
    '1 when the certificate matches its key, verifies against ca.pem, has not expired and no CRL the CA signed revokes it; 0 otherwise.',
    report.credentials.map((c) => `meshplane_pki_certificate_valid{${leafLabels(c)}} ${c.status === 'ok' || c.status === 'renew' ? 1 : 0}`),
  );
  metric(
    'meshplane_pki_ca_expiry_timestamp_seconds',
    'When each CA certificate found expires, as a Unix time.',
    report.files.filter((f) => f.what === 'ca').map((f) => `meshplane_pki_ca_expiry_timestamp_seconds{path="${escapeLabel(f.path)}"} ${seconds(f.notAfter)}`),
  );
  metric(
    'meshplane_pki_crl_next_update_timestamp_seconds',
    'When each CRL found must be replaced (nextUpdate), as a Unix time.',
    report.files.filter((f) => f.what === 'crl').map((f) => `meshplane_pki_crl_next_update_timestamp_seconds{path="${escapeLabel(f.path)}"} ${seconds(f.notAfter)}`),
  );
  metric(
    'meshplane_pki_crl_this_update_timestamp_seconds',
    'When each CRL found was signed (thisUpdate), as a Unix time: nextUpdate - thisUpdate is its lifetime (pki_policy.crl_lifetime).',
    report.files.filter((f) => f.what === 'crl' && f.thisUpdate !== undefined).map((f) => `meshplane_pki_crl_this_update_timestamp_seconds{path="${escapeLabel(f.path)}"} ${seconds(f.thisUpdate as Date)}`),
  );
  metric('meshplane_pki_status_timestamp_seconds', 'When meshplane pki status wrote this file, as a Unix time.', [`meshplane_pki_status_timestamp_seconds ${seconds(now)}`]);
  return `${lines.join('\n')}\n`;
}

/** Writes the metrics atomically (the textfile collector must never read half a file). */
export function writeStatusMetrics(path: string, report: StatusReport, now: Date = new Date()): void {
  writeFileSecure(path, statusMetrics(report, now), MODES.public);
}
