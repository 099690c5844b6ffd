/**
 * Limits on everything a stranger can connect to (front ports, the
 * registration port, the admin port), like haproxy's maxconn: a
 * ConnectionGuard per listener counts its open connections, in total and
 * per source address, closes new ones at once (RST) when either is at its
 * cap, and closes a connection that has not finished its handshake by an
 * absolute deadline (not an idle timeout that every byte resets). Caps
 * come from a descriptor budget: the process's RLIMIT_NOFILE split so that
 * a flood on one listener cannot take the descriptors the others (and the
 * tunnels, logs and metrics) need.
 */
import { readFileSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { sourceKey } from '../lib/ip.js';

export type LimitReason = 'listener_full' | 'source_full' | 'handshake_timeout';

export interface ListenerLimits {
  /** Open connections on the listener (all its addresses together). */
  readonly maxConnections: number;
  /** Open connections from one source: an IPv4 address, or an IPv6 /64. */
  readonly maxPerSource: number;
  /** Absolute time from accept to `finished()` (the TLS handshake); null for none. */
  readonly deadlineMs: number | null;
}

const ignore = (): void => undefined;

/** The source a per-source cap counts: IPv4 (also IPv4-mapped IPv6) by address, IPv6 by /64 (one host's usual allocation). */

export class ConnectionGuard {
  private readonly sockets = new Set<Socket>();
  private readonly perSource = new Map<string, number>();
  private readonly deadlines = new Map<Socket, NodeJS.Timeout>();
  private readonly expiredSockets = new WeakSet<Socket>();

  constructor(
    /** Names the listener in metrics and logs: "front", "registration", "admin". */
    readonly listener: string,
    private limits: ListenerLimits,
    private readonly onLimited: (reason: LimitReason, socket: Socket) => void,
  ) {}

  get open(): number {
    return this.sockets.size;
  }

  get current(): ListenerLimits {
    return this.limits;
  }

  /** New caps for new connections (a reload); open ones over a lower cap stay. */
  setLimits(limits: ListenerLimits): void {
    this.limits = limits;
  }

  /** Counts a new connection, or closes it at once (RST) and says why; true when admitted. */
  admit(socket: Socket): boolean {
    socket.on('error', ignore);
    const source = sourceKey(socket.remoteAddress ?? '?');
    const fromSource = this.perSource.get(source) ?? 0;
    const refusal: LimitReason | null = this.sockets.size >= this.limits.maxConnections ? 'listener_full' : fromSource >= this.limits.maxPerSource ? 'source_full' : null;
    if (refusal !== null) {
      this.onLimited(refusal, socket);
      socket.resetAndDestroy();
      return false;
    }
    this.sockets.add(socket);
    this.perSource.set(source, fromSource + 1);
    // One shared listener that finds its guard and source on the socket: no closure per connection.
    (socket as GuardedSocket)[GUARDED] = { guard: this, source };
    socket.once('close', onGuardedClose);
    if (this.limits.deadlineMs !== null) {
      const timer = setTimeout(() => {
        this.deadlines.delete(socket);
        this.expiredSockets.add(socket);
        this.onLimited('handshake_timeout', socket);
        socket.destroy();
      }, this.limits.deadlineMs);
      timer.unref();
      this.deadlines.set(socket, timer);
    }
    return true;
  }

  /** @internal a counted connection closed */
  forget(socket: Socket, source: string): void {
    this.sockets.delete(socket);
    this.finished(socket);
    const left = (this.perSource.get(source) ?? 1) - 1;
    if (left > 0) this.perSource.set(source, left);
    else this.perSource.delete(source);
  }

  /** The connection finished its handshake: its deadline no longer applies. */
  finished(socket: Socket): void {
    const timer = this.deadlines.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.deadlines.delete(socket);
  }

  /** Did this guard close the connection at its deadline? */
  expired(socket: Socket): boolean {
    return this.expiredSockets.has(socket);
  }

  /** Closes every connection it counts (shutdown). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /**
   * Puts the guard in front of a server (net, TLS, HTTP or HTTPS): its own
   * 'connection' listeners (the TLS wrapper, the HTTP parser) then only see
   * admitted connections; refused ones never cost a TLS or HTTP object.
   */
  attach(server: Server): void {
    const inner = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (!this.admit(socket)) return;
      for (const listener of inner) listener.call(server, socket);
    });
  }
}

const GUARDED = Symbol('meshplane.limits.guarded');
type GuardedSocket = Socket & { [GUARDED]?: { readonly guard: ConnectionGuard; readonly source: string } };

function onGuardedClose(this: GuardedSocket): void {
  const counted = this[GUARDED];
  if (counted !== undefined) counted.guard.forget(this, counted.source);
}

/** The TCP socket under a server-side TLS socket (what a guard counts). */
export function rawSocket(socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket })._parent ?? socket;
}

/** The process's open-file limit (soft; Node raises it to the hard limit at start), from /proc; null where there is none. */
export function openFileLimit(text?: string): number | null {
  let limits = text;
  if (limits === undefined) {
    try {
      limits = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return null;
    }
  }
  const match = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits);
  if (match === null) return null;
  return match[1] === 'unlimited' ? null : Number(match[1]);
}

/** Limits an operator set (CLI flags); anything absent comes from the descriptor budget. */
export interface LimitSettings {
  /** Per front port (all its addresses together). */
  readonly maxConnections?: number;
  readonly maxAgentConnections?: number;
  readonly maxAdminConnections?: number;
  /** Per source, on each listener (at most that listener's cap). */
  readonly maxConnectionsPerSource?: number;
  /** TLS handshake deadline on the registration and admin ports. */
  readonly handshakeTimeoutMs?: number;
}

export interface ConnectionBudget {
  /** RLIMIT_NOFILE (null: unknown, fixed defaults). */
  readonly openFiles: number | null;
  /** Descriptors left for everything else: tunnels' sessions count against the registration cap, so this is logs, metrics, DNS, the process itself. */
  readonly reserve: number;
  readonly front: number;
  readonly registration: number;
  readonly admin: number;
}

const UNKNOWN_LIMIT = 65_536;

/**
 * Splits the descriptor limit: an eighth (at least 64) is kept back, the
 * admin port gets a sixteenth of the rest (at most 64), the registration
 * port a quarter, and the front ports share what remains equally. Explicit
 * settings replace their share (and are not checked against the limit:
 * the operator's call).
 */
export function connectionBudget(openFiles: number | null, frontPorts: number, settings: LimitSettings = {}): ConnectionBudget {
  const total = openFiles ?? UNKNOWN_LIMIT;
  const reserve = Math.max(64, Math.floor(total / 8));
  const usable = Math.max(0, total - reserve);
  const admin = settings.maxAdminConnections ?? Math.max(4, Math.min(64, Math.floor(usable / 16)));
  const registration = settings.maxAgentConnections ?? Math.max(16, Math.floor(usable / 4));
  const front = settings.maxConnections ?? Math.max(16, Math.floor(Math.max(0, usable - admin - registration) / Math.max(1, frontPorts)));
  return { openFiles, reserve, front, registration, admin };
}

/** One source's cap on a listener: the setting (at most the listener's cap), else a tenth of the listener's cap, at least 8. */
export function perSourceCap(listenerCap: number, settings: LimitSettings): number {
  return Math.min(listenerCap, settings.maxConnectionsPerSource ?? Math.max(8, Math.floor(listenerCap / 10)));
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_ADMIN_REQUEST_TIMEOUT_MS = 10_000;
