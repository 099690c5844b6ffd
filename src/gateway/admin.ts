/**
 * The gateway's admin API (fastify): list backends, show one, kill one by
 * connection id, the gateway's own health, and a read-only status page.
 *
 * An onRequest hook authenticates every request (unknown routes too, so a
 * refused caller learns nothing); errors and unknown routes become JSON
 * with a code. Two ways in:
 *
 *   mtls   HTTPS with the gateway's server certificate; the caller shows a
 *          client certificate from the mesh CA (not revoked) whose
 *          credential (its CN) is one of the admin credentials, by default
 *          `gateway-admin`
 *   token  plain HTTP on a loopback address only, with a bearer token
 *          (development; the status page passes `?token=` on)
 *
 * A ConnectionGuard caps connections (in total and per source) and closes
 * those that have not finished the TLS handshake by its deadline; a
 * request must arrive whole within `requestTimeoutMs` of its first byte
 * (Node's headersTimeout and requestTimeout, checked every second), and an
 * idle keep-alive connection closes after 5 s.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Server as NetServer, Socket } from 'node:net';
import type { SecureContextOptions, Server as TlsServer, TLSSocket } from 'node:tls';
import { fastify as Fastify } from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { MeshplaneError } from '../errors.js';
import { isLoopback, parseIp } from '../lib/ip.js';
import { backendView } from './backend-view.js';
import { ConnectionGuard, DEFAULT_ADMIN_REQUEST_TIMEOUT_MS, DEFAULT_HANDSHAKE_TIMEOUT_MS, rawSocket } from './limits.js';
import type { LimitReason, ListenerLimits } from './limits.js';
import { gatewayServerTls } from './tls-policy.js';
import type { BackendView } from './backend-view.js';
import type { Backend } from './registry.js';
import { STATUS_PAGE_REFRESH_MS, statusPage } from './status-page.js';

export type AdminAuth = { readonly kind: 'mtls'; readonly credentials: readonly string[] } | { readonly kind: 'token'; readonly token: string };

/** What the admin API reads and does; the Gateway provides it. */
export interface AdminTarget {
  backends(): readonly Backend[];
  backend(id: string): Backend | undefined;
  kill(id: string, why: string): Backend | undefined;
  status(): Record<string, unknown>;
}

/** What the admin API refused (the Gateway counts and logs it). */
export interface AdminEvents {
  /** A connection closed at a cap or at the TLS handshake deadline. */
  limited(reason: LimitReason, peer: string): void;
  /** A request refused by authentication (401, 403). */
  refused(code: string, peer: string, detail: string): void;
}

interface AdminOptions {
  readonly auth: AdminAuth;
  /** The gateway's credential (and CA, CRL) for HTTPS; required for mtls. */
  readonly tls?: SecureContextOptions;
  readonly logger: Logger;
  /** Connection caps and the TLS handshake deadline (default ADMIN_DEFAULT_LIMITS). */
  readonly limits?: ListenerLimits;
  /** How long a request may take to arrive whole, from its first byte (default 10 s). */
  readonly requestTimeoutMs?: number;
  readonly events?: AdminEvents;
}

const ADMIN_DEFAULT_LIMITS: ListenerLimits = { maxConnections: 64, maxPerSource: 16, deadlineMs: DEFAULT_HANDSHAKE_TIMEOUT_MS };
const ADMIN_KEEPALIVE_MS = 5000;
const ADMIN_ALPN = ['http/1.1'];

export const DEFAULT_ADMIN_CREDENTIAL = 'gateway-admin';

