/**
 * The online CA end to end with real processes: `meshplane pki serve` and
 * `meshplane pki renew` (the built CLI), openssl verify, a real mutual TLS
 * handshake with the renewed pair, each refusal (expired, revoked, other CA,
 * other host, other credential), --exec once per change, a CA outage and
 * recovery, and the CRL the daemon fetches landing on disk.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, initCa, issueHost, loadCa, makeCsr, normalizeSerial, readCrl, renewalProof, revoke } from '../../src/pki/index.js';
import { workloadId, writeTopology } from '../../src/topology/index.js';
import { CLI, meshplane } from '../support/run.js';
import { waitFor } from '../support/wait.js';
import { exampleTopology, openssl, scratch } from './support.js';

const dir = scratch('online');
const topology = exampleTopology();
const topologyFile = join(dir.path, 'topology.json');
const caDir = join(dir.path, 'ca');
const otherCaDir = join(dir.path, 'other-ca');
const HOUR = 3600_000;

interface Proc {
  readonly child: ChildProcess;
  readonly out: { text: string };
}

const procs: Proc[] = [];

/** Starts the built CLI; resolves once `ready` matches its output. */
function start(args: readonly string[], ready: RegExp, env: NodeJS.ProcessEnv = process.env): Promise<Proc & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const out = { text: '' };
  child.stdout?.on('data', (chunk: Buffer) => (out.text += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out.text += chunk.toString()));
  const proc = { child, out };
  procs.push(proc);
  return waitFor(() => ready.exec(out.text) ?? (child.exitCode !== null ? Promise.reject(new Error(`exited ${child.exitCode}: ${out.text}`)) : undefined), {
    what: `${args.slice(0, 2).join(' ')} to start`,
    explain: () => out.text,
  }).then((match) => ({ ...proc, match }));
}

async function stop(proc: Proc): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const closed = new Promise((resolve) => proc.child.once('close', resolve));
  proc.child.kill('SIGTERM');
  await closed;
}

let caPort = 0;
let caUrl = '';
let metricsUrl = '';
let server: Proc;

async function startServe(port: number): Promise<void> {
  const started = await start(['pki', 'serve', '--ca-dir', caDir, '-t', topologyFile, '--listen', `127.0.0.1:${port}`, '--metrics', '127.0.0.1:0', '--no-watch'], /online CA at https:\/\/127\.0\.0\.1:(\d+)\/; metrics at (\S+)/);
  server = started;
  caPort = Number(started.match[1]);
  caUrl = `https://127.0.0.1:${caPort}`;
  metricsUrl = started.match[2] ?? '';
}

/** Issues host's credentials into `root` with the PKI's own functions, signed at `now`. */
async function issued(root: string, host: string, options: { now?: Date; lifetimeMs?: number; ca?: string } = {}): Promise<void> {
  await issueHost({ ca: loadCa(options.ca ?? caDir), topology, host, root, now: options.now, lifetimeMs: options.lifetimeMs, force: true });
}

const file = (root: string, credential: string, kind: string, name: string): string => join(root, 'x509', credential, kind, name);

/** POST /renew with a client certificate, as a peer that is not our renew client would. */
function postRenew(cert: string, key: string, csr: string, path = '/renew', base = caUrl): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': path === '/renewals' ? 'application/json' : 'application/pkcs10' };
    const req = httpsRequest(`${base}${path}`, { method: 'POST', ca: loadCa(caDir).certPem, cert, key, agent: false, headers }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(csr);
  });
}

async function metrics(): Promise<string> {
  const res = await fetch(metricsUrl);
  return res.text();
}

beforeAll(async () => {
  writeTopology(topologyFile, topology);
  await initCa({ caDir, topology });
  await initCa({ caDir: otherCaDir, topology });
  await startServe(0);
}, 60_000);

afterAll(async () => {
  for (const proc of procs) await stop(proc);
  dir.remove();
});

