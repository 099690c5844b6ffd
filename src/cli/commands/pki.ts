/**
 * `meshplane pki <subcommand>`: the service PKI from the command line. The
 * work is done by src/pki; this file parses options and prints results.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { MeshplaneError, UsageError } from '../../errors.js';
import {
  CERT_KINDS,
  DEFAULT_CREDENTIALS_ROOT,
  LeafSigner,
  REVOCATION_REASONS,
  VALIDITY,
  batchJobs,
  credentialDirs,
  credentialStatus,
  exportPkcs12,
  formatDuration,
  initCa,
  inspectCert,
  installCertificate,
  issueHost,
  loadCa,
  parseLifetime,
  requestCertificate,
  revoke,
  signBatch,
  writeStatusMetrics,
} from '../../pki/index.js';
import type { CertKind, RevocationReason } from '../../pki/index.js';
import type { Command, CommandIO } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { INPUT_OPTIONS, INPUT_USAGE, topologyFrom } from '../inputs.js';
import { renderTable } from '../table.js';
import { removeStaleTemps, writeFileAtomic } from '../../lib/atomic-write.js';
import { ONLINE_USAGE, renew, serve } from './pki-online.js';

const TOPOLOGY_OPTIONS = { ...INPUT_OPTIONS, topology: { type: 'string', short: 't' } } as const satisfies NonNullable<ParseArgsConfig['options']>;
const TOPOLOGY_USAGE = `  -t, --topology FILE    compiled Topology (from "meshplane compile -o FILE")
${INPUT_USAGE}
                         (read and compiled when --topology is not given)`;

const USAGE = `meshplane pki <subcommand> [options]

Service PKI: ECDSA P-256 credentials for every credential in services.yml.

  init     create the CA (or widen its Name Constraints to the topology)
             --ca-dir DIR [-t FILE] [--permit-ip CIDR]... [--permit-dns NAME]...
  request  on a host: make the key if missing and a CSR when (re)issuing is due
             --host NAME --credential NAME --kind client|server [-t FILE]
             [--credentials-root DIR] [--out FILE] [--force] [--[no-]system-owners]
  sign     on the controller: check CSRs against the topology and sign them
             --ca-dir DIR --host NAME --csr FILE [--out FILE] [--kind K] [-t FILE]
             --ca-dir DIR --csr-dir CSRS --out-dir OUT [--threads N] [-t FILE]
             (every CSRS/<host>/*.csr -> OUT/<host>.pem with all of the host's
             certificates; OUT is replaced as a whole)
  install  on a host: check a certificate against its key and the CA, install it
             (FILE may be the host's batch file: the matching certificate is taken)
             --credential NAME --kind client|server --cert FILE --ca FILE
             [--crl FILE] [--credentials-root DIR] [--[no-]system-owners]
  issue    request + sign + install on this machine for every credential of a host
             --ca-dir DIR --host NAME [-t FILE] [--credentials-root DIR] [--force]
             [--[no-]system-owners]
  revoke   revoke a certificate and re-sign the CRL (DIR/crl.pem)
             --ca-dir DIR (--serial HEX | --cert FILE) [--reason REASON]
  status   list installed credentials with expiry; write Prometheus metrics
             [--credentials-root DIR] [--ca-dir DIR] [--metrics-file FILE] [--json]
${ONLINE_USAGE}
  export   write an installed credential (key, certificate, CA) as PKCS#12 for
           Java keystores and Windows (mode 0600; the password is the file's first line)
             --credential NAME --kind client|server --format p12 --out FILE
             --password-file FILE [--credentials-root DIR]

Common options:
${TOPOLOGY_USAGE}
      --credentials-root DIR   where x509/<name>/ lives (default ${DEFAULT_CREDENTIALS_ROOT})
      --system-owners          as root, keys root:<name>-credentials (group created
                               when missing), other files root:root; the default
                               under ${DEFAULT_CREDENTIALS_ROOT} only
      --no-system-owners       never chown nor create groups, even there
      --lifetime DURATION      leaf lifetime for sign/issue, e.g. 90d, 12h (${formatDuration(VALIDITY.leafMinMs)}..${VALIDITY.leafMaxDays}d;
                               default: the credential's lifetime, else services.yml
                               pki_policy.leaf_lifetime, else ${VALIDITY.leafDefaultDays}d)
      --reason REASON          ${REVOCATION_REASONS.join(', ')} (default unspecified)

Temporary files that a killed run left in the credential and CA directories
are removed at the start (and named on stderr).

Exit status: 0 ok; 1 refused or failed (error code printed, see docs/errors.md;
"status" also exits 1 when a certificate is expired, invalid or revoked); 2 usage.`;

type Handler = (args: readonly string[], io: CommandIO) => Promise<number>;

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: O) {
  return parseArgs({ args: [...args], options, strict: true, allowPositionals: false });
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

function kindOf(value: string | undefined, flag = '--kind'): CertKind {
  const kind = required(value, flag);
  if (!(CERT_KINDS as readonly string[]).includes(kind)) throw new UsageError(`${flag} must be client or server, not "${kind}"`);
  return kind as CertKind;
}

function readInput(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new MeshplaneError('PKI_ERR_READ', `cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

const at = (io: CommandIO, path: string): string => resolve(io.cwd, path);

const OWNER_OPTIONS = {
  'system-owners': { type: 'boolean' },
  'no-system-owners': { type: 'boolean' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

/** --system-owners -> true, --no-system-owners -> false, neither -> undefined (the default for the root). */
function systemOwners(values: { 'system-owners'?: boolean; 'no-system-owners'?: boolean }): boolean | undefined {
  if (values['system-owners'] === true && values['no-system-owners'] === true) throw new UsageError('give --system-owners or --no-system-owners, not both');
  if (values['system-owners'] === true) return true;
  if (values['no-system-owners'] === true) return false;
  return undefined;
}

