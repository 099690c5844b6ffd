/**
 * `pki renew` on a host: renews the credentials installed there through the
 * online CA (`pki serve`). What a host holds is what it renews: every
 * x509/<name>/<kind>/cert.pem under the credentials root; the CSR names the
 * credential and kind only, and the CA fills in the SANs the Topology gives
 * the host now (so a Topology edit reaches the host at its next renewal).
 * First issue (bootstrap) stays with `pki issue` or the playbook.
 *
 * A certificate is due at two thirds of its life, brought forward by a
 * jitter of up to 5% of its life, derived from its serial so that a fleet
 * issued at once does not renew at once, and stable across restarts.
 */
import { X509Certificate as NodeX509, createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { MeshplaneError } from '../errors.js';
import { credentialsDir } from '../topology/index.js';
import { makeCsr } from './csr.js';
import { credentialPaths } from './files.js';
import { installCrl, installRenewal } from './host.js';
import { trustProblem } from './inspect.js';
import { generateKeyPair } from './keys.js';
import { MAX_RENEWALS_PER_REQUEST } from './online.js';
import { renewalProof } from './renewal-proof.js';
import { servingProblem } from './serving-check.js';
import type { CertKind } from './sans.js';
import { CERT_KINDS } from './sans.js';
import { VALIDITY } from './validity.js';

const JITTER_FRACTION = 0.05;
const REQUEST_TIMEOUT_MS = 15_000;

interface Held {
  readonly credential: string;
  readonly kind: CertKind;
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
  readonly cert: NodeX509;
}

/** The credentials installed under `root` that have a certificate, a key and a CA. */
function heldCredentials(root: string): Held[] {
  let names: string[];
  try {
    names = readdirSync(credentialsDir(root)).sort();
  } catch {
    return [];
  }
  const held: Held[] = [];
  for (const credential of names) {
    const paths = credentialPaths(root, credential);
    for (const kind of CERT_KINDS) {
      if (!existsSync(paths.cert(kind)) || !existsSync(paths.key(kind)) || !existsSync(paths.ca)) continue;
      const certPem = readFileSync(paths.cert(kind), 'utf8');
      held.push({ credential, kind, certPem, keyPem: readFileSync(paths.key(kind), 'utf8'), caPem: readFileSync(paths.ca, 'utf8'), cert: new NodeX509(certPem) });
    }
  }
  return held;
}

/** When `cert` is due for renewal: two thirds of its life, minus its jitter. */
function renewalDue(cert: NodeX509): Date {
  const notBefore = new Date(cert.validFrom).getTime();
  const life = new Date(cert.validTo).getTime() - notBefore;
  const jitter = createHash('sha256').update(cert.serialNumber).digest().readUInt32BE(0) / 2 ** 32;
  return new Date(notBefore + life * (1 - VALIDITY.renewFraction) - life * JITTER_FRACTION * jitter);
}

interface Answer {
  readonly status: number;
  readonly body: string;
  /** Cache-Control max-age, in ms, when the CA sent one. */
  readonly maxAgeMs?: number;
}

/** `max-age=N` of a Cache-Control header, in ms (at least 1 s). */
function maxAgeMs(header: string | undefined): number | undefined {
  const match = /(?:^|,)\s*max-age=(\d+)\s*(?:,|$)/i.exec(header ?? '');
  return match === null ? undefined : Math.max(1, Number(match[1])) * 1000;
}

interface Tls {
  readonly caPem: string;
  readonly certPem?: string;
  readonly keyPem?: string;
}

/**
 * A TLS connection to the CA whose serving certificate has been checked
 * (serving-check.ts: without a trust store, so that the handshake does not
 * carry the CA certificate along with the host's own).
 */
function connectToCa(caUrl: URL, tls: Tls): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const host = caUrl.hostname.startsWith('[') ? caUrl.hostname.slice(1, -1) : caUrl.hostname;
    const socket = tlsConnect({
      host,
      port: Number(caUrl.port || 443),
      ...(isIP(host) === 0 ? { servername: host } : {}),
      cert: tls.certPem,
      key: tls.keyPem,
      // Checked below, before anything is sent.
      rejectUnauthorized: false,
    });
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy(new Error(`no TLS handshake within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const problem = servingProblem(socket.getPeerX509Certificate(), tls.caPem, host, new Date());
      if (problem !== undefined) {
        const err = new Error(`the server there is not the CA of ca.pem: ${problem}`);
        socket.destroy(err);
        return;
      }
      socket.removeListener('error', reject);
      socket.setTimeout(0);
      resolve(socket);
    });
  });
}

/** One HTTPS request to the CA; network failures and a serving certificate not of this CA become PKI_ERR_CA_UNREACHABLE. */
async function call(caUrl: URL, method: 'GET' | 'POST', path: string, tls: Tls, body?: string, contentType = 'application/pkcs10'): Promise<Answer> {
  let socket: TLSSocket;
  try {
    socket = await connectToCa(caUrl, tls);
  } catch (err) {
    throw unreachable(caUrl, err as Error);
  }
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(path, caUrl),
      { method, createConnection: () => socket, timeout: REQUEST_TIMEOUT_MS, headers: { 'content-type': contentType, connection: 'close' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        const maxAge = maxAgeMs(res.headers['cache-control']);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, ...(maxAge === undefined ? {} : { maxAgeMs: maxAge }) }));
        res.on('error', (err) => reject(unreachable(caUrl, err)));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err) => reject(unreachable(caUrl, err)));
    req.end(body);
  });
}

function unreachable(caUrl: URL, err: Error): MeshplaneError {
  return new MeshplaneError('PKI_ERR_CA_UNREACHABLE', `the online CA at ${caUrl.origin} cannot be reached: ${err.message}`, { cause: err });
}

/** A refusal from the CA keeps the CA's code ("error PKI_ERR_...: message"). */
function refused(caUrl: URL, answer: Answer): MeshplaneError {
  const match = /^error (\w+): ([\s\S]*)$/.exec(answer.body.trim());
  if (match !== null) return new MeshplaneError(match[1] ?? 'PKI_ERR_RENEW_REFUSED', `the online CA at ${caUrl.origin} said: ${match[2] ?? ''}`);
  return new MeshplaneError('PKI_ERR_RENEW_REFUSED', `the online CA at ${caUrl.origin} answered HTTP ${answer.status}: ${answer.body.slice(0, 200)}`);
}

interface RenewOptions {
  readonly root: string;
  readonly caUrl: URL;
  /** Renew every certificate now, due or not. */
  readonly force?: boolean;
  readonly now?: Date;
  readonly manageOwnership?: boolean;
}

interface Outcome {
  readonly credential: string;
  readonly kind: CertKind;
  readonly action: 'renewed' | 'not due' | 'failed';
  /** When it is due next (for renewed ones, the new certificate's due time). */
  readonly due: Date;
  readonly notAfter: Date;
  readonly error?: MeshplaneError;
}

/** The credential a host's renewal connection presents: a valid one with the longest life left, else (none valid) the first due one, so that the CA says why. */
function askerCredential(held: readonly Held[], trusted: readonly boolean[], due: readonly Held[]): Held {
  const valid = held.filter((_, index) => trusted[index]);
  valid.sort((a, b) => new Date(b.cert.validTo).getTime() - new Date(a.cert.validTo).getTime());
  return valid[0] ?? (due[0] as Held);
}

/** `POST /renewals`'s answer: one certificate or error per item, in order. */
function renewalResults(caUrl: URL, answer: Answer, count: number): Array<{ certificate?: string; error?: { code?: string; message?: string } }> {
  let results: unknown;
  try {
    results = (JSON.parse(answer.body) as { results?: unknown }).results;
  } catch {
    results = undefined;
  }
  if (!Array.isArray(results) || results.length !== count) throw new MeshplaneError('PKI_ERR_RENEW_REFUSED', `the online CA at ${caUrl.origin} answered POST /renewals with something other than ${count} results: ${answer.body.slice(0, 200)}`);
  return results as Array<{ certificate?: string; error?: { code?: string; message?: string } }>;
}

const asError = (err: unknown): MeshplaneError => (err instanceof MeshplaneError ? err : new MeshplaneError('PKI_ERR_RENEW_REFUSED', (err as Error).message, { cause: err }));

/**
 * Renews what is due; a failure of one credential does not stop the others.
 * All of a host's due credentials go over one mutual-TLS connection (`POST
 * /renewals`, up to MAX_RENEWALS_PER_REQUEST at a time): the handshake
 * presents one valid credential of the host, and each renewal carries its
 * own current certificate and a proof by its key over the new CSR
 * (renewal-proof.ts). One handshake a host instead of one a credential is
 * most of the CA's work saved.
 */
export async function renewCredentials(options: RenewOptions): Promise<Outcome[]> {
  const now = options.now ?? new Date();
  const held = heldCredentials(options.root);
  // Whether each certificate still holds (chain, dates, key): decides what is due and which one the connection presents.
  const trusted = held.map((h) => trustProblem(h.certPem, h.caPem, now, h.keyPem) === undefined);
  const outcomes: Outcome[] = new Array<Outcome>(held.length);
  const due: Array<{ held: Held; index: number }> = [];
  held.forEach((h, index) => {
    const dueAt = renewalDue(h.cert);
    if (options.force !== true && dueAt.getTime() > now.getTime() && trusted[index]) {
      outcomes[index] = { credential: h.credential, kind: h.kind, action: 'not due', due: dueAt, notAfter: new Date(h.cert.validTo) };
    } else {
      due.push({ held: h, index });
    }
  });
  if (due.length > 0) {
    const asker = askerCredential(held, trusted, due.map((d) => d.held));
    for (let from = 0; from < due.length; from += MAX_RENEWALS_PER_REQUEST) {
      const chunk = due.slice(from, from + MAX_RENEWALS_PER_REQUEST);
      for (const [i, result] of (await renewChunk(options, asker, chunk.map((d) => d.held), now)).entries()) {
        const { held: h, index } = chunk[i] as { held: Held; index: number };
        outcomes[index] = typeof result === 'string' ? renewedOutcome(h, result) : { credential: h.credential, kind: h.kind, action: 'failed', due: renewalDue(h.cert), notAfter: new Date(h.cert.validTo), error: result };
      }
    }
  }
  return outcomes;
}

/** The outcome of a credential just installed with `certPem`. */
function renewedOutcome(h: Held, certPem: string): Outcome {
  const cert = new NodeX509(certPem);
  return { credential: h.credential, kind: h.kind, action: 'renewed', due: renewalDue(cert), notAfter: new Date(cert.validTo) };
}

/** One `POST /renewals` for `chunk`, installing each certificate it returns; for each item, the certificate installed or why not. */
async function renewChunk(options: RenewOptions, asker: Held, chunk: readonly Held[], now: Date): Promise<Array<string | MeshplaneError>> {
  const prepared = await Promise.all(
    chunk.map(async (h) => {
      const key = generateKeyPair();
      const csr = await makeCsr({ privateKeyPem: key.privateKeyPem, credential: h.credential, kind: h.kind, sans: [] });
      return { key, csr, proof: renewalProof(h.keyPem, csr) };
    }),
  );
  let results: ReturnType<typeof renewalResults>;
  try {
    const body = JSON.stringify({ renewals: prepared.map((p, i) => ({ csr: p.csr, certificate: (chunk[i] as Held).certPem, proof: p.proof })) });
    const answer = await call(options.caUrl, 'POST', '/renewals', { caPem: asker.caPem, certPem: asker.certPem, keyPem: asker.keyPem }, body, 'application/json');
    if (answer.status !== 200) throw refused(options.caUrl, answer);
    results = renewalResults(options.caUrl, answer, chunk.length);
  } catch (err) {
    return chunk.map(() => asError(err));
  }
  return results.map((result, i) => {
    const h = chunk[i] as Held;
    const p = prepared[i] as (typeof prepared)[number];
    if (typeof result.certificate !== 'string') {
      return new MeshplaneError(result.error?.code ?? 'PKI_ERR_RENEW_REFUSED', `the online CA at ${options.caUrl.origin} said: ${result.error?.message ?? 'no certificate and no reason'}`);
    }
    try {
      installRenewal({ root: options.root, credential: h.credential, kind: h.kind, keyPem: p.key.privateKeyPem, certPem: result.certificate, caPem: h.caPem, now, manageOwnership: options.manageOwnership });
      return result.certificate;
    } catch (err) {
      return asError(err);
    }
  });
}

interface CrlRefresh {
  /** Whether the CA was asked (there is no CA to ask before a credential is installed). */
  readonly fetched: boolean;
  /** The credentials whose crl.pem changed. */
  readonly changed: readonly string[];
  /** When to fetch again, as the CA said (its Topology's pki_policy.crl_refresh); undefined for a CA that does not say. */
  readonly refreshMs?: number;
}

/** Fetches the CA's CRL and installs it beside every credential whose ca.pem signed it. */
export async function refreshCrl(options: { readonly root: string; readonly caUrl: URL; readonly manageOwnership?: boolean }): Promise<CrlRefresh> {
  const held = heldCredentials(options.root);
  const first = held[0];
  if (first === undefined) return { fetched: false, changed: [] };
  const answer = await call(options.caUrl, 'GET', '/crl', { caPem: first.caPem });
  if (answer.status !== 200) throw refused(options.caUrl, answer);
  const changed: string[] = [];
  for (const credential of new Set(held.map((h) => h.credential))) {
    if (installCrl(options.root, credential, answer.body, options.manageOwnership)) changed.push(credential);
  }
  return { fetched: true, changed, ...(answer.maxAgeMs === undefined ? {} : { refreshMs: answer.maxAgeMs }) };
}