describe('pki serve + pki renew', () => {
  const root = join(dir.path, 'host2');
  const counter = join(dir.path, 'exec-count');

  it('renews due credentials with new keys; openssl verifies them; --exec runs once; a second run is a no-op', async () => {
    // Signed 70 minutes ago for 90 minutes: past two thirds of its life.
    await issued(root, 'host2', { now: new Date(Date.now() - 70 * 60_000), lifetimeMs: 1.5 * HOUR });
    const oldCert = readFileSync(file(root, 'db', 'server', 'cert.pem'), 'utf8');
    const oldKey = readFileSync(file(root, 'db', 'server', 'private_key.pem'), 'utf8');
    const exec = `echo run >> ${counter}`;
    const first = meshplane(['pki', 'renew', '--host', 'host2', '--ca-url', caUrl, '--credentials-root', root, '--exec', exec]);
    expect(first.stdout + first.stderr).toContain('changed');
    expect(first.status).toBe(0);
    for (const kind of ['client', 'server']) {
      const cert = readFileSync(file(root, 'db', kind, 'cert.pem'), 'utf8');
      const verify = openssl(['verify', '-CAfile', join(caDir, 'ca.pem'), file(root, 'db', kind, 'cert.pem')]);
      expect(verify.stdout + verify.stderr).toContain(': OK');
      expect(new X509Certificate(cert).validTo).not.toBe(new X509Certificate(oldCert).validTo);
    }
    expect(readFileSync(file(root, 'db', 'server', 'private_key.pem'), 'utf8')).not.toBe(oldKey);
    // The CA gave the SANs the Topology entitles host2 to (the CSR named none).
    expect(new X509Certificate(readFileSync(file(root, 'db', 'server', 'cert.pem'))).subjectAltName).toContain('DNS:host2.mesh.internal');
    expect(existsSync(join(root, 'x509', 'db', 'crl.pem'))).toBe(true);
    expect(readFileSync(counter, 'utf8')).toBe('run\n');
    // Every due credential of host2 went over one connection (one handshake): one peer port in the CA's log.
    const renewedFrom = (): string[] => server.out.text.split('\n').filter((line) => line.includes('"msg":"renewed"') && line.includes('"host":"host2"')).map((line) => (JSON.parse(line) as { peer: string }).peer);
    const renewedPairs = readdirSync(join(root, 'x509')).flatMap((credential) => ['client', 'server'].filter((kind) => existsSync(file(root, credential, kind, 'cert.pem'))));
    await waitFor(() => renewedFrom().length >= renewedPairs.length, { what: "the CA's log of every renewal", explain: () => server.out.text });
    expect(renewedPairs.length).toBeGreaterThanOrEqual(2);
    expect(new Set(renewedFrom()).size).toBe(1);

    const second = meshplane(['pki', 'renew', '--host', 'host2', '--ca-url', caUrl, '--credentials-root', root, '--exec', exec]);
    expect(second.status).toBe(0);
    expect(second.stdout).toContain('nothing to do');
    expect(readFileSync(counter, 'utf8')).toBe('run\n');
  });

  it('the renewed pair completes a real mutual TLS handshake', async () => {
    const ca = readFileSync(join(caDir, 'ca.pem'), 'utf8');
    const tlsd = tlsServer({ cert: readFileSync(file(root, 'db', 'server', 'cert.pem')), key: readFileSync(file(root, 'db', 'server', 'private_key.pem')), ca, requestCert: true, rejectUnauthorized: true }, (socket) => socket.end('hello\n'));
    await new Promise<void>((resolve) => tlsd.listen(0, '127.0.0.1', resolve));
    try {
      const port = (tlsd.address() as AddressInfo).port;
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'host2.db.mesh.internal', ca, cert: readFileSync(file(root, 'db', 'client', 'cert.pem')), key: readFileSync(file(root, 'db', 'client', 'private_key.pem')) }, () => {
          if (!socket.authorized) reject(new Error(String(socket.authorizationError)));
        });
        let text = '';
        socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      expect(answer).toBe('hello\n');
    } finally {
      tlsd.close();
    }
  });
});

