/**
 * The registration listener: agents dial in over mutual TLS, and the
 * connection then carries HTTP/2 the other way round (the gateway is the
 * client). Refusals at every stage are logged with the peer and reason and
 * counted: TLS (no certificate, another CA, expired, revoked), and
 * authorization (a valid certificate for a credential the service does not
 * list). A registration is bound to the workload identity in the client
 * certificate (its URI SAN, src/topology/identity.ts): the agent may only
 * register as the host the certificate names, and may only displace an
 * agent of that same host.
 */
import { randomBytes } from 'node:crypto';
import { connect as http2Connect, constants as http2Constants } from 'node:http2';
import type { ClientHttp2Session } from 'node:http2';
import { createServer } from 'node:tls';
import type { SecureContextOptions, Server as TlsServer, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Topology } from '../topology/index.js';
import { parseWorkloadId } from '../topology/index.js';
import { normalizeSerial } from '../pki/index.js';
import { REGISTRATION_PATH, TUNNEL_SESSION_OPTIONS, TUNNEL_SESSION_WINDOW } from '../lib/tunnel-io.js';
import type { AgentHello } from '../lib/tunnel-io.js';
import { rawSocket } from './limits.js';
import type { ConnectionGuard } from './limits.js';
import { freshBackendState } from './registry.js';
import type { Backend, BackendRegistry } from './registry.js';
import { gatewayServerTls } from './tls-policy.js';

const ALPN = ['h2'];

type RefusalReason =
  | 'no_certificate'
  | 'unknown_ca'
  | 'expired'
  | 'revoked'
  | 'tls_error'
  | 'not_authorized'
  | 'no_identity'
  | 'wrong_host'
  | 'displacement'
  | 'bad_registration'
  | 'timeout';

interface RegistrationEvents {
  refused(reason: RefusalReason, peer: string, detail: string): void;
  registered(backend: Backend, replaced: Backend | undefined): void;
  deregistered(backend: Backend, why: string): void;
}

interface RegistrationOptions {
  /** Accept client certificates without a workload identity (migration aid: no host binding for them). */
  readonly allowLegacyIdentity?: boolean;
}

/**
 * The mesh identities (URI SANs) of a peer certificate, from Node's
 * `subjectaltname` text ("DNS:a, URI:spiffe://…"); identities of other
 * trust domains are ignored.
 */
function certificateIdentities(subjectaltname: string | undefined, domain: string): { uri: string; host: string; credential: string }[] {
  const out: { uri: string; host: string; credential: string }[] = [];
  for (const entry of (subjectaltname ?? '').split(', ')) {
    if (!entry.startsWith('URI:')) continue;
    const uri = entry.slice(4);
    const id = parseWorkloadId(uri);
    if (id !== undefined && id.domain === domain.toLowerCase()) out.push({ uri, host: id.host, credential: id.credential });
  }
  return out;
}

const HELLO_TIMEOUT_MS = 5000;
const HELLO_MAX_BYTES = 4096;
const PING_INTERVAL_MS = 3000;

/** Why a TLS handshake failed outright, from Node's error codes. */
function tlsRefusalReason(err: NodeJS.ErrnoException): RefusalReason {
  const text = `${err.code ?? ''} ${err.message}`;
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|NO_CERTIFICATE|CERTIFICATE_REQUIRED/i.test(text)) return 'no_certificate';
  return 'tls_error';
}

/**
 * Why a completed handshake's client certificate is not acceptable, from
 * OpenSSL's verification result; null when it verified against the CA
 * (and the CRL). The server asks for a certificate but decides here rather
 * than inside the handshake, so each refusal has a precise reason and a
 * peer address to log, and the agent can be told why.
 */
function certificateRefusal(socket: TLSSocket): { reason: RefusalReason; detail: string } | null {
  const cert = socket.getPeerCertificate();
  if (Object.keys(cert).length === 0) return { reason: 'no_certificate', detail: 'no client certificate was presented' };
  if (socket.authorized) return null;
  const code = String(socket.authorizationError);
  const reason: RefusalReason =
    code === 'CERT_HAS_EXPIRED'
      ? 'expired'
      : code === 'CERT_REVOKED'
        ? 'revoked'
        : /UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|CERT_SIGNATURE_FAILURE/.test(code)
          ? 'unknown_ca'
          : 'tls_error';
  return { reason, detail: `client certificate ${String(cert.subject?.CN ?? '?')} (serial ${cert.serialNumber}) refused: ${code}` };
}

export class RegistrationListener {
  private server: TlsServer | null = null;
  private guard: ConnectionGuard | null = null;
  private topology: Topology;
  private readonly sessions = new Set<ClientHttp2Session>();