/** An error the API answers with: HTTP status, stable code, message. */
class AdminError extends MeshplaneError {
  constructor(
    readonly statusCode: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

const SERVICE_PATTERN = '^[A-Za-z0-9-]{1,63}$';

export function buildAdminApi(target: AdminTarget, options: AdminOptions): FastifyInstance {
  if (options.auth.kind === 'mtls' && options.tls === undefined) throw new MeshplaneError('GW_ERR_ADMIN_CONFIG', 'the admin API over mutual TLS needs the gateway certificate, key and CA');
  const requestTimeout = options.requestTimeoutMs ?? DEFAULT_ADMIN_REQUEST_TIMEOUT_MS;
  // Node checks these deadlines every connectionsCheckingInterval (30 s by default): make it 1 s.
  const http = { headersTimeout: requestTimeout, connectionsCheckingInterval: 1000 };
  const common = { logger: false, bodyLimit: 4096, requestTimeout, keepAliveTimeout: ADMIN_KEEPALIVE_MS } as const;
  const app = (
    options.auth.kind === 'mtls'
      ? // Certificates are judged in the auth hook, not the handshake: refusals then come back as JSON with a code.
        Fastify({ ...common, https: { ...gatewayServerTls(options.tls!, ADMIN_ALPN), ...http, handshakeTimeout: options.limits?.deadlineMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS } })
      : Fastify({ ...common, http })
  ) as unknown as FastifyInstance;

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string; validation?: unknown }, request, reply) => {
    if (error instanceof AdminError) return sendError(reply, error.statusCode, error.code, error.message);
    if (error.validation !== undefined) return sendError(reply, 400, 'GW_ERR_ADMIN_BAD_REQUEST', error.message);
    if (error.statusCode !== undefined && error.statusCode < 500) return sendError(reply, error.statusCode, 'GW_ERR_ADMIN_BAD_REQUEST', error.message);
    options.logger.error({ err: error, url: request.routeOptions.url }, 'admin API error');
    return sendError(reply, 500, 'GW_ERR_ADMIN_INTERNAL', 'internal error (logged by the gateway)');
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'GW_ERR_ADMIN_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}; see GET /backends, GET /backends/:id, DELETE /backends/:id, GET /healthz, GET /`));

  // Every request, unknown routes included: a caller who is not let in learns nothing, not even which routes exist.
  app.addHook('onRequest', (request, _reply, done) => {
    try {
      (request as FastifyRequest & { admin?: string }).admin = authenticate(request, options.auth);
      done();
    } catch (err) {
      if (err instanceof AdminError) options.events?.refused(err.code, `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? 0}`, err.message);
      done(err as Error);
    }
  });
  registerRoutes(app, target, options.logger);
  return app;
}

function sendError(reply: FastifyReply, statusCode: number, code: string, message: string): FastifyReply {
  return reply.code(statusCode).type('application/json').send({ statusCode, code, message });
}

/** Who is asking (for logs), or an AdminError refusing them. */
function authenticate(request: FastifyRequest, auth: AdminAuth): string {
  if (auth.kind === 'token') {
    const address = parseIp(unmapped(request.socket.remoteAddress ?? ''));
    if (address === undefined || !isLoopback(address)) throw new AdminError(403, 'GW_ERR_ADMIN_FORBIDDEN', 'the development token is only accepted from loopback addresses; use mutual TLS with an admin credential');
    const header = request.headers.authorization;
    const query = (request.query as Record<string, unknown> | undefined)?.['token'];
    const given = header?.startsWith('Bearer ') === true ? header.slice(7) : typeof query === 'string' ? query : null;
    if (given === null) throw new AdminError(401, 'GW_ERR_ADMIN_UNAUTHENTICATED', 'no token: send "Authorization: Bearer <token>"');
    const a = Buffer.from(given);
    const b = Buffer.from(auth.token);
    if (a.length !== b.length || !timingSafeEqual(a, b)) throw new AdminError(401, 'GW_ERR_ADMIN_UNAUTHENTICATED', 'wrong token');
    return 'token';
  }
  const socket = request.raw.socket as Partial<TLSSocket>;
  const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : null;
  if (cert === null || Object.keys(cert).length === 0) throw new AdminError(401, 'GW_ERR_ADMIN_UNAUTHENTICATED', `no client certificate: present an admin credential's client certificate (${auth.credentials.join(', ')})`);
  if (socket.authorized !== true) throw new AdminError(401, 'GW_ERR_ADMIN_UNAUTHENTICATED', `client certificate refused: ${String(socket.authorizationError)}`);
  const credential = String(cert.subject?.CN ?? '');
  if (!auth.credentials.includes(credential)) throw new AdminError(403, 'GW_ERR_ADMIN_FORBIDDEN', `credential "${credential}" is not an admin credential (${auth.credentials.join(', ')})`);
  return credential;
}

function unmapped(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

function registerRoutes(api: FastifyInstance, target: AdminTarget, logger: Logger): void {
  const find = (id: string): Backend => {
    const backend = target.backend(id);
    if (backend === undefined) throw new AdminError(404, 'GW_ERR_BACKEND_NOT_FOUND', `no backend with connection id "${id}" (it may have disconnected; GET /backends lists the current ones)`);
    return backend;
  };
  const idParams = { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9a-f]{1,64}$' } }, required: ['id'] } as const;

  api.get('/healthz', () => ({ status: 'ok', ...target.status() }));

  api.get<{ Querystring: { service?: string } }>('/backends', { schema: { querystring: { type: 'object', properties: { service: { type: 'string', pattern: SERVICE_PATTERN }, token: { type: 'string' } } } } }, (request) => {
    const { service } = request.query;
    const backends: BackendView[] = target
      .backends()
      .filter((b) => service === undefined || b.service === service)
      .map((b) => backendView(b))
      .sort((a, b) => a.service.localeCompare(b.service) || a.connected_since.localeCompare(b.connected_since));
    return { backends };
  });

  api.get<{ Params: { id: string } }>('/backends/:id', { schema: { params: idParams } }, (request) => backendView(find(request.params.id)));

  api.delete<{ Params: { id: string } }>('/backends/:id', { schema: { params: idParams } }, (request) => {
    const backend = find(request.params.id);
    const who = (request as FastifyRequest & { admin?: string }).admin ?? '?';
    const view = backendView(backend);
    target.kill(backend.id, `killed through the admin API by ${who} from ${request.socket.remoteAddress ?? '?'}`);
    logger.debug({ backend: backend.id, by: who }, 'admin kill');
    return { killed: view };
  });

  api.get('/', (_request, reply) => {
    const nonce = randomBytes(16).toString('base64');
    return reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'`)
      .header('cache-control', 'no-store')
      .send(statusPage(nonce, STATUS_PAGE_REFRESH_MS));
  });
}

/** The admin API on a socket: start() listens, close() is idempotent. */
export class AdminServer {
  private readonly app: FastifyInstance;
  private readonly guard: ConnectionGuard;
  private closed = false;

  constructor(target: AdminTarget, private readonly options: AdminOptions) {
    this.app = buildAdminApi(target, options);
    const limits = options.limits ?? ADMIN_DEFAULT_LIMITS;
    // Plain HTTP (token) has no handshake: the request timeout applies from the first byte.
    this.guard = new ConnectionGuard('admin', options.auth.kind === 'mtls' ? limits : { ...limits, deadlineMs: null }, (reason, socket) => options.events?.limited(reason, peerOf(socket)));
    const server = this.app.server as unknown as NetServer;
    this.guard.attach(server);
    if (options.auth.kind === 'mtls') {
      server.on('secureConnection', (socket: TLSSocket) => this.guard.finished(rawSocket(socket)));
      // Node keeps the socket of a handshake that timed out (its idle timeout) unless told otherwise.
      server.on('tlsClientError', (_err: Error, socket: TLSSocket) => socket.destroy());
    }
  }

  /** Listens; returns the port (port 0 picks one). */
  async start(address: string, port: number): Promise<number> {
    if (this.options.auth.kind === 'token') {
      const ip = parseIp(address);
      if (ip === undefined || !isLoopback(ip)) throw new MeshplaneError('GW_ERR_ADMIN_CONFIG', `the admin API with a token listens on loopback only, not ${address}; use mutual TLS with an admin credential elsewhere`);
    }
    try {
      await this.app.listen({ host: address, port });
    } catch (err) {
      throw new MeshplaneError('GW_ERR_LISTEN', `admin API cannot listen on ${address}:${port}: ${(err as Error).message}`, { cause: err });
    }
    const bound = this.app.server.address();
    return typeof bound === 'object' && bound !== null ? bound.port : port;
  }

  /** New caps (a reload). */
  setLimits(limits: ListenerLimits): void {
    this.guard.setLimits(this.options.auth.kind === 'mtls' ? limits : { ...limits, deadlineMs: null });
  }

  /** New certificates or CRL (SIGHUP), for connections from now on, with the same TLS policy. */
  setSecureContext(tls: SecureContextOptions): void {
    if (this.options.auth.kind === 'mtls') (this.app.server as unknown as TlsServer).setSecureContext(gatewayServerTls(tls, ADMIN_ALPN));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.guard.destroyAll();
    await this.app.close();
  }
}

function peerOf(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
}