describe('pki serve without the native signature check (MESHPLANE_NATIVE=0)', () => {
  it('renews the same through node:crypto, refuses another CA, warns at start and says so in its metrics', async () => {
    const fallback = await start(
      ['pki', 'serve', '--ca-dir', caDir, '-t', topologyFile, '--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--no-watch'],
      /online CA at (https:\/\/127\.0\.0\.1:\d+)\/; metrics at (\S+)/,
      { ...process.env, MESHPLANE_NATIVE: '0' },
    );
    const url = fallback.match[1] ?? '';
    // pino writes asynchronously: the warning can come after the CLI's "online CA at" line.
    await waitFor(() => fallback.out.text.includes('signatures are checked with node:crypto'), { what: "the fallback's warning", explain: () => fallback.out.text });
    expect(await (await fetch(fallback.match[2] ?? '')).text()).toMatch(/^meshplane_pki_serve_native_signature_check 0$/m);
    expect(await metrics()).toMatch(/^meshplane_pki_serve_native_signature_check 1$/m);
    expect(server.out.text).not.toContain('signatures are checked with node:crypto');

    const root = join(dir.path, 'fallback-host1');
    await issued(root, 'host1', { now: new Date(Date.now() - 70 * 60_000), lifetimeMs: 1.5 * HOUR });
    const before = readdirSync(join(root, 'x509')).map((credential) => readFileSync(join(root, 'x509', credential, 'server', 'cert.pem'), 'utf8'));
    const renewed = meshplane(['pki', 'renew', '--host', 'host1', '--ca-url', url, '--credentials-root', root]);
    expect(renewed.status, renewed.stdout + renewed.stderr).toBe(0);
    for (const [index, credential] of readdirSync(join(root, 'x509')).entries()) {
      const path = join(root, 'x509', credential, 'server', 'cert.pem');
      expect(readFileSync(path, 'utf8')).not.toBe(before[index]);
      expect(openssl(['verify', '-CAfile', join(caDir, 'ca.pem'), path]).stdout).toContain(': OK');
    }

    // A pair from another CA: the CA's signature over it is checked through node:crypto, and fails.
    const stranger = join(dir.path, 'fallback-other-ca');
    await issued(stranger, 'host1', { ca: otherCaDir });
    const csr = await makeCsr({ privateKeyPem: generateKeyPair().privateKeyPem, credential: 'web', kind: 'server', sans: [] });
    const refused = await postRenew(readFileSync(file(stranger, 'web', 'server', 'cert.pem'), 'utf8'), readFileSync(file(stranger, 'web', 'server', 'private_key.pem'), 'utf8'), csr, '/renew', url);
    expect(refused.status).toBe(403);
    expect(refused.body).toContain('PKI_ERR_RENEW_UNTRUSTED');
    await stop(fallback);
  });
});

