/**
 * The DNS server: UDP and TCP listeners on each listen address, all feeding
 * one handler chain, declared in order in `respond()`:
 *
 *   parse -> protocol checks (opcode, EDNS version, class) -> view selection
 *   -> zone answer -> forward (or REFUSED)
 *
 * The zone is swapped whole on reload, so a query is answered entirely from
 * the old zone or entirely from the new one, and sockets never close.
 */
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { createServer } from 'node:net';
import type { Server as TcpServer, Socket as TcpSocket } from 'node:net';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import { MeshplaneError } from '../errors.js';
import type { Forwarder } from './forwarder.js';
import type { SocketAddress } from './listen.js';
import type { DnsMetrics } from './metrics.js';
import { errorReply, isTransfer, zoneReply } from './reply.js';
import type { ReplyLimits } from './reply.js';
import { CLASS_ANY, CLASS_IN, CLASSIC_UDP_SIZE, RCODE, parseQuery } from './wire.js';
import type { View } from './views.js';
import type { Zone } from './zone.js';

export interface DnsServerOptions {
  readonly listen: readonly SocketAddress[];
  readonly forwarder: Forwarder | null;
  /** Largest UDP reply we send to EDNS askers (RFC 9715 advises 1232). */
  readonly udpSize?: number;
  readonly tcpIdleTimeoutMs?: number;
  readonly tcpMaxConnections?: number;
  readonly metrics?: DnsMetrics | null;
  readonly logger: Logger;
}

export const DEFAULT_UDP_SIZE = 1232;
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 10_000;
export const DEFAULT_TCP_MAX_CONNECTIONS = 256;
const TCP_MAX_MESSAGE = 65535;
/** Bytes a TCP client may have queued with us before we stop reading it. */
const TCP_MAX_BUFFERED = 4 * (TCP_MAX_MESSAGE + 2);

const MAX_FORWARDS_PER_CONNECTION = 64;

type Transport = 'udp' | 'tcp';

export interface BoundAddress extends SocketAddress {
  readonly transport: Transport;
}

export class DnsServer {
  private zone: Zone;
  private readonly options: DnsServerOptions;
  private readonly udpLimits: ReplyLimits;
  private readonly tcpLimits: ReplyLimits;
  private readonly classicUdpLimits: ReplyLimits;
  private readonly udpSockets: UdpSocket[] = [];
  private readonly tcpServers: TcpServer[] = [];
  private readonly tcpClients = new Set<TcpSocket>();
  private readonly bound: BoundAddress[] = [];
  private closed = false;

  constructor(zone: Zone, options: DnsServerOptions) {
    this.zone = zone;
    this.options = options;
    const udpSize = options.udpSize ?? DEFAULT_UDP_SIZE;
    const recursionAvailable = options.forwarder !== null;
    this.udpLimits = { maxSize: udpSize, ourUdpSize: udpSize, recursionAvailable };
    this.tcpLimits = { maxSize: TCP_MAX_MESSAGE, ourUdpSize: udpSize, recursionAvailable };
    this.classicUdpLimits = { maxSize: CLASSIC_UDP_SIZE, ourUdpSize: udpSize, recursionAvailable };
  }

  get addresses(): readonly BoundAddress[] {
    return this.bound;
  }

  /** Serve a new zone from the next query on. */
  setZone(zone: Zone): void {
    this.zone = zone;
  }

  async start(): Promise<void> {
    try {
      for (const entry of this.options.listen) await this.listenOn(entry);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** Idempotent; safe after a half-finished start. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const socket of this.udpSockets) socket.close();
    for (const server of this.tcpServers) server.close();
    for (const client of this.tcpClients) client.destroy();
    this.tcpClients.clear();
  }

