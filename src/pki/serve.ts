/**
 * `pki serve`: the online CA over HTTPS with mutual TLS (fastify).
 *
 *   POST /renew  body: a PEM CSR; the client presents its current certificate
 *   POST /renewals  body: JSON, several credentials of the connection's host at
 *                once, each proved by its current key (renewal-proof.ts)
 *   GET  /crl    the current CRL (PEM); Cache-Control max-age = the Topology's
 *                pki_policy.crl_refresh, which `pki renew --daemon` follows
 *   GET  /ca     the CA certificate (PEM)
 *
 * Its own TLS certificate is a dedicated one, made in memory: a fresh key
 * that never touches the disk, signed by the CA for the serving host's FQDN,
 * localhost, 127.0.0.1, ::1 and the listen address, valid
 * `servingLifetimeMs`, and remade at two thirds of that and whenever the CA
 * is read again (serving-cert.ts), swapped in with setSecureContext: open
 * connections keep the one they started with. Client certificates are asked
 * for but checked here, not by TLS, so that every refusal has a code, a
 * metric and a log line. Connections are capped (maxConnections), and the
 * TLS handshake and each request have absolute deadlines.
 */
import { constants as cryptoConstants } from 'node:crypto';
import type { X509Certificate as NodeX509 } from 'node:crypto';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import { fastify as Fastify } from 'fastify';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import { MeshplaneError } from '../errors.js';
import type { Topology } from '../topology/index.js';
import { hostFqdn, pkiPolicy } from '../topology/index.js';
import type { RateLimits, Renewed, RenewalItem } from './online.js';
import { OnlineCa } from './online.js';
import { p256Backend } from './p256.js';
import type { San } from './sans.js';
import { toSan } from './sans.js';
import type { ServingPair } from './serving-cert.js';
import { ServingCertificate } from './serving-cert.js';

interface ServeOptions {
  readonly caDir: string;
  /** The current Topology (a LiveTopology's `current`). */
  readonly topology: () => Topology;
  /** The host this runs on (its FQDN goes into the serving certificate), if in the Topology. */
  readonly host?: string;
  readonly address: string;
  readonly port: number;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly lifetimeMs?: number;
  /** Lifetime of pki serve's own TLS certificate (default 7 days); it is remade at two thirds of it. */
  readonly servingLifetimeMs?: number;
  readonly limits?: RateLimits;
  /** Open connections at most (default 1024). */
  readonly maxConnections?: number;
  /** Absolute deadline for the TLS handshake (default 10 s). */
  readonly handshakeTimeoutMs?: number;
  /** Absolute deadline for a whole request (default 10 s). */
  readonly requestTimeoutMs?: number;
  /** Re-sign the CRL only once it has expired, not at half its life (all workers of `--workers N` but the first). */
  readonly crlOnlyWhenExpired?: boolean;
}

const SERVING_LIFETIME_MS = 7 * 24 * 3600 * 1000;
const TLS_MIN_VERSION = 'TLSv1.2';
/**
 * No stateless session tickets. A renewing host connects once a renewal
 * pass and never resumes, and OpenSSL 3.0 builds each TLS 1.3 ticket by
 * serializing the session and parsing it back, the client's certificate
 * with it (its key through the slow provider decoders): two tickets a
 * handshake were about a quarter of a handshake's CPU, both ends
 * (BENCHMARKS.md, pki). With this option the tickets OpenSSL still sends
 * are stateful, and as the server keeps no session cache none resumes:
 * every connection is a full handshake whose certificate renew() checks.
 */
const TLS_SECURE_OPTIONS = cryptoConstants.SSL_OP_NO_TICKET;

const STATUS: Readonly<Record<string, number>> = {
  PKI_ERR_RENEW_NO_CERT: 401,
  PKI_ERR_RENEW_UNTRUSTED: 403,
  PKI_ERR_RENEW_EXPIRED: 403,
  PKI_ERR_RENEW_REVOKED: 403,
  PKI_ERR_RENEW_IDENTITY: 403,
  PKI_ERR_RENEW_OTHER_CREDENTIAL: 403,
  PKI_ERR_RENEW_RATE_LIMITED: 429,
  PKI_ERR_RENEW_BAD_REQUEST: 400,
};

/** A host's whole batch: up to MAX_RENEWALS_PER_REQUEST (online.ts) items of a CSR, a certificate (~1-3 KB each) and a proof. */
const RENEWALS_BODY_LIMIT = 512 * 1024;

