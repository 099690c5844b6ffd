/**
 * Front listeners: where clients connect. Each connection is held until it
 * can be routed (TLS SNI, or an HTTP request head: Host, or CONNECT's
 * authority), within a size cap and a timeout; then it becomes one HTTP/2
 * CONNECT stream to a backend's agent, and the bytes read so far are
 * replayed into it (all of them for TLS and plain HTTP; those after the
 * head for CONNECT, whose client gets "200 Connection established").
 */
import { constants as http2Constants } from 'node:http2';
import type { ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { serviceNames } from '../topology/index.js';
import type { Logger } from 'pino';
import { CUT, HEADER, pipeBoth } from '../lib/tunnel-io.js';
import { abortTunnelStream } from './tunnel-abort.js';
import { readClientHello, unrecognizedNameAlert } from './client-hello.js';
import { readRequestHead } from './http-head.js';
import { ConnectionGuard } from './limits.js';
import type { LimitReason, ListenerLimits } from './limits.js';
import type { BackendPicker } from './balance.js';
import type { Backend } from './registry.js';
import type { FrontPort, Route, RoutingTable } from './routes.js';

type FrontRefusal = 'timeout' | 'bad_hello' | 'bad_request' | 'not_connect' | 'no_route' | 'no_backend' | 'no_healthy_backend' | 'backends_full' | 'tunnel_failed';

interface FrontEvents {
  routed(route: Route, backend: Backend, peer: string): void;
  /** `connection` is the client connection's id (in logs). */
  refused(port: number, reason: FrontRefusal, peer: string, detail: string, connection: string): void;
  /** The backend's agent could not carry the connection, or its backend refused it (for outlier ejection). */
  failed(route: Route, backend: Backend): void;
  /** The backend's first byte back: it took the connection. */
  firstByte(backend: Backend, seconds: number): void;
  /** A connection closed at once because the port, or its source, is at its cap. */
  limited(port: number, reason: LimitReason, peer: string): void;
}

interface FrontOptions {
  /** Addresses every front port listens on (default 0.0.0.0 and ::). */
  readonly addresses: readonly string[];
  /** How long a client may take to send its hello or request head (absolute, from accept). */
  readonly peekTimeoutMs: number;
  /** Caps of each front port (all its addresses together). */
  readonly limits: ListenerLimits;
  readonly domain: string;
}

export const DEFAULT_PEEK_TIMEOUT_MS = 10_000;

let connectionCounter = 0;

const RESPONSES: Partial<Record<FrontRefusal, string>> = {
  bad_request: '400 Bad Request',
  no_route: '404 Not Found',
  no_backend: '503 Service Unavailable',
  no_healthy_backend: '503 Service Unavailable',
  backends_full: '503 Service Unavailable',
  tunnel_failed: '502 Bad Gateway',
};

export class FrontListeners {
  private readonly servers = new Map<number, Server[]>();
  private readonly guards = new Map<number, ConnectionGuard>();
  private limits: ListenerLimits;
  private readonly sockets = new Set<Socket>();
  private table: RoutingTable;
  /** The 'close' listener of every client socket: one function, not one closure per connection. */
  private readonly forgetSocket: (this: Socket) => void;
  private readonly authorities = new WeakMap<Route, string>();

  constructor(
    table: RoutingTable,
    private readonly picker: BackendPicker,
    private readonly options: FrontOptions,
    private readonly events: FrontEvents,
    private readonly logger: Logger,
  ) {
    this.table = table;
    this.limits = options.limits;
    const sockets = this.sockets;
    this.forgetSocket = function (this: Socket): void {
      sockets.delete(this);
    };
  }

  /** Ports actually bound (port 0 in the table is not used: fronts are fixed ports). */
  get ports(): number[] {
    return [...this.servers.keys()];
  }

  /** New caps for every front port (a reload changed the number of ports, hence each one's share). */
  setLimits(limits: ListenerLimits): void {
    this.limits = limits;
    for (const guard of this.guards.values()) guard.setLimits(limits);
  }

  /**
   * Listens on every port of the table and stops listening on ports no
   * longer in it. Connections already routed keep going either way.
   */
  async apply(table: RoutingTable): Promise<void> {
    this.table = table;
    for (const [port, servers] of this.servers) {
      if (!table.ports.has(port)) {
        for (const server of servers) server.close();
        this.servers.delete(port);
        this.guards.delete(port);
        this.logger.info({ port }, 'front port closed');
      }
    }
    for (const port of table.ports.keys()) {
      if (this.servers.has(port)) continue;
      const servers: Server[] = [];
      const guard = new ConnectionGuard('front', this.limits, (reason, socket) => this.events.limited(port, reason, peerOf(socket)));
      this.guards.set(port, guard);
      for (const address of this.options.addresses) {
        const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.onConnection(socket, port));
        guard.attach(server);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ port, host: address, ipv6Only: address.includes(':') }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        server.on('error', (err) => this.logger.error({ err, port, address }, 'front listener error'));
        servers.push(server);
      }
      this.servers.set(port, servers);
      this.logger.info({ port, kind: table.ports.get(port)!.kind, addresses: this.options.addresses }, 'front port open');
    }
  }

  close(): void {
    for (const servers of this.servers.values()) for (const server of servers) server.close();
    this.servers.clear();
    this.guards.clear();
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  private onConnection(socket: Socket, port: number): void {
    this.sockets.add(socket);
    socket.on('close', this.forgetSocket);
    // (Its 'error' listener is the guard's, which admitted it.)
    const front = this.table.ports.get(port);
    if (front === undefined) {
      socket.destroy();
      return;
    }
    const connection: Connection = { socket, port, id: ++connectionCounter, kind: front.kind, isConnect: false };
    if (front.kind === 'tcp' && front.fallback !== null) {
      // Nothing to read first: the port is the route.
      const route = front.fallback;
      const picked = this.picker.pick(route, socket.remoteAddress ?? '');
      if ('refusal' in picked) return this.refuse(connection, picked.refusal, picked.detail);
      socket.pause();
      this.tunnel(connection, route, picked.backend, EMPTY, null);
      return;
    }
    this.peek(connection);
  }

  /** Reads until the hello or request head names a route (or cannot), within the cap and timeout. */
  private peek(connection: Connection): void {
    const { socket, port } = connection;
    const table = this.table;
    let buffered: Buffer = EMPTY;
    const decide = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
    };
    const refuse = (reason: FrontRefusal, detail: string, reply?: Buffer | string): void => {
      decide();
      this.refuse(connection, reason, detail, reply);
    };
    const timer = setTimeout(() => refuse('timeout', `nothing routable within ${this.options.peekTimeoutMs} ms`), this.options.peekTimeoutMs);
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      let route: Route | null;
      let replay: Buffer = buffered;
      let backendPort: number | null = null;
      if (connection.kind === 'tls') {
        const hello = readClientHello(buffered);
        if (hello.kind === 'incomplete') return;
        if (hello.kind === 'invalid') return refuse('bad_hello', hello.reason);
        route = table.lookup(port, hello.serverName, false);
        // Without terminating TLS the client can still learn why: an unrecognized_name alert.
        if (route === null) return refuse('no_route', `no route for TLS server name ${hello.serverName ?? '(none)'}`, unrecognizedNameAlert(hello.version));
      } else {
        const head = readRequestHead(buffered);
        if (head.kind === 'incomplete') return;
        if (head.kind === 'invalid') return refuse('bad_request', head.reason);
        connection.isConnect = head.method === 'CONNECT';
        if (!connection.isConnect && table.ports.get(port)?.connectOnly === true) {
          const detail = `${head.method} on port ${port}, which expects CONNECT`;
          return refuse('not_connect', detail, connectExpected(head.method, head.target, head.host, socket, port));
        }
        route = table.lookup(port, head.host, connection.isConnect);
        if (route === null) return refuse('no_route', `no route for ${connection.isConnect ? 'CONNECT to' : 'Host'} ${head.host ?? '(none)'}`);
        if (connection.isConnect) {
          replay = buffered.subarray(head.headLength);
          backendPort = head.port;
          if (backendPort !== null && route.servicePorts.length > 0 && !route.servicePorts.includes(backendPort)) {
            return refuse('no_route', `${route.service} has no port ${backendPort} (its ports: ${route.servicePorts.join(', ')})`);
          }
        }
      }
      const picked = this.picker.pick(route, socket.remoteAddress ?? '');
      if ('refusal' in picked) return refuse(picked.refusal, picked.detail);
      decide();
      socket.pause();
      this.tunnel(connection, route, picked.backend, replay, backendPort);
    };
    const onEnd = (): void => refuse('bad_request', 'client closed before it could be routed');
    socket.on('data', onData);
    socket.on('end', onEnd);
  }

  /**
   * Logs and counts a refusal; HTTP clients get a status line, others a
   * closed connection, unless `reply` says what to send before closing.
   */
  private refuse(connection: Connection, reason: FrontRefusal, detail: string, reply?: Buffer | string): void {
    const { socket } = connection;
    this.events.refused(connection.port, reason, peerOf(socket), detail, connection.id.toString(36));
    const status = connection.kind === 'http' ? RESPONSES[reason] : undefined;
    if (reply !== undefined) {
      socket.end(reply);
      setTimeout(() => socket.destroy(), 1000).unref();
    } else if (status !== undefined && !(status.startsWith('503') && connection.isConnect)) {
      // (CONNECT clients get a closed connection when no backend can take them, like TLS ones.)
      socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${detail.length + 1}\r\n\r\n${detail}\n`);
      setTimeout(() => socket.destroy(), 1000).unref();
    } else {
      socket.destroy();
    }
  }

  private tunnel(connection: Connection, route: Route, backend: Backend, replay: Buffer, backendPort: number | null): void {
    const { socket } = connection;
    let stream: ClientHttp2Stream;
    try {
      // Every value but the client's port repeats from one connection to the next, so HPACK sends
      // each as a one-byte index after the first: the request is a few bytes more than the port.
      const headers: OutgoingHttpHeaders = {
        ':method': 'CONNECT',
        ':authority': this.authorityOf(route),
        [HEADER.endpoint]: route.endpoint.name,
        [HEADER.clientAddress]: socket.remoteAddress ?? '',
        [HEADER.clientPort]: String(socket.remotePort ?? 0),
        [HEADER.frontAddress]: socket.localAddress ?? '',
        [HEADER.frontPort]: String(socket.localPort ?? connection.port),
      };
      if (backendPort !== null) headers[HEADER.backendPort] = String(backendPort);
      stream = backend.session.request(headers, REQUEST_OPTIONS);
    } catch (err) {
      this.refuse(connection, 'tunnel_failed', `backend ${backend.id}: ${(err as Error).message}`);
      return;
    }
    backend.openStreams++;
    const tunnel = new Tunnel(this, connection, route, backend, connection.isConnect ? replay : EMPTY);
    (stream as TunnelStream)[TUNNEL] = tunnel;
    (stream as TunnelStream)[CUT] = cutTunnelStream;
    stream.on('close', onTunnelClose);
    stream.on('error', onTunnelError);
    stream.on('response', onTunnelResponse);
    stream.on('data', onTunnelFirstData);
    stream.on('end', onTunnelEnd);
    if (connection.isConnect) return;
    // No round trip before the first byte: what was read while routing, and whatever the client
    // sends next, leaves at once behind the request; the agent holds it (unread, within the stream's
    // flow-control window) until its backend connection is up. A refusal comes back as a reset.
    if (replay.length > 0) stream.write(replay);
    pipeBoth(socket, stream);
    socket.resume();
  }

  /** The CONNECT authority of a route (`service.<domain>:port`), made once per route, not per connection. */
  private authorityOf(route: Route): string {
    let authority = this.authorities.get(route);
    if (authority === undefined) {
      authority = `${serviceNames(this.options, route.service).fqdn}:${route.endpoint.port}`;
      this.authorities.set(route, authority);
    }
    return authority;
  }

  /** For the shared stream listeners below. */
  tunnelFailed(tunnel: Tunnel, detail: string): void {
    this.events.failed(tunnel.route, tunnel.backend);
    this.refuse(tunnel.connection, 'tunnel_failed', `backend ${tunnel.backend.id}: ${detail}`);
  }

  tunnelRouted(tunnel: Tunnel): void {
    this.events.routed(tunnel.route, tunnel.backend, peerOf(tunnel.connection.socket));
  }

  tunnelAnswered(tunnel: Tunnel): void {
    this.events.firstByte(tunnel.backend, (performance.now() - tunnel.opened) / 1000);
  }

  tunnelRefusedLate(tunnel: Tunnel): void {
    this.events.failed(tunnel.route, tunnel.backend);
  }
}

const EMPTY = Buffer.alloc(0);
const REQUEST_OPTIONS = { endStream: false } as const;

/**
 * 405 for a request other than CONNECT on a port with only CONNECT
 * endpoints (a browser, or curl without --proxytunnel): it says how to use
 * the port. HOST is what the client called the gateway when it sent a
 * direct (origin-form) request, else the address it connected to.
 */
function connectExpected(method: string, target: string, host: string | null, socket: Socket, port: number): string {
  const name = target.startsWith('/') && host !== null ? host : (socket.localAddress ?? 'GATEWAY');
  const gateway = name.includes(':') ? `[${name}]` : name;
  const body =
    `This port (${port}) is an HTTP CONNECT proxy port: it expects CONNECT, not ${method}.\n` +
    `Use it as a proxy that tunnels, e.g.:\n` +
    `  curl --proxytunnel -x http://${gateway}:${port} https://SERVICE.DOMAIN:PORT/\n`;
  return `HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

function peerOf(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
}

/** A client connection on a front port. */
interface Connection {
  readonly socket: Socket;
  readonly port: number;
  /** Numbers the connection in refusal logs. */
  readonly id: number;
  readonly kind: FrontPort['kind'];
  isConnect: boolean;
}

/**
 * A routed connection's state, kept on its HTTP/2 stream and read by the
 * shared listeners below (a gateway holds thousands of idle tunnels: no
 * closures per tunnel).
 */
class Tunnel {
  readonly opened = performance.now();
  /** Counted in the backend's open streams until the stream closes. */
  counted = true;
  responded = false;
  /** The backend sent its first byte. */
  answered = false;
  endedUnanswered = false;
  /** The client went away: the agent was asked to reset the stream (no failure of the backend's). */
  aborted = false;
  constructor(
    readonly front: FrontListeners,
    readonly connection: Connection,
    readonly route: Route,
    readonly backend: Backend,
    /** CONNECT only: bytes that came after the request head, sent once the agent answers. */
    public replay: Buffer,
  ) {}
}

const TUNNEL = Symbol('meshplane.front.tunnel');
type TunnelStream = ClientHttp2Stream & { [TUNNEL]: Tunnel; [CUT]: (stream: Duplex) => void };

function onTunnelError(this: TunnelStream, err: Error): void {
  const tunnel = this[TUNNEL];
  if (!tunnel.responded && !tunnel.aborted) tunnel.front.tunnelFailed(tunnel, err.message);
}

/**
 * How the pipe cuts a tunnel stream when its client went away (reset, or
 * closed while the stream could still deliver): the gateway does not reset
 * it but has the agent do so (tunnel-abort.ts), and discards whatever still
 * arrives until then. A stream that is closing anyway is just destroyed.
 */
function cutTunnelStream(duplex: Duplex): void {
  const stream = duplex as TunnelStream;
  if (stream.closed || stream.destroyed) {
    stream.destroy();
    return;
  }
  abortTunnel(stream);
}

function abortTunnel(stream: TunnelStream): void {
  const tunnel = stream[TUNNEL];
  if (tunnel.aborted) return;
  tunnel.aborted = true;
  stream.resume();
  abortTunnelStream(tunnel.backend.session, stream);
}

function onTunnelResponse(this: TunnelStream, headers: IncomingHttpHeaders): void {
  this.off('response', onTunnelResponse);
  const tunnel = this[TUNNEL];
  tunnel.responded = true;
  const status = Number(headers[':status']);
  if (status !== 200) {
    this.close();
    tunnel.front.tunnelFailed(tunnel, `answered ${status} (its local service refused the connection?)`);
    return;
  }
  tunnel.front.tunnelRouted(tunnel);
  const { socket, isConnect } = tunnel.connection;
  // Other fronts were piped when the stream opened (see tunnel()).
  if (!isConnect) return;
  // The client went away while the agent was answering: nothing to pipe, the backend connection goes too.
  if (socket.destroyed) {
    abortTunnel(this);
    return;
  }
  // A CONNECT client hears "established" only once its agent took the stream: it may still get a 502.
  socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
  if (tunnel.replay.length > 0) this.write(tunnel.replay);
  tunnel.replay = EMPTY;
  pipeBoth(socket, this);
  socket.resume();
}

function onTunnelFirstData(this: TunnelStream): void {
  this.off('data', onTunnelFirstData);
  const tunnel = this[TUNNEL];
  tunnel.answered = true;
  tunnel.front.tunnelAnswered(tunnel);
}

// The agent answers before dialling its backend, so a refusal there shows later: the stream is
// reset with CONNECT_ERROR, or (when its end overtakes the reset) ends with nothing sent back
// while the client still had its side open.
function onTunnelEnd(this: TunnelStream): void {
  this.off('end', onTunnelEnd);
  const tunnel = this[TUNNEL];
  tunnel.endedUnanswered = !tunnel.answered && !tunnel.connection.socket.readableEnded;
}

function onTunnelClose(this: TunnelStream): void {
  const tunnel = this[TUNNEL];
  if (tunnel.counted) tunnel.backend.openStreams--;
  tunnel.counted = false;
  if (!tunnel.aborted && tunnel.responded && !tunnel.answered && (this.rstCode === http2Constants.NGHTTP2_CONNECT_ERROR || tunnel.endedUnanswered)) tunnel.front.tunnelRefusedLate(tunnel);
}