  /**
   * Answers one packet. Synchronous for the zone (the hot path); a promise
   * only when the name is forwarded. null means no reply at all.
   */
  respond(packet: Uint8Array, source: string, transport: Transport): Buffer | null | Promise<Buffer | null> {
    const started = performance.now();
    const zone = this.zone;
    const parsed = parseQuery(packet);
    if (parsed.kind === 'drop') return null;
    const view = zone.views.select(source);
    const limitsFor = transport === 'udp' ? this.udpLimits : this.tcpLimits;
    if (parsed.kind === 'formerr') return this.done(started, view, 0, RCODE.FORMERR, errorReply(packet, parsed, RCODE.FORMERR, limitsFor));
    if (parsed.kind === 'notimp') return this.done(started, view, 0, RCODE.NOTIMP, errorReply(packet, parsed, RCODE.NOTIMP, limitsFor));
    const query = parsed;
    if (query.edns !== null && query.edns.version > 0) return this.done(started, view, query.type, RCODE.BADVERS, errorReply(packet, query, RCODE.BADVERS, limitsFor));

    let limits = limitsFor;
    if (transport === 'udp') {
      const maxSize = query.edns === null ? CLASSIC_UDP_SIZE : Math.min(query.edns.udpSize, this.udpLimits.ourUdpSize);
      if (maxSize !== limits.maxSize) limits = maxSize === CLASSIC_UDP_SIZE ? this.classicUdpLimits : { ...limits, maxSize };
    }
    if (query.qclass !== CLASS_IN && query.qclass !== CLASS_ANY) return this.done(started, view, query.type, RCODE.REFUSED, errorReply(packet, query, RCODE.REFUSED, limits));

    if (zone.contains(query.name)) {
      if (isTransfer(query.type)) return this.done(started, view, query.type, RCODE.REFUSED, errorReply(packet, query, RCODE.REFUSED, limits));
      const answer = zone.answer(view, query.name, query.type);
      return this.done(started, view, query.type, answer.rcode, zoneReply(packet, query, answer, limits));
    }

    const forwarder = this.options.forwarder;
    if (forwarder === null) return this.done(started, view, query.type, RCODE.REFUSED, errorReply(packet, query, RCODE.REFUSED, limits));
    const forwarded = transport === 'udp' ? forwarder.forwardUdp(packet) : forwarder.forwardTcp(packet);
    return forwarded.then((reply) => {
      this.options.metrics?.forwarded(reply === null ? 'failed' : 'answered');
      if (reply === null) return this.done(started, view, query.type, RCODE.SERVFAIL, errorReply(packet, query, RCODE.SERVFAIL, limits));
      return this.done(started, view, query.type, reply.length >= 4 ? reply[3]! & 0xf : RCODE.SERVFAIL, reply);
    });
  }

  /** Counts the query and hands its reply back. */
  private done(started: number, view: View, type: number, rcode: number, reply: Buffer): Buffer {
    this.options.metrics?.query(view.label, type, rcode, (performance.now() - started) / 1000);
    return reply;
  }

