/**
 * Names outside the mesh zone go to upstream resolvers (by default the ones
 * the host used before meshplane took over its resolv.conf). Queries are
 * relayed as they came, with a fresh ID on UDP; upstreams are tried in
 * order, each with a timeout; the first answer wins.
 */
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';

interface Upstream {
  readonly address: string;
  readonly port: number;
}

const DEFAULT_FORWARD_TIMEOUT_MS = 2000;

interface Pending {
  readonly upstream: Upstream;
  readonly resolve: (reply: Buffer | null) => void;
  readonly timer: NodeJS.Timeout;
}

export class Forwarder {
  readonly upstreams: readonly Upstream[];
  private readonly timeoutMs: number;
  private readonly sockets = new Map<4 | 6, UdpSocket>();
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  constructor(upstreams: readonly Upstream[], timeoutMs = DEFAULT_FORWARD_TIMEOUT_MS) {
    this.upstreams = upstreams;
    this.timeoutMs = timeoutMs;
  }

  async start(): Promise<void> {
    const families = new Set(this.upstreams.map((u) => (isIPv6(u.address) ? 6 : 4)));
    for (const family of families) {
      const socket = createSocket(family === 6 ? 'udp6' : 'udp4');
      socket.on('message', (message, rinfo) => this.onReply(message, rinfo.address, rinfo.port));
      socket.on('error', () => undefined); // ICMP errors surface as timeouts, per query
      // exclusive: in a cluster worker a plain bind(0) would share one socket among all workers, and
      // the upstream's replies would reach whichever worker reads first, not the one that asked.
      await new Promise<void>((resolve) => socket.bind({ port: 0, exclusive: true }, resolve));
      this.sockets.set(family, socket);
    }
  }

  /** The upstream's reply with the asker's ID, or null when every upstream failed. */
  async forwardUdp(packet: Uint8Array): Promise<Buffer | null> {
    for (const upstream of this.upstreams) {
      const reply = await this.askUdp(upstream, packet);
      if (reply !== null) return reply;
    }
    return null;
  }

  async forwardTcp(packet: Uint8Array): Promise<Buffer | null> {
    for (const upstream of this.upstreams) {
      const reply = await this.askTcp(upstream, packet);
      if (reply !== null) return reply;
    }
    return null;
  }

  close(): void {
    this.closed = true;
    for (const { timer, resolve } of this.pending.values()) {
      clearTimeout(timer);
      resolve(null);
    }
    this.pending.clear();
    for (const socket of this.sockets.values()) socket.close();
    this.sockets.clear();
  }

  private askUdp(upstream: Upstream, packet: Uint8Array): Promise<Buffer | null> {
    const socket = this.sockets.get(isIPv6(upstream.address) ? 6 : 4);
    if (socket === undefined || this.closed || this.pending.size >= 65536) return Promise.resolve(null);
    let id = randomInt(65536);
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    const originalId = (packet[0]! << 8) | packet[1]!;
    const query = Buffer.from(packet);
    query.writeUInt16BE(id, 0);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(null);
      }, this.timeoutMs);
      this.pending.set(id, {
        upstream,
        timer,
        resolve: (reply) => {
          if (reply !== null) reply.writeUInt16BE(originalId, 0);
          resolve(reply);
        },
      });
      socket.send(query, upstream.port, upstream.address);
    });
  }

  private onReply(message: Buffer, address: string, port: number): void {
    if (message.length < 12) return;
    const id = message.readUInt16BE(0);
    const pending = this.pending.get(id);
    // Only the upstream we asked may answer: anything else could be spoofed.
    if (pending === undefined || pending.upstream.address !== address || pending.upstream.port !== port) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(message);
  }

  private askTcp(upstream: Upstream, packet: Uint8Array): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const socket = connect({ host: upstream.address, port: upstream.port });
      const chunks: Buffer[] = [];
      let received = 0;
      const finish = (reply: Buffer | null): void => {
        socket.destroy();
        resolve(reply);
      };
      socket.setTimeout(this.timeoutMs, () => finish(null));
      socket.on('error', () => finish(null));
      socket.on('end', () => finish(null));
      socket.on('connect', () => {
        const length = Buffer.alloc(2);
        length.writeUInt16BE(packet.length, 0);
        socket.write(Buffer.concat([length, packet]));
      });
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (received < 2) return;
        const all = Buffer.concat(chunks);
        const length = all.readUInt16BE(0);
        if (all.length >= 2 + length) finish(all.subarray(2, 2 + length));
      });
    });
  }
}