/**
 * Removes the temporary files a killed pki run left (kill -9 between
 * writing a temporary file and renaming it) in the credential directories
 * under `root` and in `caDir`, and, for an output FILE, its own temporary
 * files beside it; says on stderr what it removed.
 */
function sweepStaleTemps(io: CommandIO, where: { root?: string; caDir?: string; files?: readonly string[] }): void {
  const removed = [
    ...(where.root === undefined ? [] : credentialDirs(where.root).flatMap((dir) => removeStaleTemps(dir))),
    ...(where.caDir === undefined ? [] : removeStaleTemps(where.caDir)),
    ...(where.files ?? []).flatMap((file) => removeStaleTemps(dirname(file), { file: basename(file) })),
  ];
  for (const { path, pid } of removed) io.stderr(`meshplane pki: removed ${path}, a temporary file left by process ${pid} (no longer running, or older than 10 minutes)\n`);
}

const init: Handler = async (args, io) => {
  const { values } = parse(args, {
    ...TOPOLOGY_OPTIONS,
    'ca-dir': { type: 'string' },
    'permit-ip': { type: 'string', multiple: true },
    'permit-dns': { type: 'string', multiple: true },
  });
  const caDir = at(io, required(values['ca-dir'], '--ca-dir'));
  const topology = topologyFrom(values, io);
  if (topology === undefined) return EXIT_INVALID;
  sweepStaleTemps(io, { caDir });
  const { ca, action } = await initCa({ caDir, topology, permitIps: values['permit-ip'], permitDns: values['permit-dns'] });
  const constraints = ca.constraints ?? { dns: [], ip: [] };
  io.stdout(`meshplane pki: CA ${action} in ${caDir} (${ca.cert.subject}, expires ${ca.cert.notAfter.toISOString()})\n`);
  io.stdout(`  permitted names:  ${constraints.dns.join(', ')}\n  permitted ranges: ${constraints.ip.join(', ')}\n`);
  return EXIT_OK;
};

