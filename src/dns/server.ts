/**
 * The DNS server: UDP and TCP listeners on each listen address, all feeding
 * one handler chain, declared in order in `respond()`:
 *
 *   parse -> protocol checks (opcode, EDNS version, class) -> view selection
 *   -> zone answer -> PTR of a known address -> forward (or REFUSED)
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
import type { QueryMetrics } from './metrics.js';
import { errorReply, isTransfer, zoneReply } from './reply.js';
import type { ReplyLimits } from './reply.js';
import { CLASS_ANY, CLASS_IN, CLASSIC_UDP_SIZE, RCODE, parseQuery } from './wire.js';
import { TcpSlots } from './tcp-slots.js';
import { sourceKey } from '../lib/ip.js';
import type { TcpSlot } from './tcp-slots.js';
import type { TcpCloseReason } from './metrics.js';
import { LogSampler } from '../lib/log-sampler.js';
import type { View } from './views.js';
import type { Zone } from './zone.js';

interface DnsServerOptions {
  readonly listen: readonly SocketAddress[];
  readonly forwarder: Forwarder | null;
  /** Largest UDP reply we send to EDNS askers (RFC 9715 advises 1232). */
  readonly udpSize?: number;
  /** No byte of a next query this long after the connection opened or the last answer: closed. */
  readonly tcpIdleTimeoutMs?: number;
  /** A query must be complete this long after its first byte (on a new connection: after opening), however it trickles. */
  readonly tcpQueryTimeoutMs?: number;
  /** Connections held at once; at the cap the oldest waiting one makes room (see tcp-slots.ts). */
  readonly tcpMaxConnections?: number;
  /** Connections held at once from one source address (IPv6: one /64). */
  readonly tcpMaxConnectionsPerSource?: number;
  readonly metrics?: QueryMetrics | null;
  readonly logger: Logger;
}

export const DEFAULT_UDP_SIZE = 1232;
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 10_000;
export const DEFAULT_TCP_QUERY_TIMEOUT_MS = 5_000;
export const DEFAULT_TCP_MAX_CONNECTIONS = 256;
export const DEFAULT_TCP_MAX_CONNECTIONS_PER_SOURCE = 64;
const TCP_MAX_MESSAGE = 65535;
/** Bytes a TCP client may have queued with us before we stop reading it. */
const TCP_MAX_BUFFERED = 4 * (TCP_MAX_MESSAGE + 2);

const MAX_FORWARDS_PER_CONNECTION = 64;

type Transport = 'udp' | 'tcp';

/** One TCP connection and where it stands against the limits. */
class TcpClient implements TcpSlot {
  /** Opening, or the last answer sent while nothing else was outstanding. */
  waitStart: number;
  /** When the bytes of the pending, incomplete query started counting (null: none pending). */
  partialStart: number | null = null;
  /** No query answered yet: the first one counts from the opening. */
  fresh = true;
  inFlight = 0;
  timer: NodeJS.Timeout | null = null;
  /** Out of the slots (and the gauge) already: closed by a limit, or gone. */
  released = false;

  constructor(
    readonly socket: TcpSocket,
    readonly source: string,
    readonly peer: string,
    now: number,
  ) {
    this.waitStart = now;
  }