  private async listenOn(entry: SocketAddress): Promise<void> {
    // With port 0 the kernel picks a free UDP port, but that port may be taken for TCP: try again.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.listenOnce(entry);
        return;
      } catch (err) {
        const retry = entry.port === 0 && attempt < 10 && (err as MeshplaneError).message.includes('EADDRINUSE');
        if (!retry) throw err;
      }
    }
  }

  private async listenOnce(entry: SocketAddress): Promise<void> {
    // UDP first: with port 0 the kernel picks a port, and TCP then takes the same one.
    // Large buffers ride out GC pauses at high rates (the kernel caps them at net.core.rmem_max/wmem_max).
    const udp = createSocket({ type: isIPv6(entry.address) ? 'udp6' : 'udp4', ipv6Only: isIPv6(entry.address), recvBufferSize: 4 << 20, sendBufferSize: 1 << 20 });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(entry.port, entry.address, () => {
        udp.off('error', reject);
        resolve();
      });
    }).catch((err: NodeJS.ErrnoException) => {
      udp.close();
      throw listenError('udp', entry, err);
    });
    this.udpSockets.push(udp);
    const port = udp.address().port;
    udp.on('message', (message, rinfo) => this.onUdp(udp, message, rinfo.address, rinfo.port));
    udp.on('error', (err) => this.options.logger.warn({ err, address: entry.address, port }, 'UDP socket error'));

    const tcp = createServer({ noDelay: true }, (socket) => this.onTcpConnection(socket));
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host: entry.address, port, ipv6Only: isIPv6(entry.address), backlog: 511 }, () => {
        tcp.off('error', reject);
        resolve();
      });
    }).catch((err: NodeJS.ErrnoException) => {
      udp.close();
      this.udpSockets.splice(this.udpSockets.indexOf(udp), 1);
      throw listenError('tcp', { address: entry.address, port }, err);
    });
    this.tcpServers.push(tcp);
    tcp.on('error', (err) => this.options.logger.warn({ err, address: entry.address, port }, 'TCP listener error'));
    this.bound.push({ address: entry.address, port, transport: 'udp' }, { address: entry.address, port, transport: 'tcp' });
  }

  private onUdp(socket: UdpSocket, message: Buffer, address: string, port: number): void {
    let reply: ReturnType<DnsServer['respond']>;
    try {
      reply = this.respond(message, address, 'udp');
    } catch (err) {
      // A bug must cost one query, never the server.
      this.options.logger.error({ err, peer: `${address}:${port}` }, 'failed to answer a query');
      return;
    }
    if (reply === null) return;
    if (!(reply instanceof Promise)) {
      socket.send(reply, port, address);
      return;
    }
    reply.then(
      (r) => {
        if (r !== null && !this.closed) socket.send(r, port, address);
      },
      (err: unknown) => this.options.logger.error({ err, peer: `${address}:${port}` }, 'failed to forward a query'),
    );
  }

  private onTcpConnection(socket: TcpSocket): void {
    const metrics = this.options.metrics ?? null;
    if (this.tcpClients.size >= (this.options.tcpMaxConnections ?? DEFAULT_TCP_MAX_CONNECTIONS)) {
      metrics?.tcpRefused();
      socket.destroy();
      return;
    }
    this.tcpClients.add(socket);
    metrics?.tcpConnections(1);
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    const source = socket.remoteAddress ?? '';
    socket.setTimeout(this.options.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.on('error', () => undefined); // resets by the client end the connection; nothing to report
    socket.on('close', () => {
      this.tcpClients.delete(socket);
      metrics?.tcpConnections(-1);
    });
    socket.on('end', () => socket.end());

    let buffered: Buffer = Buffer.alloc(0);
    let inFlight = 0;
    const send = (reply: Buffer | null): void => {
      if (reply === null || socket.destroyed) return;
      const frame = Buffer.allocUnsafe(2 + reply.length);
      frame.writeUInt16BE(reply.length, 0);
      reply.copy(frame, 2);
      // RFC 7766 6.2.1.1: replies may go out in any order; pause reading while the client is slow to read.
      if (!socket.write(frame)) {
        socket.pause();
        socket.once('drain', () => {
          if (inFlight < MAX_FORWARDS_PER_CONNECTION) socket.resume();
        });
      }
    };
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      if (buffered.length > TCP_MAX_BUFFERED) {
        socket.destroy();
        return;
      }
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) break;
        const message = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        let reply: ReturnType<DnsServer['respond']>;
        try {
          reply = this.respond(message, source, 'tcp');
        } catch (err) {
          this.options.logger.error({ err, peer }, 'failed to answer a query');
          socket.destroy();
          return;
        }
        if (!(reply instanceof Promise)) {
          send(reply);
          continue;
        }
        inFlight++;
        reply
          .then(send, (err: unknown) => this.options.logger.error({ err, peer }, 'failed to forward a query'))
          .finally(() => {
            inFlight--;
            if (inFlight <= MAX_FORWARDS_PER_CONNECTION / 2 && socket.isPaused() && !socket.writableNeedDrain) socket.resume();
          });
      }
      // Bound the forwarded queries one connection can have outstanding.
      if (inFlight >= MAX_FORWARDS_PER_CONNECTION) socket.pause();
    });
  }
}

function listenError(transport: Transport, entry: SocketAddress, err: NodeJS.ErrnoException): MeshplaneError {
  const where = `${entry.address.includes(':') ? `[${entry.address}]` : entry.address}:${entry.port}`;
  const hint =
    err.code === 'EACCES'
      ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)'
      : err.code === 'EADDRINUSE'
        ? ' (another DNS server, e.g. systemd-resolved or dnsmasq, already listens there)'
        : err.code === 'EADDRNOTAVAIL'
          ? ' (no interface on this machine has that address)'
          : '';
  return new MeshplaneError('DNS_ERR_LISTEN', `cannot listen on ${transport} ${where}: ${err.code ?? err.message}${hint}`, { cause: err });
}