/** The items of a `POST /renewals` body ({"renewals": [{"csr", "certificate", "proof"}]}), or PKI_ERR_RENEW_BAD_REQUEST. */
function renewalItems(body: unknown, peer: string): RenewalItem[] {
  const bad = (why: string): MeshplaneError => new MeshplaneError('PKI_ERR_RENEW_BAD_REQUEST', `refusing renewals from ${peer}: ${why} (expected JSON {"renewals": [{"csr": PEM, "certificate": PEM, "proof": base64}]})`);
  const list = typeof body === 'object' && body !== null ? (body as { renewals?: unknown }).renewals : undefined;
  if (!Array.isArray(list)) throw bad('the body has no "renewals" list');
  return list.map((item: unknown, index) => {
    const entry = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
    for (const key of ['csr', 'certificate', 'proof']) if (typeof entry[key] !== 'string') throw bad(`renewal #${index + 1} has no string "${key}"`);
    return { csr: entry['csr'] as string, certificate: entry['certificate'] as string, proof: entry['proof'] as string };
  });
}

function servingNames(options: ServeOptions, topology: Topology): San[] {
  const names = new Set(['localhost', '127.0.0.1', '::1']);
  if (options.host !== undefined && topology.hosts[options.host] !== undefined) names.add(hostFqdn(topology, options.host));
  if (options.address !== '0.0.0.0' && options.address !== '::') names.add(options.address);
  return [...names].map(toSan);
}

export class PkiServer {
  private app: FastifyInstance | undefined;
  private readonly ca: OnlineCa;
  private readonly requests: Counter<'route' | 'outcome'>;
  private readonly refusals: Counter<'code'>;
  private readonly signSeconds: Histogram;
  private readonly servingExpiry: Gauge;
  private serving: ServingCertificate | undefined;
  port = 0;