describe('pki serve refuses', () => {
  /** The host3 db server pair in `root`, and a CSR for `credential` made with a fresh key. */
  async function attempt(root: string, credential = 'db', kind: 'client' | 'server' = 'server', sans: { type: 'dns' | 'uri'; value: string }[] = []): Promise<{ status: number; body: string }> {
    const csr = await makeCsr({ privateKeyPem: generateKeyPair().privateKeyPem, credential, kind, sans });
    return postRenew(readFileSync(file(root, 'db', 'server', 'cert.pem'), 'utf8'), readFileSync(file(root, 'db', 'server', 'private_key.pem'), 'utf8'), csr);
  }

  async function refusedWith(code: string): Promise<void> {
    await waitFor(async () => (await metrics()).includes(`meshplane_pki_serve_refusals_total{code="${code}"} 1`), { what: `the ${code} refusal counted`, explain: metrics });
    await waitFor(() => server.out.text.includes(`"code":"${code}"`) && server.out.text.includes('"peer":"127.0.0.1:'), { what: `the ${code} refusal logged with its peer`, explain: () => server.out.text });
  }

  it('an expired certificate', async () => {
    const root = join(dir.path, 'expired');
    await issued(root, 'host3', { now: new Date(Date.now() - 3 * HOUR), lifetimeMs: HOUR });
    const answer = await attempt(root);
    expect(answer.status).toBe(403);
    expect(answer.body).toMatch(/^error PKI_ERR_RENEW_EXPIRED: refusing renewal from 127\.0\.0\.1:\d+: the certificate presented expired/);
    await refusedWith('PKI_ERR_RENEW_EXPIRED');
  });

  it('a revoked certificate', async () => {
    const root = join(dir.path, 'revoked');
    await issued(root, 'host3');
    const serial = new X509Certificate(readFileSync(file(root, 'db', 'server', 'cert.pem'))).serialNumber;
    expect((await attempt(root)).status).toBe(200);
    await revoke(loadCa(caDir), serial, 'keyCompromise');
    const answer = await attempt(root);
    expect(answer.status).toBe(403);
    expect(answer.body).toContain('PKI_ERR_RENEW_REVOKED');
    await refusedWith('PKI_ERR_RENEW_REVOKED');
  });

  it('a certificate from another CA', async () => {
    const root = join(dir.path, 'other-ca');
    await issued(root, 'host3', { ca: otherCaDir });
    const answer = await attempt(root);
    expect(answer.status).toBe(403);
    expect(answer.body).toContain('PKI_ERR_RENEW_UNTRUSTED');
    await refusedWith('PKI_ERR_RENEW_UNTRUSTED');
  });

  it("another host's certificate: host3's pair cannot get host2's identity", async () => {
    const root = join(dir.path, 'other-host');
    await issued(root, 'host3');
    const answer = await attempt(root, 'db', 'server', [{ type: 'uri', value: workloadId(topology, 'host2', 'db') }]);
    expect(answer.status).toBe(400);
    expect(answer.body).toMatch(/PKI_ERR_IDENTITY_NOT_ALLOWED: refusing the CSR from 127\.0\.0\.1:\d+ \(db on host3\): it asks for the identity spiffe:\/\/mesh\.internal\/host\/host2\/credential\/db/);
    await refusedWith('PKI_ERR_IDENTITY_NOT_ALLOWED');
  });

  it('a certificate without a workload identity', async () => {
    const root = join(dir.path, 'no-identity');
    await issued(root, 'host3');
    // A certificate for the same key and names but no URI SAN, as issued before identities: made with openssl and the CA key.
    const legacy = join(root, 'legacy.pem');
    const request = openssl(['req', '-new', '-key', file(root, 'db', 'server', 'private_key.pem'), '-subj', '/CN=db', '-out', join(root, 'legacy.csr')]);
    expect(request.status, request.stderr).toBe(0);
    const made = openssl(['x509', '-req', '-in', join(root, 'legacy.csr'), '-CA', join(caDir, 'ca.pem'), '-CAkey', join(caDir, 'ca_key.pem'), '-set_serial', '0x1234', '-days', '1', '-out', legacy]);
    expect(made.status, made.stderr).toBe(0);
    const csr = await makeCsr({ privateKeyPem: generateKeyPair().privateKeyPem, credential: 'db', kind: 'server', sans: [] });
    const answer = await postRenew(readFileSync(legacy, 'utf8'), readFileSync(file(root, 'db', 'server', 'private_key.pem'), 'utf8'), csr);
    expect(answer.status).toBe(403);
    expect(answer.body).toContain('PKI_ERR_RENEW_IDENTITY');
    await refusedWith('PKI_ERR_RENEW_IDENTITY');
  });

  it("another credential's certificate: a db pair cannot renew web", async () => {
    const root = join(dir.path, 'other-credential');
    await issued(root, 'host3');
    const answer = await attempt(root, 'web', 'client');
    expect(answer.status).toBe(403);
    expect(answer.body).toContain('PKI_ERR_RENEW_OTHER_CREDENTIAL');
    await refusedWith('PKI_ERR_RENEW_OTHER_CREDENTIAL');
  });
});