  constructor(
    topology: Topology,
    private readonly registry: BackendRegistry,
    private readonly events: RegistrationEvents,
    private readonly logger: Logger,
    private readonly options: RegistrationOptions = {},
  ) {
    this.topology = topology;
  }

  setTopology(topology: Topology): void {
    this.topology = topology;
  }

  /**
   * Listens behind `guard` (connection caps, and the TLS handshake's
   * absolute deadline: its deadlineMs).
   */
  async listen(tls: SecureContextOptions, host: string, port: number, guard: ConnectionGuard): Promise<number> {
    // Node's own handshakeTimeout is an idle timeout (every byte restarts it); the guard's deadline is not.
    const server = createServer({ ...gatewayServerTls(tls, ALPN), handshakeTimeout: guard.current.deadlineMs ?? 120_000 });
    guard.attach(server);
    this.guard = guard;
    server.on('secureConnection', (socket: TLSSocket) => {
      guard.finished(rawSocket(socket));
      this.onAgent(socket);
    });
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      // Node leaves the socket open when someone listens for this event.
      socket.destroy();
      if (guard.expired(rawSocket(socket))) return; // counted and logged as a handshake_timeout already
      const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
      this.events.refused(tlsRefusalReason(err), peer, err.message);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    return typeof address === 'object' && address !== null ? address.port : port;
  }

  /** New certificates (or CRL) for connections from now on, with the same TLS policy; live ones are untouched. */
  setSecureContext(tls: SecureContextOptions): void {
    this.server?.setSecureContext(gatewayServerTls(tls, ALPN));
  }

  close(): void {
    this.server?.close();
    this.guard?.destroyAll();
    for (const session of this.sessions) session.destroy();
    this.sessions.clear();
  }

  private onAgent(socket: TLSSocket): void {
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    socket.on('error', () => undefined);
    // Tunnel frames are small and latency-bound (a HEADERS frame per new connection): no Nagle.
    socket.setNoDelay(true);
    const session = http2Connect('https://agent.invalid', { ...TUNNEL_SESSION_OPTIONS, createConnection: () => socket });
    this.sessions.add(session);
    session.on('error', () => undefined);
    session.on('close', () => this.sessions.delete(session));
    const refusal = certificateRefusal(socket);
    if (refusal !== null) {
      this.refuse(session, refusal.reason, peer, refusal.detail);
      return;
    }
    const credential = String(socket.getPeerCertificate().subject?.CN ?? '');
    session.once('connect', () => session.setLocalWindowSize(TUNNEL_SESSION_WINDOW));
    void this.readHello(session).then(
      (hello) => this.register(session, socket, peer, credential, hello),
      (err: Error & { reason?: RefusalReason }) => this.refuse(session, err.reason ?? 'bad_registration', peer, err.message),
    );
  }

  /** Logs and counts a refusal, tells the agent why (GOAWAY debug data), and drops the connection. */
  private refuse(session: ClientHttp2Session, reason: RefusalReason, peer: string, detail: string): void {
    this.events.refused(reason, peer, detail);
    try {
      session.goaway(http2Constants.NGHTTP2_INADEQUATE_SECURITY, 0, Buffer.from(`${reason}: ${detail}`.slice(0, 1000)));
    } catch {
      // already closing
    }
    setTimeout(() => session.destroy(), 500).unref();
  }

  private readHello(session: ClientHttp2Session): Promise<AgentHello> {
    return new Promise((resolve, reject) => {
      const fail = (reason: RefusalReason, message: string): void => reject(Object.assign(new Error(message), { reason }));
      const timer = setTimeout(() => fail('timeout', `no registration within ${HELLO_TIMEOUT_MS} ms`), HELLO_TIMEOUT_MS);
      let request;
      try {
        request = session.request({ ':method': 'GET', ':path': REGISTRATION_PATH });
      } catch (err) {
        clearTimeout(timer);
        fail('bad_registration', (err as Error).message);
        return;
      }
      let body = '';
      let status = 0;
      request.on('response', (headers) => (status = Number(headers[':status'])));
      request.setEncoding('utf8');
      request.on('data', (chunk: string) => {
        body += chunk;
        if (body.length > HELLO_MAX_BYTES) request.destroy(new Error('registration too large'));
      });
      request.on('error', (err: Error) => {
        clearTimeout(timer);
        fail('bad_registration', err.message);
      });
      request.on('end', () => {
        clearTimeout(timer);
        if (status !== 200) return fail('bad_registration', `registration answered HTTP ${status}`);
        try {
          const hello = JSON.parse(body) as AgentHello;
          for (const key of ['agent_id', 'host', 'service', 'credential'] as const) {
            if (typeof hello[key] !== 'string' || hello[key] === '') return fail('bad_registration', `registration has no "${key}"`);
          }
          resolve(hello);
        } catch {
          fail('bad_registration', 'registration is not JSON');
        }
      });
    });
  }

