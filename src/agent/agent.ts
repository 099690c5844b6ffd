/**
 * The agent: keeps tunnels open to the gateway(s) with its client
 * certificate and serves HTTP/2 over them (the gateway is the client).
 * Each CONNECT stream becomes a TCP connection to the local backend,
 * preceded by a PROXY protocol header when the endpoint asks for one.
 *
 * Durable by design: every (gateway, slot) has its own dial loop with
 * exponential backoff and full jitter; PINGs find a dead gateway within
 * seconds; drain() stops taking streams and lets open ones finish.
 */
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { constants as http2Constants, performServerHandshake } from 'node:http2';
import type { IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { ABORT_MAX_BODY_BYTES, ABORT_PATH, HEADER, REGISTRATION_PATH, TUNNEL_CIPHERS, TUNNEL_SESSION_OPTIONS, TUNNEL_SESSION_WINDOW, ignoreError, pipeBoth } from '../lib/tunnel-io.js';
import type { AgentHello } from '../lib/tunnel-io.js';
import { BackendPool } from './backend-pool.js';
import { answerHealthCheck } from './health-answer.js';
import { AgentMetrics } from './metrics.js';
import type { TunnelState, TunnelStatus } from './metrics.js';
import { proxyHeader } from './proxy-protocol.js';
import type { ProxyVersion } from './proxy-protocol.js';

export interface Address {
  readonly address: string;
  readonly port: number;
}

export interface AgentOptions {
  readonly credential: string;
  readonly service: string;
  readonly host: string;
  readonly tls: { readonly ca: Buffer; readonly cert: Buffer; readonly key: Buffer };
  /** Gateways to keep tunnels to; each gets `connections` of them. */
  readonly gateways: readonly Address[];
  /** Name the gateway's certificate must carry (e.g. gateway.mesh.internal). */
  readonly gatewayName: string;
  readonly backend: Address;
  /**
   * The service's ports on the backend's address: a CONNECT that names one
   * of them reaches it; anything else goes to `backend`. Empty or absent:
   * always `backend`.
   */
  readonly backendPorts?: readonly number[];
  /** PROXY protocol per endpoint name; endpoints not listed get none. */
  readonly proxyProtocol: ReadonlyMap<string, ProxyVersion | 'none'>;
  readonly connections?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** How often the tunnel is PINGed; a PING unanswered by the next one drops the tunnel. */
  readonly pingIntervalMs?: number;
  readonly version: string;
  readonly logger: Logger;
  /** Where counters go; shared by the agents a redial replaces. */
  readonly metrics?: AgentMetrics;
  /**
   * Backend connections kept ready per backend address (0 or absent: none,
   * the default): a new connection skips the connect. See backend-pool.ts
   * and the README for which backends dislike idle connections.
   */
  readonly backendPool?: number;
}

/** What update() can change on a running agent: read per connection, so no tunnel is redialled. */
type AgentRouting = Pick<AgentOptions, 'backend' | 'backendPorts' | 'proxyProtocol'>;

export const DEFAULT_BACKOFF = { initialMs: 250, maxMs: 30_000 } as const;
const DEFAULT_PING_INTERVAL_MS = 5000;
const CONNECT_TIMEOUT_MS = 10_000;
/** A tunnel that lived this long resets the backoff. */
const STABLE_AFTER_MS = 10_000;
/** How long drain() waits for sessions to report 'close' after it cut them at the deadline. */
const DRAIN_CLOSE_GRACE_MS = 2000;

/** The CONNECT streams of a session by id, to find those the gateway asks to abort. */
type Tunnels = Map<number, ServerHttp2Stream>;
const TUNNELS = Symbol('meshplane.agent.tunnels');
type TunnelStream = ServerHttp2Stream & { [TUNNELS]: Tunnels };

/** Ends a tunnel now: the session, and its socket (which a session closed gracefully would only end). */
function kill(session: ServerHttp2Session, socket: TLSSocket): void {
  session.destroy();
  socket.destroy();
}

function forgetTunnel(this: TunnelStream): void {
  if (this.id !== undefined) this[TUNNELS].delete(this.id);
}

export class Agent {
  private readonly options: AgentOptions;
  private readonly logger: Logger;
  /** Live sessions and their sockets (a session closed gracefully only ends its socket, and waits for the gateway to close it). */
  private readonly sessions = new Map<ServerHttp2Session, TLSSocket>();
  private readonly loops: Promise<void>[] = [];
  private readonly wakeups = new Set<() => void>();
  private stopping = false;
  private connectedCount = 0;
  /** Keeps the process alive from start() until stop(), whatever the tunnels are doing. */
  private lifeline: NodeJS.Timeout | null = null;
  private loopsDone: Promise<void> = Promise.resolve();
  private routing: AgentRouting;
  private readonly metrics: AgentMetrics;
  /** State of each (gateway, slot) dial loop, for /status and the tunnels gauge. */
  private readonly tunnelStates = new Map<string, TunnelStatus>();
  private tls: AgentOptions['tls'];
  private readonly pool: BackendPool | null;

  constructor(options: AgentOptions) {
    this.options = options;
    this.logger = options.logger;
    this.routing = { backend: options.backend, backendPorts: options.backendPorts, proxyProtocol: options.proxyProtocol };
    this.metrics = options.metrics ?? new AgentMetrics(new Registry());
    this.tls = options.tls;
    this.pool = (options.backendPool ?? 0) > 0 ? new BackendPool(options.backendPool!) : null;
  }

  /**
   * A renewed certificate (or CA): dials from now on present it. Tunnels up
   * now stay until they end (the gateway drops them if the CRL revokes
   * their certificate), so a renewal never interrupts traffic.
   */
  setTls(tls: AgentOptions['tls']): void {
    this.tls = tls;
  }

  /** Every (gateway, slot) dial loop: connecting, up or down, and since when. */
  tunnels(): TunnelStatus[] {
    return [...this.tunnelStates.values()];
  }

  private setTunnel(gateway: string, slot: number, state: TunnelState): void {
    const key = `${gateway}#${slot}`;
    if (this.tunnelStates.get(key)?.state !== state) this.tunnelStates.set(key, { gateway, slot, state, since: new Date() });
  }

  /**
   * New backend address, ports or PROXY protocol per endpoint (the topology
   * changed): connections from now on use them; open ones and the tunnels
   * are not touched.
   */
  update(routing: AgentRouting): void {
    this.routing = { backend: routing.backend, backendPorts: routing.backendPorts, proxyProtocol: routing.proxyProtocol };
  }

  /** Tunnels currently registered (for tests and status). */
  get connected(): number {
    return this.connectedCount;
  }

  /** Told to stop (drain() or close()). */
  get stopped(): boolean {
    return this.stopping;
  }

  /**
   * Settles when every dial loop has ended: after a stop, or (a bug) when a
   * loop failed; then it rejects with the loop's error.
   */
  get done(): Promise<void> {
    return this.loopsDone;
  }

  start(): void {
    // The dial loops wait on sockets, timers and session events; should they ever all be waiting
    // on something that holds no handle (a session that stopped reading, say), Node would exit
    // with status 0 in the middle of a run. An agent runs until it is told to stop.
    this.lifeline = setInterval(() => undefined, 1 << 30);
    const slots = this.options.connections ?? 1;
    for (const gateway of this.options.gateways) {
      for (let slot = 0; slot < slots; slot++) this.loops.push(this.dialLoop(gateway, slot));
    }
    this.loopsDone = Promise.all(this.loops).then(() => undefined);
  }

  /**
   * Graceful stop: no new tunnels or streams (GOAWAY), open streams finish;
   * whatever is still open at the deadline is cut.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.stop();
    const closing = [...this.sessions.keys()].map((session) => new Promise<void>((resolve) => {
      session.once('close', () => resolve());
      session.close();
    }));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const [session, socket] of this.sessions) kill(session, socket);
        // A session that was cut reports 'close' soon; do not wait for one that never does.
        timer = setTimeout(resolve, DRAIN_CLOSE_GRACE_MS);
      }, deadlineMs);
    });
    await Promise.race([Promise.all(closing), deadline]);
    clearTimeout(timer);
    await Promise.all(this.loops);
  }

  /** Immediate stop. */
  close(): void {
    this.stop();
    for (const [session, socket] of this.sessions) kill(session, socket);
  }

  private stop(): void {
    this.stopping = true;
    this.pool?.close();
    if (this.lifeline !== null) clearInterval(this.lifeline);
    this.lifeline = null;
    for (const wake of this.wakeups) wake();
  }

  private async dialLoop(gateway: Address, slot: number): Promise<void> {
    const backoff = this.options.backoff ?? DEFAULT_BACKOFF;
    let attempt = 0;
    const where = `${gateway.address}:${gateway.port}`;
    let first = true;
    while (!this.stopping) {
      const started = Date.now();
      // A tunnel that is down stays "down" (since it went) while the loop retries.
      if (first) {
        this.setTunnel(where, slot, 'connecting');
        this.metrics.dialling(where);
      }
      else this.metrics.reconnect(where);
      first = false;
      try {
        await this.runTunnel(gateway, slot);
      } catch (err) {
        this.logger.warn({ gateway: `${gateway.address}:${gateway.port}`, slot, err: (err as Error).message }, 'cannot reach the gateway');
      }
      this.setTunnel(where, slot, 'down');
      if (this.stopping) break;
      if (Date.now() - started > STABLE_AFTER_MS) attempt = 0;
      // Full jitter: a fleet of agents does not reconnect in lockstep after a gateway restart.
      const delay = Math.random() * Math.min(backoff.maxMs, backoff.initialMs * 2 ** attempt);
      attempt = Math.min(attempt + 1, 30);
      await this.sleep(delay);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakeups.add(wake);
    });
  }

  /** One tunnel, from dial to close. Resolves when it closes; rejects when it never came up. */
  private runTunnel(gateway: Address, slot: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const { tls } = this;
      const socket = tlsConnect({
        host: gateway.address,
        port: gateway.port,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        servername: this.options.gatewayName,
        ALPNProtocols: ['h2'],
        minVersion: 'TLSv1.2',
        ciphers: TUNNEL_CIPHERS,
      });
      const timer = setTimeout(() => socket.destroy(new Error(`TLS handshake not done within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
      socket.once('error', (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        if (this.stopping) {
          socket.destroy();
          resolve();
          return;
        }
        socket.on('error', () => undefined);
        socket.setKeepAlive(true, 15_000);
        // Tunnel frames are small and latency-bound (a HEADERS frame per new connection): no Nagle.
        socket.setNoDelay(true);
        const where = `${gateway.address}:${gateway.port}`;
        const session = performServerHandshake(socket, { ...TUNNEL_SESSION_OPTIONS });
        const tunnels: Tunnels = new Map();
        this.sessions.set(session, socket);
        this.connectedCount++;
        this.setTunnel(where, slot, 'up');
        // However the tunnel ends, the dial loop goes on, once. 'close' alone is not enough: a
        // session that sent GOAWAY itself (nghttp2 does, e.g. on a flood of stream resets) stops
        // reading once its streams are done, and then sees neither the gateway's GOAWAY nor its
        // closed connection; only the PINGs going unanswered tell.
        let ended = false;
        const pinger = this.keepAlive(session, where, () => {
          kill(session, socket);
          end('the gateway did not answer PING');
        });
        const end = (reason: string): void => {
          if (ended) return;
          ended = true;
          clearInterval(pinger);
          this.connectedCount--;
          this.setTunnel(where, slot, 'down');
          if (!this.stopping) this.logger.warn({ gateway: where, slot, reason }, 'tunnel closed; reconnecting');
          resolve();
        };
        session.on('error', (err: Error) => this.logger.debug({ gateway: where, slot, err: err.message }, 'tunnel error'));
        session.once('localSettings', () => {
          try {
            session.setLocalWindowSize(TUNNEL_SESSION_WINDOW);
          } catch {
            // session already gone
          }
        });
        session.on('stream', (stream, headers) => this.onStream(stream, headers, slot, tunnels));
        session.on('goaway', (code: number, _lastStreamId: number, data?: Buffer) => {
          if (data !== undefined && data.length > 0) this.logger.error({ gateway: where, code, reason: data.toString() }, 'the gateway refused this agent');
          // Node closes the session by itself (NO_ERROR: gracefully, the open streams finish on
          // it). New connections come on a new tunnel: dial it now.
          end(`the gateway sent GOAWAY (code ${code})`);
        });
        this.logger.info({ gateway: where, slot }, 'tunnel up');
        session.once('close', () => {
          this.sessions.delete(session);
          end('closed');
        });
        socket.once('close', () => {
          session.destroy();
          end('connection closed');
        });
      });
    });
  }

  /** PINGs the gateway; `dead` runs when a PING is still unanswered at the next one, or cannot be sent. */
  private keepAlive(session: ServerHttp2Session, where: string, dead: () => void): NodeJS.Timeout {
    let awaitingPong = false;
    // Not unref'd: while a tunnel is up, this timer is what finds it dead.
    return setInterval(() => {
      if (awaitingPong || session.destroyed) {
        if (!session.destroyed) this.logger.warn({ gateway: where }, 'gateway did not answer PING; reconnecting');
        dead();
        return;
      }
      awaitingPong = true;
      try {
        session.ping(() => (awaitingPong = false));
      } catch {
        dead();
      }
    }, this.options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS);
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, slot: number, tunnels: Tunnels): void {
    stream.on('error', ignoreError);
    if (headers[':method'] === 'GET' && headers[':path'] === REGISTRATION_PATH) {
      const hello: AgentHello = { agent_id: `${this.options.host}/${this.options.service}/${slot}`, host: this.options.host, service: this.options.service, credential: this.options.credential, version: this.options.version };
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(JSON.stringify(hello));
      return;
    }
    if (headers[':method'] === 'GET' && headers[HEADER.healthEndpoint] !== undefined) {
      answerHealthCheck(stream, headers, this.routing.backend, this.routing.proxyProtocol, (status) => this.metrics.healthAnswered(status));
      return;
    }
    if (headers[':method'] === 'POST' && headers[':path'] === ABORT_PATH) {
      abortTunnels(stream, tunnels);
      return;
    }
    if (headers[':method'] !== 'CONNECT') {
      stream.respond({ ':status': 404 });
      stream.end();
      return;
    }
    if (stream.id !== undefined) {
      tunnels.set(stream.id, stream);
      (stream as TunnelStream)[TUNNELS] = tunnels;
      stream.once('close', forgetTunnel);
    }
    this.toBackend(stream, headers);
  }

  private toBackend(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const endpoint = String(headers[HEADER.endpoint] ?? '');
    const routing = this.routing;
    const proxy = routing.proxyProtocol.get(endpoint) ?? 'none';
    const asked = Number(headers[HEADER.backendPort]);
    const backend = routing.backendPorts?.includes(asked) === true ? { address: routing.backend.address, port: asked } : routing.backend;
    // Answer at once: the gateway starts sending while the backend connection is being made (one
    // round trip less per connection). If the backend refuses, the stream is reset with CONNECT_ERROR.
    stream.respond({ ':status': 200 });
    this.metrics.streamOpened();
    const ready = this.pool?.take(backend) ?? null;
    if (ready !== null) {
      this.piped(stream, ready, proxy, headers);
      return;
    }
    const socket = netConnect({ host: backend.address, port: backend.port, allowHalfOpen: true, noDelay: true });
    // These listeners live only until the backend connection is made; then pipeBoth's shared ones
    // take over, so an idle tunnel holds no closures.
    const onConnectError = (err: Error): void => {
      stream.off('close', onEarlyClose);
      this.metrics.backendConnectError();
      this.logger.warn({ backend: `${backend.address}:${backend.port}`, endpoint, err: err.message }, 'cannot connect to the local backend');
      if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_CONNECT_ERROR);
    };
    const onEarlyClose = (): void => {
      socket.destroy();
    };
    socket.once('error', onConnectError);
    stream.once('close', onEarlyClose);
    socket.once('connect', () => {
      stream.off('close', onEarlyClose);
      if (stream.destroyed) {
        socket.destroy();
        return;
      }
      socket.off('error', onConnectError);
      this.piped(stream, socket, proxy, headers);
    });
  }

  /** A connected backend socket takes the stream: the PROXY header first, then both ways. */
  private piped(stream: ServerHttp2Stream, socket: Socket, proxy: ProxyVersion | 'none', headers: IncomingHttpHeaders): void {
    this.metrics.backendConnected(socket);
    if (proxy !== 'none') {
      socket.write(
        proxyHeader(proxy, {
          sourceAddress: String(headers[HEADER.clientAddress] ?? ''),
          sourcePort: Number(headers[HEADER.clientPort] ?? 0),
          destinationAddress: String(headers[HEADER.frontAddress] ?? ''),
          destinationPort: Number(headers[HEADER.frontPort] ?? 0),
        }),
      );
    }
    pipeBoth(stream, socket);
  }
}

/**
 * The gateway's request to abort tunnelled connections whose clients went
 * away (its body: stream ids, comma-separated). The agent resets each with
 * CANCEL, which closes its backend connection at once (the pipe resets it);
 * the gateway does not reset them itself, since nghttp2 ends a server
 * session that receives too many RST_STREAM (see ABORT_PATH).
 */
function abortTunnels(request: ServerHttp2Stream, tunnels: Tunnels): void {
  let body = '';
  request.setEncoding('latin1');
  request.on('data', (chunk: string) => {
    body += chunk;
    if (body.length > ABORT_MAX_BODY_BYTES) {
      request.removeAllListeners('data');
      request.respond({ ':status': 413 }, { endStream: true });
    }
  });
  request.on('end', () => {
    if (request.headersSent) return;
    for (const text of body.split(',')) {
      const stream = tunnels.get(Number(text));
      if (stream !== undefined && !stream.closed && !stream.destroyed) stream.close(http2Constants.NGHTTP2_CANCEL);
    }
    // Node sends a CANCEL reset made inside a session callback once that callback is done: answer
    // after that, so the gateway sees the resets before the answer.
    setImmediate(() => {
      if (!request.closed && !request.destroyed) request.respond({ ':status': 204 }, { endStream: true });
    });
  });
}