  get busy(): boolean {
    return this.inFlight > 0;
  }
}

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
  private readonly tcpSlots: TcpSlots<TcpClient>;
  private readonly tcpIdleMs: number;
  private readonly tcpQueryMs: number;
  /** Limit hits and per-packet failures: logged a few at a time, counted in full in the metrics. */
  private readonly logSampler: LogSampler;
  private readonly bound: BoundAddress[] = [];
  private closed = false;

  constructor(zone: Zone, options: DnsServerOptions) {
    this.zone = zone;
    this.options = options;
    this.logSampler = new LogSampler(options.logger, { burst: 5, intervalMs: 10_000 });
    const udpSize = options.udpSize ?? DEFAULT_UDP_SIZE;
    const recursionAvailable = options.forwarder !== null;
    this.udpLimits = { maxSize: udpSize, ourUdpSize: udpSize, recursionAvailable };
    this.tcpLimits = { maxSize: TCP_MAX_MESSAGE, ourUdpSize: udpSize, recursionAvailable };
    this.classicUdpLimits = { maxSize: CLASSIC_UDP_SIZE, ourUdpSize: udpSize, recursionAvailable };
    this.tcpSlots = new TcpSlots(options.tcpMaxConnections ?? DEFAULT_TCP_MAX_CONNECTIONS, options.tcpMaxConnectionsPerSource ?? DEFAULT_TCP_MAX_CONNECTIONS_PER_SOURCE);
    this.tcpIdleMs = options.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS;
    this.tcpQueryMs = options.tcpQueryTimeoutMs ?? DEFAULT_TCP_QUERY_TIMEOUT_MS;
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
    this.logSampler.close();
    for (const socket of this.udpSockets) socket.close();
    for (const server of this.tcpServers) server.close();
    for (const client of [...this.tcpSlots.all()]) {
      this.releaseTcp(client);
      client.socket.destroy();
    }
  }

  /**
   * Answers one packet. Synchronous for the zone (the hot path); a promise
   * only when the name is forwarded. null means no reply at all.
   */
  respond(packet: Uint8Array, source: string, transport: Transport): Buffer | null | Promise<Buffer | null> {
    // Timed only for the latency histogram.
    const started = this.options.metrics ? performance.now() : 0;
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
    // PTR for the addresses the topology knows; other reverse names go on like any outside name.
    const reverse = zone.reverse(view, query.name, query.type);
    if (reverse !== null) {
      if (isTransfer(query.type)) return this.done(started, view, query.type, RCODE.REFUSED, errorReply(packet, query, RCODE.REFUSED, limits));
      return this.done(started, view, query.type, reverse.rcode, zoneReply(packet, query, reverse, limits));
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
    const metrics = this.options.metrics;
    if (metrics) metrics.query(view.label, type, rcode, (performance.now() - started) / 1000);
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
    const udp = createSocket({ type: isIPv6(entry.address) ? 'udp6' : 'udp4', ipv6Only: isIPv6(entry.address), recvBufferSize: 4 << 20, sendBufferSize: 1 << 20, lookup: literalLookup });
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
    // Failed sends surface here, once per reply (e.g. spoofed sources on an unreachable network): sampled.
    udp.on('error', (err) => this.logSampled('warn', 'udp-error', { err, address: entry.address, port }, 'UDP socket error'));

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
      // A bug must cost one query, never the server (nor the disk: sampled).
      this.logSampled('error', 'answer-failed', { err, peer: `${address}:${port}` }, 'failed to answer a query');
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
      (err: unknown) => this.logSampled('error', 'forward-failed', { err, peer: `${address}:${port}` }, 'failed to forward a query'),
    );
  }

  private onTcpConnection(socket: TcpSocket): void {
    const metrics = this.options.metrics ?? null;
    const address = socket.remoteAddress ?? '';
    const peer = `${address || '?'}:${socket.remotePort ?? 0}`;
    const source = sourceKey(address);
    const admission = this.tcpSlots.admit(source);
    socket.on('error', () => undefined); // resets by the client end the connection; nothing to report
    if (!admission.admit) {
      metrics?.tcpRefused();
      metrics?.tcpClosed('refused');
      this.logLimit('refused', peer, source);
      socket.destroy();
      return;
    }
    if (admission.evict !== null) this.closeTcp(admission.evict, admission.reason!);
    const client = new TcpClient(socket, source, peer, performance.now());
    this.tcpSlots.add(client);
    metrics?.tcpConnections(1);
    this.armTcp(client, client.waitStart);
    socket.on('close', () => this.releaseTcp(client));
    socket.on('end', () => socket.end());

    let buffered: Buffer = Buffer.alloc(0);
    const send = (reply: Buffer | null): void => {
      if (reply === null || socket.destroyed) return;
      const frame = Buffer.allocUnsafe(2 + reply.length);
      frame.writeUInt16BE(reply.length, 0);
      reply.copy(frame, 2);
      // RFC 7766 6.2.1.1: replies may go out in any order; pause reading while the client is slow to read.
      // The idle timer keeps running, so a client that never reads is closed like one that never writes.
      if (!socket.write(frame)) {
        socket.pause();
        socket.once('drain', () => {
          if (client.inFlight < MAX_FORWARDS_PER_CONNECTION) socket.resume();
        });
      }
    };
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      if (buffered.length > TCP_MAX_BUFFERED) {
        this.closeTcp(client, 'overflow');
        return;
      }
      const wasBusy = client.busy;
      let answered = 0;
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) break;
        const message = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        answered++;
        let reply: ReturnType<DnsServer['respond']>;
        try {
          reply = this.respond(message, address, 'tcp');
        } catch (err) {
          this.logSampled('error', 'answer-failed', { err, peer }, 'failed to answer a query');
          socket.destroy();
          return;
        }
        if (!(reply instanceof Promise)) {
          send(reply);
          continue;
        }
        client.inFlight++;
        reply
          .then(send, (err: unknown) => this.logSampled('error', 'forward-failed', { err, peer }, 'failed to forward a query'))
          .finally(() => {
            client.inFlight--;
            if (client.inFlight === 0 && !socket.destroyed) {
              // The answer went out: a new wait starts (also for a query begun meanwhile).
              const now = performance.now();
              client.waitStart = now;
              if (client.partialStart !== null) client.partialStart = now;
              this.armTcp(client, now);
            }
            if (client.inFlight <= MAX_FORWARDS_PER_CONNECTION / 2 && socket.isPaused() && !socket.writableNeedDrain) socket.resume();
          });
      }
      // Bound the forwarded queries one connection can have outstanding.
      if (client.inFlight >= MAX_FORWARDS_PER_CONNECTION) socket.pause();
      // The timer moves only when the state does: a trickled byte of a pending query never moves it.
      const now = performance.now();
      if (answered > 0) {
        client.fresh = false;
        client.waitStart = now;
        client.partialStart = buffered.length > 0 ? now : null;
        this.armTcp(client, now);
      } else if (client.partialStart === null && buffered.length > 0) {
        client.partialStart = client.fresh ? client.waitStart : now;
        this.armTcp(client, now);
      } else if (wasBusy !== client.busy) {
        this.armTcp(client, now);
      }
    });
  }

  /**
   * (Re)sets a connection's one timer: while a query is pending, its query
   * deadline; else the idle timeout (on a new connection at most the query
   * timeout: a fresh connection owes us a query). None while busy forwarding.
   */
  private armTcp(client: TcpClient, now: number): void {
    if (client.timer !== null) clearTimeout(client.timer);
    client.timer = null;
    if (client.busy || client.socket.destroyed) return;
    const pending = client.partialStart !== null;
    const due = pending ? client.partialStart! + this.tcpQueryMs : client.waitStart + (client.fresh ? Math.min(this.tcpIdleMs, this.tcpQueryMs) : this.tcpIdleMs);
    const reason: TcpCloseReason = pending ? 'query_timeout' : 'idle';
    client.timer = setTimeout(() => this.closeTcp(client, reason), Math.max(0, due - now));
    client.timer.unref();
  }

  /** Closes a connection because of a limit: destroyed at once, counted and (sampled) logged. */
  private closeTcp(client: TcpClient, reason: TcpCloseReason): void {
    this.releaseTcp(client);
    if (client.socket.destroyed) return;
    client.socket.destroy();
    this.options.metrics?.tcpClosed(reason);
    this.logLimit(reason, client.peer, client.source);
  }

  /** Frees the connection's slot at once (its 'close' event comes later), exactly once. */
  private releaseTcp(client: TcpClient): void {
    if (client.timer !== null) clearTimeout(client.timer);
    client.timer = null;
    if (client.released) return;
    client.released = true;
    this.tcpSlots.delete(client);
    this.options.metrics?.tcpConnections(-1);
  }

  private logLimit(reason: TcpCloseReason, peer: string, source: string): void {
    // Idle closes are the normal end of a kept-open connection; the rest are a client misbehaving or a flood.
    this.logSampled(reason === 'idle' ? 'debug' : 'warn', `tcp-${reason}`, { reason, peer, source, sourceConnections: this.tcpSlots.countOf(source), connections: this.tcpSlots.size }, 'DNS TCP connection closed by a limit');
  }

  private logSampled(level: 'debug' | 'warn' | 'error', key: string, fields: Record<string, unknown>, message: string): void {
    if (this.options.logger.isLevelEnabled(level)) this.logSampler.log(level, key, fields, message);
  }
}

/**
 * The socket's "DNS lookup" of an address that is always an IP literal (a listen address, or the
 * source a query came from): handed back at once. dgram's default (dns.lookup) checks it again and
 * calls back on the next tick, a closure and a deferred send for every reply.
 */
function literalLookup(address: string, family: unknown, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  // dgram passes the socket's family (4 or 6) and uses only the address it gets back.
  callback(null, address, family === 6 ? 6 : 4);
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