  /**
   * Why the certificate's workload identity does not allow this
   * registration, or null when it does: the certificate must name the host
   * the agent claims (and the credential it presents). A certificate
   * without an identity is refused unless the gateway allows legacy ones.
   */
  private identityProblem(socket: TLSSocket, credential: string, hello: AgentHello): { reason: RefusalReason; detail: string } | null {
    const cert = socket.getPeerCertificate();
    const identities = certificateIdentities(cert.subjectaltname, this.topology.domain);
    const what = `client certificate ${credential} (serial ${cert.serialNumber})`;
    if (identities.length === 0) {
      if (this.options.allowLegacyIdentity === true) return null;
      return {
        reason: 'no_identity',
        detail: `${what} carries no workload identity (URI SAN spiffe://${this.topology.domain}/host/<host>/credential/${credential}): reissue it (meshplane pki issue, or the playbook), or start the gateway with --allow-legacy-identity while migrating`,
      };
    }
    const mine = identities.find((id) => id.host === hello.host && id.credential === credential);
    if (mine === undefined) {
      return { reason: 'wrong_host', detail: `the agent claims host "${hello.host}" but ${what} belongs to ${identities.map((id) => id.uri).join(', ')}` };
    }
    return null;
  }

  private register(session: ClientHttp2Session, socket: TLSSocket, peer: string, credential: string, hello: AgentHello): void {
    if (session.destroyed) return;
    const service = this.topology.services[hello.service];
    const bound = this.identityProblem(socket, credential, hello);
    if (bound !== null) {
      this.refuse(session, bound.reason, peer, bound.detail);
      return;
    }
    const problem =
      hello.credential !== credential
        ? `certificate is for credential "${credential}" but the agent claims "${hello.credential}"`
        : service === undefined
          ? `no service "${hello.service}" in the topology`
          : !service.credentials.includes(credential)
            ? `credential "${credential}" is not listed by service "${hello.service}"`
            : service.gateway_endpoints.length === 0
              ? `service "${hello.service}" has no gateway endpoints`
              : !service.instances.some((instance) => instance.host === hello.host)
                ? // With the identity bound above this is what stops a host that runs no such instance (and an agent the topology moved away).
                  `host "${hello.host}" runs no instance of service "${hello.service}" in the topology`
                : null;
    if (problem !== null) {
      this.refuse(session, 'not_authorized', peer, problem);
      return;
    }
    const backend: Backend = {
      id: randomBytes(6).toString('hex'),
      service: hello.service,
      credential,
      certificateSerial: normalizeSerial(socket.getPeerCertificate().serialNumber),
      agentId: hello.agent_id,
      host: hello.host,
      peer,
      connectedAt: new Date(),
      session,
      ...freshBackendState(),
    };
    // Only the same host (the same identity) may take over an agent id: no displacing another host's tunnel.
    const previous = this.registry.forAgent(hello.agent_id);
    if (previous !== undefined && previous.host !== hello.host) {
      this.refuse(session, 'displacement', peer, `agent id "${hello.agent_id}" is registered by host ${previous.host} (backend ${previous.id}); host ${hello.host} may not displace it`);
      return;
    }
    const replaced = this.registry.add(backend);
    this.events.registered(backend, replaced);
    replaced?.session.close();

    // Dead agents are found by PING within two intervals, not by TCP keepalive's hours.
    let awaitingPong = false;
    const pinger = setInterval(() => {
      if (session.destroyed) return;
      if (awaitingPong) {
        this.logger.warn({ backend: backend.id, peer }, 'agent did not answer PING; dropping its tunnel');
        session.destroy();
        return;
      }
      awaitingPong = true;
      try {
        session.ping((err, duration) => {
          awaitingPong = false;
          if (err === null) backend.rttMs = duration;
        });
      } catch {
        session.destroy();
      }
    }, PING_INTERVAL_MS);
    pinger.unref();
    session.on('close', () => {
      clearInterval(pinger);
      if (this.registry.remove(backend.id)) this.events.deregistered(backend, 'connection closed');
    });
    // A draining agent (GOAWAY) takes no new connections; the open ones finish on the session.
    session.on('goaway', (code: number) => {
      if (this.registry.remove(backend.id)) this.events.deregistered(backend, code === http2Constants.NGHTTP2_NO_ERROR ? 'agent is draining' : `agent sent GOAWAY with error code ${code}`);
    });
    socket.setKeepAlive(true, 15_000);
    this.logger.debug({ backend: backend.id, peer }, 'tunnel up');
  }
}