  constructor(private readonly options: ServeOptions) {
    this.ca = new OnlineCa(options.caDir, { lifetimeMs: options.lifetimeMs, limits: options.limits });
    const registers = [options.registry];
    this.requests = new Counter({ name: 'meshplane_pki_serve_requests_total', help: 'Requests by route and outcome (ok, refused, error)', labelNames: ['route', 'outcome'], registers });
    this.refusals = new Counter({ name: 'meshplane_pki_serve_refusals_total', help: 'Refused renewals by error code', labelNames: ['code'], registers });
    this.signSeconds = new Histogram({ name: 'meshplane_pki_serve_renew_seconds', help: 'Time to check and sign one renewal', buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1], registers });
    // With --workers N each worker has its own serving certificate: the earliest expiry is the one to watch.
    // 1 when signatures are checked by the native addon (p256.ts), 0 on the slower node:crypto path.
    new Gauge({ name: 'meshplane_pki_serve_native_signature_check', help: 'Whether renewal signatures are checked by the native P-256 addon (1) or by node:crypto (0, slower; see README "Native signature check")', registers, aggregator: 'min' }).set(
      p256Backend().native ? 1 : 0,
    );
    this.servingExpiry = new Gauge({ name: 'meshplane_pki_serve_certificate_expiry_timestamp_seconds', help: "notAfter of pki serve's own TLS certificate, Unix time", registers, aggregator: 'min' });
  }

  /** Reads the CA directory again (a Topology change may come with a widened CA), and remakes the serving certificate under it. */
  reloadCa(): void {
    this.ca.reload();
    this.serving?.renewNow('the CA was read again');
  }

  async start(): Promise<void> {
    const { options } = this;
    const serving = new ServingCertificate({
      signer: () => this.ca.leafSigner,
      names: () => servingNames(options, options.topology()),
      lifetimeMs: options.servingLifetimeMs ?? SERVING_LIFETIME_MS,
      logger: options.logger,
      onChange: (pair) => this.useServing(pair),
    });
    const first = serving.current;
    this.servingExpiry.set(Math.floor(first.notAfter.getTime() / 1000));
    const requestTimeout = options.requestTimeoutMs ?? 10_000;
    const app = Fastify({
      logger: false,
      bodyLimit: 16 * 1024,
      requestTimeout,
      keepAliveTimeout: 5_000,
      https: {
        key: first.keyPem,
        cert: first.certPem,
        // No `ca`: the client certificate is checked once, in renew(), so that
        // each refusal has a code (/ca and /crl are public anyway). Given the
        // CA here, OpenSSL would also verify it in every handshake, and build
        // the serving chain from it each time and send the CA certificate
        // along (33 KB with thousands of name constraints, parsed by every
        // client): about 30% of the server's and 60% of the clients'
        // CPU per renewal (BENCHMARKS.md). Clients trust their own ca.pem.
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: TLS_MIN_VERSION,
        secureOptions: TLS_SECURE_OPTIONS,
        handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
        headersTimeout: requestTimeout,
        connectionsCheckingInterval: 1000,
      },
    });
    app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => done(null, body));
    app.get('/ca', (_request, reply) => this.text(reply, 'ca', this.ca.certPem, 'application/x-pem-file'));
    app.get('/crl', async (_request, reply) => {
      // The policy of the Topology in force now: the CRL's lifetime, and when hosts should ask again.
      const policy = pkiPolicy(options.topology());
      const crl = await this.ca.crl(new Date(), { lifetimeMs: policy.crl_lifetime_ms, onlyWhenExpired: options.crlOnlyWhenExpired });
      void reply.header('cache-control', `max-age=${Math.max(1, Math.round(policy.crl_refresh_ms / 1000))}`);
      return this.text(reply, 'crl', crl, 'application/x-pem-file');
    });
    app.post('/renew', (request, reply) => {
      const socket = request.raw.socket as TLSSocket;
      const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
      const started = performance.now();
      try {
        // The X509 object straight from the TLS session (getPeerCertificate() builds a large plain object first).
        const peerCert: NodeX509 | undefined = socket.getPeerX509Certificate();
        const renewed = this.ca.renew(options.topology(), { peerCert, csrPem: typeof request.body === 'string' ? request.body : '', peer });
        this.signSeconds.observe((performance.now() - started) / 1000);
        this.logRenewed(peer, renewed);
        return this.text(reply, 'renew', renewed.pem, 'application/x-pem-file');
      } catch (err) {
        return this.refusal(reply, peer, 'renew', err);
      }
    });
    app.post('/renewals', { bodyLimit: RENEWALS_BODY_LIMIT }, (request, reply) => {
      const socket = request.raw.socket as TLSSocket;
      const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
      const started = performance.now();
      try {
        const items = renewalItems(request.body, peer);
        const results = this.ca.renewMany(options.topology(), { peerCert: socket.getPeerX509Certificate(), items, peer });
        const answer = results.map((result) => {
          if (result instanceof MeshplaneError) {
            this.refused(peer, result);
            return { error: { code: result.code, message: result.message } };
          }
          this.logRenewed(peer, result);
          return { certificate: result.pem };
        });
        // One observation a renewal (the request's time shared out), so the histogram's count counts renewals on both routes.
        const each = (performance.now() - started) / 1000 / Math.max(1, results.length);
        for (const result of results) if (!(result instanceof MeshplaneError)) this.signSeconds.observe(each);
        this.requests.inc({ route: 'renewals', outcome: 'ok' });
        return reply.type('application/json').send({ results: answer });
      } catch (err) {
        return this.refusal(reply, peer, 'renewals', err);
      }
    });
    app.server.maxConnections = options.maxConnections ?? 1024;
    await app.listen({ host: options.address, port: options.port });
    const address = app.server.address();
    this.port = typeof address === 'object' && address !== null ? address.port : options.port;
    this.app = app;
    this.serving = serving;
    serving.start();
    options.logger.info({ address: options.address, port: this.port, serial: first.serial, notAfter: first.notAfter.toISOString() }, 'online CA serving');
    const check = p256Backend();
    if (!check.native) options.logger.warn({ signatureCheck: check.detail }, 'signatures are checked with node:crypto, about three quarters of the native rate (README "Native signature check")');
  }

  /** New connections get `pair`; open ones keep theirs (setSecureContext replaces only the shared context). */
  private useServing(pair: ServingPair): void {
    // fastify types its server as http.Server; with `https` options it is a tls.Server.
    (this.app?.server as unknown as TlsServer | undefined)?.setSecureContext({ key: pair.keyPem, cert: pair.certPem, minVersion: TLS_MIN_VERSION, secureOptions: TLS_SECURE_OPTIONS });
    this.servingExpiry.set(Math.floor(pair.notAfter.getTime() / 1000));
  }

  private logRenewed(peer: string, renewed: Renewed): void {
    if (this.options.logger.isLevelEnabled('info')) this.options.logger.info({ peer, host: renewed.identity.host, credential: renewed.identity.credential, kind: renewed.kind, serial: renewed.serial, notAfter: renewed.notAfter.toISOString() }, 'renewed');
  }

  /** Counts and logs one refused renewal (of a batch, or a whole request). */
  private refused(peer: string, err: MeshplaneError): void {
    this.refusals.inc({ code: err.code });
    this.options.logger.warn({ peer, code: err.code, reason: err.message }, 'renewal refused');
  }

  /** A whole request refused: its code, counted and logged, as HTTP status and "error CODE: message". */
  private refusal(reply: FastifyReply, peer: string, route: string, err: unknown): FastifyReply {
    const error = err instanceof MeshplaneError ? err : new MeshplaneError('PKI_ERR_INTERNAL', err instanceof Error ? err.message : String(err));
    this.refused(peer, error);
    this.requests.inc({ route, outcome: error.code === 'PKI_ERR_INTERNAL' ? 'error' : 'refused' });
    return reply.code(STATUS[error.code] ?? (error.code === 'PKI_ERR_INTERNAL' ? 500 : 400)).type('text/plain').send(`error ${error.code}: ${error.message}\n`);
  }

  private text(reply: FastifyReply, route: string, body: string, type: string): FastifyReply {
    this.requests.inc({ route, outcome: 'ok' });
    return reply.type(type).send(body);
  }

  async close(): Promise<void> {
    this.serving?.stop();
    await this.app?.close();
  }
}