const request: Handler = async (args, io) => {
  const { values } = parse(args, {
    ...TOPOLOGY_OPTIONS,
    host: { type: 'string' },
    credential: { type: 'string' },
    kind: { type: 'string' },
    'credentials-root': { type: 'string', default: DEFAULT_CREDENTIALS_ROOT },
    out: { type: 'string', short: 'o' },
    force: { type: 'boolean', default: false },
    ...OWNER_OPTIONS,
  });
  const host = required(values.host, '--host');
  const credential = required(values.credential, '--credential');
  const kind = kindOf(values.kind);
  const manageOwnership = systemOwners(values);
  const topology = topologyFrom(values, io);
  if (topology === undefined) return EXIT_INVALID;
  const root = at(io, values['credentials-root']);
  sweepStaleTemps(io, { root, files: values.out === undefined ? [] : [at(io, values.out)] });
  const result = await requestCertificate({ root, topology, host, credential, kind, caPem: undefined, force: values.force, writeCsr: values.out === undefined, manageOwnership });
  if (result.keyCreated) io.stdout(`meshplane pki: created private key for ${credential} ${kind}\n`);
  if (result.csrPem === undefined) {
    io.stdout(`meshplane pki: ${credential} ${kind}: certificate is up to date, no request made\n`);
    return EXIT_OK;
  }
  let where = result.csrPath;
  if (values.out !== undefined) {
    where = at(io, values.out);
    writeFileAtomic(where, result.csrPem, 0o644);
  }
  io.stdout(`meshplane pki: ${credential} ${kind}: CSR written to ${where} (${result.reason ?? ''})\n`);
  return EXIT_OK;
};

const sign: Handler = async (args, io) => {
  const { values } = parse(args, {
    ...TOPOLOGY_OPTIONS,
    'ca-dir': { type: 'string' },
    host: { type: 'string' },
    csr: { type: 'string' },
    kind: { type: 'string' },
    out: { type: 'string', short: 'o' },
    'csr-dir': { type: 'string' },
    'out-dir': { type: 'string' },
    threads: { type: 'string' },
    lifetime: { type: 'string' },
  });
  const caDir = at(io, required(values['ca-dir'], '--ca-dir'));
  const lifetimeMs = values.lifetime === undefined ? undefined : parseLifetime(values.lifetime);
  if (values['csr-dir'] !== undefined) {
    if (values.csr !== undefined || values.host !== undefined) throw new UsageError('give either --csr-dir/--out-dir or --host/--csr, not both');
    const outDir = at(io, required(values['out-dir'], '--out-dir'));
    const workers = values.threads === undefined ? undefined : Number(values.threads);
    if (workers !== undefined && (!Number.isInteger(workers) || workers < 1)) throw new UsageError(`--threads must be a whole number of at least 1, not "${values.threads}"`);
    const topology = topologyFrom(values, io);
    if (topology === undefined) return EXIT_INVALID;
    const started = performance.now();
    const result = await signBatch({ caDir, topology, jobs: batchJobs(at(io, values['csr-dir'])), outDir, workers, lifetimeMs });
    const seconds = (performance.now() - started) / 1000;
    for (const failure of result.failures) io.stderr(`meshplane pki sign: error ${failure.code}: ${failure.message}\n`);
    io.stdout(`meshplane pki: signed ${result.signed} certificate(s) for ${result.hosts} host(s) into ${outDir} in ${seconds.toFixed(2)} s (${result.threads} thread(s)); ${result.failures.length} refused\n`);
    return result.failures.length === 0 ? EXIT_OK : EXIT_INVALID;
  }
  const host = required(values.host, '--host');
  const csrPath = at(io, required(values.csr, '--csr'));
  const topology = topologyFrom(values, io);
  if (topology === undefined) return EXIT_INVALID;
  sweepStaleTemps(io, { caDir, files: values.out === undefined ? [] : [at(io, values.out)] });
  const signer = new LeafSigner(loadCa(caDir));
  const signed = signer.signCsr(topology, {
    csrPem: readInput(csrPath, 'CSR'),
    host,
    kind: values.kind === undefined ? undefined : kindOf(values.kind),
    source: `${values.csr} from ${host}`,
    lifetimeMs,
  });
  if (values.out === undefined) io.stdout(signed.pem);
  else {
    writeFileAtomic(at(io, values.out), signed.pem, 0o644);
    io.stderr(`meshplane pki: signed ${signed.authorized.kind} certificate of ${signed.authorized.credential.name} for ${host} (serial ${signed.serial}, expires ${signed.notAfter.toISOString()}) into ${values.out}\n`);
  }
  return EXIT_OK;
};

