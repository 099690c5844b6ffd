/**
 * Front listeners: where clients connect. Each connection is held until it
 * can be routed (TLS SNI, or an HTTP request head: Host, or CONNECT's
 * authority), within a size cap and a timeout; then it becomes one HTTP/2
 * CONNECT stream to a backend's agent, and the bytes read so far are
 * replayed into it (all of them for TLS and plain HTTP; those after the
 * head for CONNECT, whose client gets "200 Connection established").
 */
import { constants as http2Constants } from 'node:http2';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import { HEADER, pipeBoth } from '../lib/tunnel-io.js';
import { readClientHello } from './client-hello.js';
import { readRequestHead } from './http-head.js';
import type { BackendPicker } from './balance.js';
import type { Backend } from './registry.js';
import type { Route, RoutingTable } from './routes.js';

export type FrontRefusal = 'timeout' | 'bad_hello' | 'bad_request' | 'no_route' | 'no_backend' | 'no_healthy_backend' | 'backends_full' | 'tunnel_failed';

export interface FrontEvents {
  routed(route: Route, backend: Backend, peer: string): void;
  /** `connection` is the client connection's id (in logs). */
  refused(port: number, reason: FrontRefusal, peer: string, detail: string, connection: string): void;
  /** The backend's agent could not carry the connection, or its backend refused it (for outlier ejection). */
  failed(route: Route, backend: Backend): void;
  /** The backend's first byte back: it took the connection. */
  firstByte(backend: Backend, seconds: number): void;
}

export interface FrontOptions {
  /** Addresses every front port listens on (default 0.0.0.0 and ::). */
  readonly addresses: readonly string[];
  /** How long a client may take to send its hello or request head. */
  readonly peekTimeoutMs: number;
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
  private readonly sockets = new Set<Socket>();
  private table: RoutingTable;

  constructor(
    table: RoutingTable,
    private readonly picker: BackendPicker,
    private readonly options: FrontOptions,
    private readonly events: FrontEvents,
    private readonly logger: Logger,
  ) {
    this.table = table;
  }