describe('POST /renewals (one connection, each item proved by its own key)', () => {
  const pem = (root: string, credential: string, kind: string): { cert: string; key: string } => ({ cert: readFileSync(file(root, credential, kind, 'cert.pem'), 'utf8'), key: readFileSync(file(root, credential, kind, 'private_key.pem'), 'utf8') });

  /** An item renewing `credential`/`kind` held in `root`, its proof made by `proofKey` (default: its own key). */
  async function item(root: string, credential: string, kind: 'client' | 'server', proofKey?: string): Promise<{ csr: string; certificate: string; proof: string }> {
    const held = pem(root, credential, kind);
    const csr = await makeCsr({ privateKeyPem: generateKeyPair().privateKeyPem, credential, kind, sans: [] });
    return { csr, certificate: held.cert, proof: renewalProof(proofKey ?? held.key, csr) };
  }

  async function post(connection: { cert: string; key: string }, body: unknown): Promise<{ status: number; body: string; results: Array<{ certificate?: string; error?: { code: string; message: string } }> }> {
    const answer = await postRenew(connection.cert, connection.key, typeof body === 'string' ? body : JSON.stringify(body), '/renewals');
    const results = answer.status === 200 ? (JSON.parse(answer.body) as { results: Array<{ certificate?: string; error?: { code: string; message: string } }> }).results : [];
    return { ...answer, results };
  }

  async function counted(code: string, atLeast = 1): Promise<void> {
    await waitFor(async () => Number(new RegExp(`meshplane_pki_serve_refusals_total\\{code="${code}"\\} (\\d+)`).exec(await metrics())?.[1] ?? 0) >= atLeast, { what: `the ${code} refusal counted`, explain: metrics });
  }

  it('renews several credentials of the connection host; a bad proof and another host\'s certificate are refused item by item', async () => {
    const root3 = join(dir.path, 'batch-host3');
    const root2 = join(dir.path, 'batch-host2');
    await issued(root3, 'host3');
    await issued(root2, 'host2');
    const connection = pem(root3, 'db', 'server');
    const items = [
      await item(root3, 'db', 'server'),
      await item(root3, 'db', 'client'),
      // Proved by the connection's key, not by db/client's own key.
      await item(root3, 'db', 'client', connection.key),
      // host2's certificate with a valid proof by host2's key, sent over host3's connection.
      await item(root2, 'db', 'server'),
    ];
    const answer = await post(connection, { renewals: items });
    expect(answer.status, answer.body).toBe(200);
    expect(answer.results).toHaveLength(4);
    for (const result of answer.results.slice(0, 2)) {
      expect(result.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/);
      const renewed = new X509Certificate(result.certificate ?? '');
      expect(renewed.verify(new X509Certificate(loadCa(caDir).certPem).publicKey)).toBe(true);
      expect(renewed.subjectAltName).toContain(`URI:${workloadId(topology, 'host3', 'db')}`);
    }
    expect(answer.results[2]?.error?.code).toBe('PKI_ERR_RENEW_PROOF');
    expect(answer.results[3]?.error?.code).toBe('PKI_ERR_RENEW_OTHER_HOST');
    expect(answer.results[3]?.error?.message).toMatch(/speaks for host "host2".*host "host3"/);
    await counted('PKI_ERR_RENEW_PROOF');
    await counted('PKI_ERR_RENEW_OTHER_HOST');
    await waitFor(() => server.out.text.includes('"code":"PKI_ERR_RENEW_PROOF"'), { what: 'the proof refusal logged', explain: () => server.out.text });
  });

  it("the connection's own certificate needs no proof: its key signed the TLS handshake, as on POST /renew", async () => {
    const root = join(dir.path, 'batch-own');
    await issued(root, 'host3');
    const connection = pem(root, 'db', 'server');
    // The connection's own credential with a proof by another key; db/client with the same wrong proof key for contrast.
    const answer = await post(connection, { renewals: [await item(root, 'db', 'server', generateKeyPair().privateKeyPem), await item(root, 'db', 'client', connection.key)] });
    expect(answer.status, answer.body).toBe(200);
    expect(answer.results[0]?.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(new X509Certificate(answer.results[0]?.certificate ?? '').verify(new X509Certificate(loadCa(caDir).certPem).publicKey)).toBe(true);
    expect(answer.results[1]?.error?.code).toBe('PKI_ERR_RENEW_PROOF');
  });

  it('an item whose certificate is revoked, and a connection certificate from another CA', async () => {
    const root = join(dir.path, 'batch-revoked');
    const other = join(dir.path, 'batch-other-ca');
    await issued(root, 'host3');
    await issued(other, 'host3', { ca: otherCaDir });
    await revoke(loadCa(caDir), new X509Certificate(pem(root, 'db', 'client').cert).serialNumber, 'keyCompromise');
    const answer = await post(pem(root, 'db', 'server'), { renewals: [await item(root, 'db', 'client'), await item(root, 'db', 'server')] });
    expect(answer.results[0]?.error?.code).toBe('PKI_ERR_RENEW_REVOKED');
    expect(answer.results[1]?.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const untrusted = await post(pem(other, 'db', 'server'), { renewals: [await item(root, 'db', 'server')] });
    expect(untrusted.status).toBe(403);
    expect(untrusted.body).toMatch(/^error PKI_ERR_RENEW_UNTRUSTED: /);
  });

  it('a body that is not a list of renewals, or more than 64 of them', async () => {
    const root = join(dir.path, 'batch-bad');
    await issued(root, 'host3');
    const connection = pem(root, 'db', 'server');
    const notJson = await post(connection, 'not json');
    expect(notJson.status).toBe(400);
    const noList = await post(connection, { renew: [] });
    expect(noList.status).toBe(400);
    expect(noList.body).toMatch(/^error PKI_ERR_RENEW_BAD_REQUEST: .*no "renewals" list/);
    const one = await item(root, 'db', 'server');
    const tooMany = await post(connection, { renewals: Array.from({ length: 65 }, () => one) });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body).toContain('65 renewals in one request; at most 64');
    await counted('PKI_ERR_RENEW_BAD_REQUEST', 2);
  });
});

describe('pki serve TLS sessions', () => {
  /** `openssl s_client` with a client certificate, one GET /ca; the session written to or read from `session`. */
  function sClient(root: string, session: { out?: string; in?: string }): string {
    const args = ['s_client', '-connect', `127.0.0.1:${caPort}`, '-CAfile', join(caDir, 'ca.pem'), '-cert', file(root, 'db', 'client', 'cert.pem'), '-key', file(root, 'db', 'client', 'private_key.pem'), '-ign_eof'];
    if (session.out !== undefined) args.push('-sess_out', session.out);
    if (session.in !== undefined) args.push('-sess_in', session.in);
    const run = spawnSync('openssl', args, { input: 'GET /ca HTTP/1.1\r\nHost: ca\r\nConnection: close\r\n\r\n', encoding: 'utf8', timeout: 30_000 });
    return `${run.stdout}\n${run.stderr}`;
  }

  it('resumes no session: every connection is a full handshake whose certificate is checked, and no ticket carries a copy of the session', async () => {
    const root = join(dir.path, 'sessions');
    await issued(root, 'host2');
    const session = join(dir.path, 'sessions', 'openssl.session');
    const first = sClient(root, { out: session });
    expect(first).toContain('BEGIN CERTIFICATE');
    expect(first).toMatch(/New, TLSv1\.3/);
    const second = sClient(root, { in: session });
    expect(second).toContain('BEGIN CERTIFICATE');
    expect(second).toMatch(/New, TLSv1\.3/);
    expect(second).not.toMatch(/Reused, TLSv1\.3/);
  });
});

describe('pki serve --workers 2', () => {
  it('renews through both processes on one port, sums their metrics, reloads on SIGHUP and stops every worker', async () => {
    const pool = await start(['pki', 'serve', '--ca-dir', caDir, '-t', topologyFile, '--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--no-watch', '--workers', '2'], /online CA at (https:\/\/127\.0\.0\.1:\d+)\/; metrics at (\S+)/);
    const [url, poolMetrics] = [pool.match[1] ?? '', pool.match[2] ?? ''];
    const workerPids = (): number[] => {
      const listed = spawnSync('pgrep', ['-P', String(pool.child.pid)], { encoding: 'utf8' }).stdout;
      return listed.split('\n').filter(Boolean).map(Number);
    };
    expect(workerPids()).toHaveLength(2);
    const roots = ['host2', 'host3'].map((host) => ({ host, root: join(dir.path, `workers-${host}`) }));
    for (const { host, root } of roots) {
      await issued(root, host);
      const renewed = meshplane(['pki', 'renew', '--host', host, '--ca-url', url, '--credentials-root', root, '--force']);
      expect(renewed.status, renewed.stdout + renewed.stderr).toBe(0);
      const verify = openssl(['verify', '-CAfile', join(caDir, 'ca.pem'), file(root, 'db', 'server', 'cert.pem')]);
      expect(verify.stdout + verify.stderr).toContain(': OK');
    }
    // The two renewals (one POST /renewals each) counted once in the sum of both workers' registries.
    const scrape = async (): Promise<string> => (await fetch(poolMetrics)).text();
    await waitFor(async () => /meshplane_pki_serve_requests_total\{route="renewals",outcome="ok"\} 2\n/.test(await scrape()), { what: 'both renewals in the summed metrics', explain: scrape });
    // SIGHUP reaches both workers (each reloads its Topology), and the pool keeps serving.
    const reloadsBefore = pool.out.text.split('SIGHUP').length;
    pool.child.kill('SIGHUP');
    await waitFor(() => pool.out.text.split('SIGHUP').length >= reloadsBefore + 2, { what: 'both workers reloading on SIGHUP', explain: () => pool.out.text });
    // A worker that dies is replaced.
    const [victim] = workerPids();
    process.kill(victim ?? 0, 'SIGKILL');
    await waitFor(() => workerPids().length === 2 && !workerPids().includes(victim ?? 0), { what: 'the killed worker replaced', explain: () => pool.out.text });
    // The new worker can show in /proc before the primary's log line has come through its pipe.
    await waitFor(() => pool.out.text.includes('pki serve worker died; starting a new one'), { what: "the primary's log of the dead worker", explain: () => pool.out.text });
    const pids = workerPids();
    await stop(pool);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe('pki renew --daemon', () => {
  it('retries with backoff while the CA is down, renews once it is back, and installs the refreshed CRL', async () => {
    const root = join(dir.path, 'daemon');
    await issued(root, 'host3', { now: new Date(Date.now() - 70 * 60_000), lifetimeMs: 1.5 * HOUR });
    const before = readFileSync(file(root, 'db', 'server', 'cert.pem'), 'utf8');
    await stop(server);
    const renewer = await start(
      ['pki', 'renew', '--daemon', '--host', 'host3', '--ca-url', caUrl, '--credentials-root', root, '--metrics', '127.0.0.1:0', '--retry-max', '1', '--crl-interval', '1', '--log-level', 'debug'],
      /metrics at (\S+)/,
    );
    const daemonMetrics = renewer.match[1] ?? '';
    await waitFor(() => renewer.out.text.includes('"code":"PKI_ERR_CA_UNREACHABLE"') && renewer.out.text.includes('retrying with backoff'), { what: 'the daemon to fail and back off', explain: () => renewer.out.text });
    expect(readFileSync(file(root, 'db', 'server', 'cert.pem'), 'utf8')).toBe(before);
    await startServe(caPort);
    await waitFor(() => renewer.out.text.includes('the online CA answers again'), { what: 'the daemon to renew after the outage', explain: () => renewer.out.text });
    expect(renewer.out.text).toContain('"msg":"renewed"');
    expect(readFileSync(file(root, 'db', 'server', 'cert.pem'), 'utf8')).not.toBe(before);
    const text = await (await fetch(daemonMetrics)).text();
    expect(text).toMatch(/meshplane_pki_renew_renewals_total\{credential="db",kind="server"\} 1/);
    expect(text).toMatch(/meshplane_pki_renew_failures_total\{code="PKI_ERR_CA_UNREACHABLE"\} [1-9]/);
    expect(text).toMatch(/meshplane_pki_renew_last_success_timestamp_seconds \d/);

    // A revocation on the CA reaches the host's crl.pem at the next CRL fetch.
    const victim = new X509Certificate(readFileSync(file(join(dir.path, 'host2'), 'db', 'client', 'cert.pem'))).serialNumber;
    await revoke(loadCa(caDir), victim);
    const crlPath = join(root, 'x509', 'db', 'crl.pem');
    await waitFor(() => existsSync(crlPath) && readCrl(readFileSync(crlPath, 'utf8'), crlPath).serials.has(normalizeSerial(victim)), {
      what: 'the refreshed CRL on disk',
      explain: () => renewer.out.text,
    });
    await stop(renewer);
  }, 60_000);
});