const install: Handler = (args, io) => {
  const { values } = parse(args, {
    credential: { type: 'string' },
    kind: { type: 'string' },
    cert: { type: 'string' },
    ca: { type: 'string' },
    crl: { type: 'string' },
    'credentials-root': { type: 'string', default: DEFAULT_CREDENTIALS_ROOT },
    ...OWNER_OPTIONS,
  });
  const credential = required(values.credential, '--credential');
  const kind = kindOf(values.kind);
  const manageOwnership = systemOwners(values);
  const certPem = readInput(at(io, required(values.cert, '--cert')), 'certificate');
  const caPem = readInput(at(io, required(values.ca, '--ca')), 'CA certificate');
  const crlPem = values.crl === undefined ? undefined : readInput(at(io, values.crl), 'CRL');
  const root = at(io, values['credentials-root']);
  sweepStaleTemps(io, { root });
  const { changed } = installCertificate({ root, credential, kind, certPem, caPem, crlPem, manageOwnership });
  io.stdout(`meshplane pki: ${credential} ${kind}: ${changed ? 'certificate installed' : 'certificate already installed, nothing changed'}\n`);
  return Promise.resolve(EXIT_OK);
};

const issue: Handler = async (args, io) => {
  const { values } = parse(args, {
    ...TOPOLOGY_OPTIONS,
    'ca-dir': { type: 'string' },
    host: { type: 'string' },
    'credentials-root': { type: 'string', default: DEFAULT_CREDENTIALS_ROOT },
    lifetime: { type: 'string' },
    force: { type: 'boolean', default: false },
    ...OWNER_OPTIONS,
  });
  const caDir = at(io, required(values['ca-dir'], '--ca-dir'));
  const host = required(values.host, '--host');
  const lifetimeMs = values.lifetime === undefined ? undefined : parseLifetime(values.lifetime);
  const manageOwnership = systemOwners(values);
  const topology = topologyFrom(values, io);
  if (topology === undefined) return EXIT_INVALID;
  const root = at(io, values['credentials-root']);
  sweepStaleTemps(io, { root, caDir });
  const results = await issueHost({ ca: loadCa(caDir), topology, host, root, lifetimeMs, force: values.force, manageOwnership });
  if (results.length === 0) io.stdout(`meshplane pki: host ${host} needs no credentials\n`);
  else {
    io.stdout(
      `${renderTable(
        ['CREDENTIAL', 'KIND', 'ACTION', 'WHY', 'FILE'],
        results.map((r) => [r.credential, r.kind, r.action, r.reason ?? '-', r.certPath]),
      )}\n`,
    );
  }
  const issued = results.filter((r) => r.action === 'issued').length;
  io.stdout(`meshplane pki: ${issued} issued, ${results.length - issued} unchanged\n`);
  return EXIT_OK;
};

const revokeCommand: Handler = async (args, io) => {
  const { values } = parse(args, {
    'ca-dir': { type: 'string' },
    serial: { type: 'string' },
    cert: { type: 'string' },
    reason: { type: 'string', default: 'unspecified' },
  });
  const caDir = at(io, required(values['ca-dir'], '--ca-dir'));
  if ((values.serial === undefined) === (values.cert === undefined)) throw new UsageError('give exactly one of --serial HEX or --cert FILE');
  if (!(REVOCATION_REASONS as readonly string[]).includes(values.reason)) throw new UsageError(`--reason must be one of ${REVOCATION_REASONS.join(', ')}, not "${values.reason}"`);
  const serial = values.serial ?? inspectCert(readInput(at(io, values.cert as string), 'certificate'), values.cert as string).serial;
  sweepStaleTemps(io, { caDir });
  const ca = loadCa(caDir);
  const { added, entry } = await revoke(ca, serial, values.reason as RevocationReason);
  io.stdout(`meshplane pki: serial ${entry.serial} ${added ? 'revoked' : 'was already revoked'} (${entry.reason}); CRL written to ${ca.files.crl}\n`);
  return EXIT_OK;
};