  /** Ports actually bound (port 0 in the table is not used: fronts are fixed ports). */
  get ports(): number[] {
    return [...this.servers.keys()];
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
        this.logger.info({ port }, 'front port closed');
      }
    }
    for (const port of table.ports.keys()) {
      if (this.servers.has(port)) continue;
      const servers: Server[] = [];
      for (const address of this.options.addresses) {
        const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.onConnection(socket, port));
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
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  private onConnection(socket: Socket, port: number): void {
    const id = (++connectionCounter).toString(36);
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const front = this.table.ports.get(port);
    if (front === undefined) {
      socket.destroy();
      return;
    }
    const table = this.table;
    let buffered: Buffer = Buffer.alloc(0);
    let decided = false;
    const refuse = (reason: FrontRefusal, detail: string): void => {
      decided = true;
      clearTimeout(timer);
      socket.off('data', onData);
      this.events.refused(port, reason, peer, detail, id);
      const status = front.kind === 'http' ? RESPONSES[reason] : undefined;
      // CONNECT clients get a closed connection when no backend can take them, like TLS ones.
      if (status !== undefined && !(status.startsWith('503') && isConnect)) {
        socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${detail.length + 1}\r\n\r\n${detail}\n`);
        setTimeout(() => socket.destroy(), 1000).unref();
      } else {
        socket.destroy();
      }
    };
    let isConnect = false;
    let backendPort: number | null = null;
    if (front.kind === 'tcp' && front.fallback !== null) {
      // Nothing to read first: the port is the route.
      const route = front.fallback;
      const picked = this.picker.pick(route, socket.remoteAddress ?? '');
      decided = true;
      if ('refusal' in picked) {
        this.events.refused(port, picked.refusal, peer, picked.detail, id);
        socket.destroy();
        return;
      }
      const backend = picked.backend;
      socket.pause();
      this.tunnel(socket, peer, port, route, backend, Buffer.alloc(0), false, null, (reason, detail) => {
        this.events.refused(port, reason, peer, detail, id);
        socket.destroy();
      });
      return;
    }
    const timer = setTimeout(() => refuse('timeout', `nothing routable within ${this.options.peekTimeoutMs} ms`), this.options.peekTimeoutMs);
    const onData = (chunk: Buffer): void => {
      if (decided) return;
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      let route: Route | null;
      let replay: Buffer = buffered;
      if (front.kind === 'tls') {
        const hello = readClientHello(buffered);
        if (hello.kind === 'incomplete') return;
        if (hello.kind === 'invalid') return refuse('bad_hello', hello.reason);
        route = table.lookup(port, hello.serverName, false);
        if (route === null) return refuse('no_route', `no route for TLS server name ${hello.serverName ?? '(none)'}`);
      } else {
        const head = readRequestHead(buffered);
        if (head.kind === 'incomplete') return;
        if (head.kind === 'invalid') return refuse('bad_request', head.reason);
        isConnect = head.method === 'CONNECT';
        route = table.lookup(port, head.host, isConnect);
        if (route === null) return refuse('no_route', `no route for ${isConnect ? 'CONNECT to' : 'Host'} ${head.host ?? '(none)'}`);
        if (isConnect) {
          replay = buffered.subarray(head.headLength);
          backendPort = head.port;
          if (backendPort !== null && route.servicePorts.length > 0 && !route.servicePorts.includes(backendPort)) {
            return refuse('no_route', `${route.service} has no port ${backendPort} (its ports: ${route.servicePorts.join(', ')})`);
          }
        }
      }
      const picked = this.picker.pick(route, socket.remoteAddress ?? '');
      if ('refusal' in picked) return refuse(picked.refusal, picked.detail);
      const backend = picked.backend;
      decided = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      this.tunnel(socket, peer, port, route, backend, replay, isConnect, backendPort, refuse);
    };
    socket.on('data', onData);
    socket.on('end', () => {
      if (!decided) refuse('bad_request', 'client closed before it could be routed');
    });
  }

  private tunnel(socket: Socket, peer: string, port: number, route: Route, backend: Backend, replay: Buffer, isConnect: boolean, backendPort: number | null, refuse: (reason: FrontRefusal, detail: string) => void): void {
    let stream;
    try {
      stream = backend.session.request(
        {
          ':method': 'CONNECT',
          ':authority': `${route.service}.${this.options.domain}:${route.endpoint.port}`,
          ...(backendPort === null ? {} : { [HEADER.backendPort]: String(backendPort) }),
          [HEADER.endpoint]: route.endpoint.name,
          [HEADER.clientAddress]: socket.remoteAddress ?? '',
          [HEADER.clientPort]: String(socket.remotePort ?? 0),
          [HEADER.frontAddress]: socket.localAddress ?? '',
          [HEADER.frontPort]: String(socket.localPort ?? port),
        },
        { endStream: false },
      );
    } catch (err) {
      refuse('tunnel_failed', `backend ${backend.id}: ${(err as Error).message}`);
      return;
    }
    backend.openStreams++;
    let counted = true;
    const release = (): void => {
      if (counted) backend.openStreams--;
      counted = false;
    };
    stream.on('close', release);
    const opened = performance.now();
    // Send what was read while routing right away, with the request: the agent answers before its
    // backend connection is up, so neither waits for the other.
    if (!isConnect && replay.length > 0) stream.write(replay);
    let responded = false;
    stream.on('error', (err: Error) => {
      if (responded) return;
      this.events.failed(route, backend);
      refuse('tunnel_failed', `backend ${backend.id}: ${err.message}`);
    });
    stream.once('response', (headers) => {
      responded = true;
      const status = Number(headers[':status']);
      if (status !== 200) {
        stream.close();
        this.events.failed(route, backend);
        refuse('tunnel_failed', `backend ${backend.id} answered ${status} (its local service refused the connection?)`);
        return;
      }
      this.events.routed(route, backend, peer);
      if (isConnect) {
        socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
        if (replay.length > 0) stream.write(replay);
      }
      let answered = false;
      stream.once('data', () => {
        answered = true;
        this.events.firstByte(backend, (performance.now() - opened) / 1000);
      });
      // The agent answers before dialling its backend, so a refusal there shows later: the stream is
      // reset with CONNECT_ERROR, or (when its end overtakes the reset) ends with nothing sent back
      // while the client still had its side open.
      let endedUnanswered = false;
      stream.once('end', () => (endedUnanswered = !answered && !socket.readableEnded));
      stream.once('close', () => {
        if (!answered && (stream.rstCode === http2Constants.NGHTTP2_CONNECT_ERROR || endedUnanswered)) this.events.failed(route, backend);
      });
      pipeBoth(socket, stream);
      socket.resume();
    });
  }
}