const status: Handler = (args, io) => {
  const { values } = parse(args, {
    'credentials-root': { type: 'string', default: DEFAULT_CREDENTIALS_ROOT },
    'ca-dir': { type: 'string' },
    'metrics-file': { type: 'string' },
    json: { type: 'boolean', default: false },
  });
  const now = new Date();
  const report = credentialStatus(at(io, values['credentials-root']), now, values['ca-dir'] === undefined ? undefined : at(io, values['ca-dir']));
  if (values.json) io.stdout(`${JSON.stringify(report, null, 2)}\n`);
  else {
    const rows = report.credentials.map((c) => [
      c.credential,
      c.kind,
      c.status,
      c.notAfter?.toISOString() ?? '-',
      c.notAfter === undefined ? '-' : formatDuration(c.notAfter.getTime() - now.getTime()),
      c.detail || '-',
    ]);
    for (const f of report.files) rows.push([f.path, f.what, f.notAfter > now ? 'ok' : 'expired', f.notAfter.toISOString(), formatDuration(f.notAfter.getTime() - now.getTime()), '-']);
    io.stdout(rows.length === 0 ? `meshplane pki: no credentials under ${at(io, values['credentials-root'])}\n` : `${renderTable(['CREDENTIAL', 'KIND', 'STATUS', 'EXPIRES', 'LEFT', 'DETAIL'], rows)}\n`);
  }
  if (values['metrics-file'] !== undefined) {
    sweepStaleTemps(io, { files: [at(io, values['metrics-file'])] });
    writeStatusMetrics(at(io, values['metrics-file']), report, now);
    if (!values.json) io.stdout(`meshplane pki: metrics written to ${values['metrics-file']}\n`);
  }
  const bad = report.credentials.some((c) => c.status === 'expired' || c.status === 'invalid' || c.status === 'revoked');
  return Promise.resolve(bad ? EXIT_INVALID : EXIT_OK);
};

const exportCommand: Handler = (args, io) => {
  const { values } = parse(args, {
    'credentials-root': { type: 'string', default: DEFAULT_CREDENTIALS_ROOT },
    credential: { type: 'string' },
    kind: { type: 'string' },
    format: { type: 'string', default: 'p12' },
    out: { type: 'string' },
    'password-file': { type: 'string' },
  });
  if (values.format !== 'p12') throw new UsageError(`--format must be p12, not "${values.format}"`);
  const result = exportPkcs12({
    root: at(io, values['credentials-root']),
    credential: required(values.credential, '--credential'),
    kind: kindOf(values.kind),
    out: at(io, required(values.out, '--out')),
    passwordFile: at(io, required(values['password-file'], '--password-file')),
  });
  io.stdout(`meshplane pki: ${values.credential} ${values.kind} (serial ${result.serial}) exported to ${values.out} (PKCS#12, 0600)\n`);
  return Promise.resolve(EXIT_OK);
};

const SUBCOMMANDS: Readonly<Record<string, Handler>> = { init, request, sign, install, issue, revoke: revokeCommand, status, serve, renew, export: exportCommand };

export const pkiCommand: Command = {
  name: 'pki',
  summary: 'service PKI: init the CA, request, sign, install, issue, revoke, status, export (PKCS#12); online CA: serve, renew',
  usage: USAGE,
  run(args, io) {
    const [sub, ...rest] = args;
    const handler = sub === undefined ? undefined : SUBCOMMANDS[sub];
    if (handler === undefined) throw new UsageError(sub === undefined ? 'a subcommand is required' : `unknown subcommand "${sub}"`);
    return handler(rest, io);
  },
};
