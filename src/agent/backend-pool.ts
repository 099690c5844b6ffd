/**
 * Backend connections made before they are needed (agent option
 * `backendPool`, off by default): up to `size` connected, unused sockets
 * per backend address, so a new tunnelled connection skips the connect.
 *
 * A pool fills only after its backend was used (a take), and refills off
 * the hot path (setImmediate after each take). A socket unused for
 * `idleMs` is closed and not replaced until the next take, so an idle
 * service holds nothing. A pooled socket the backend closed is dropped,
 * never handed out; one that received anything (a backend that speaks
 * first) is dropped and that backend is not pooled any more. The PROXY header is
 * written by the caller when the socket is handed to a stream, so the
 * backend still sees the real client.
 */
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import type { Address } from './agent.js';

const DEFAULT_POOL_IDLE_MS = 5000;

/** One pooled socket and when it was made. */
interface Pooled {
  readonly socket: Socket;
  readonly since: number;
}

class Slots {
  readonly ready: Pooled[] = [];
  connecting = 0;
  refillScheduled = false;
  /** The backend sent bytes on a pooled connection before any client did: it is not pooled. */
  speaksFirst = false;
  constructor(
    readonly pool: BackendPool,
    readonly address: Address,
  ) {}
}

/** Marks a pooled socket's state, for the shared listeners (no closures per pooled socket). */
const SLOTS = Symbol('meshplane.agent.pool.slots');
type PoolSocket = Socket & { [SLOTS]?: Slots | null };

export class BackendPool {
  private readonly pools = new Map<string, Slots>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(
    /** Sockets kept ready per backend address. */
    private readonly size: number,
    private readonly idleMs: number = DEFAULT_POOL_IDLE_MS,
  ) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.floor(idleMs / 2)));
    this.sweeper.unref();
  }

  /** A connected socket to `address`, or null (none ready: connect as usual). Schedules a refill either way. */
  take(address: Address): Socket | null {
    if (this.closed) return null;
    const key = `${address.address}:${address.port}`;
    let slots = this.pools.get(key);
    if (slots === undefined) {
      slots = new Slots(this, address);
      this.pools.set(key, slots);
    }
    let found: Socket | null = null;
    while (found === null && slots.ready.length > 0) {
      // Newest first: the least likely to have met a backend's idle timeout.
      const { socket } = slots.ready.pop()!;
      if (usable(socket)) found = socket;
      else socket.destroy();
    }
    if (found !== null) release(found);
    this.scheduleRefill(slots);
    return found;
  }

  /** Closes every pooled socket; takes return null from now on. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const slots of this.pools.values()) for (const { socket } of slots.ready.splice(0)) socket.destroy();
    this.pools.clear();
  }

  /** Pooled sockets ready now (for tests). */
  get ready(): number {
    let count = 0;
    for (const slots of this.pools.values()) count += slots.ready.length;
    return count;
  }

  private scheduleRefill(slots: Slots): void {
    if (slots.refillScheduled) return;
    slots.refillScheduled = true;
    setImmediate(refill, this, slots);
  }

  /** @internal the refill callback */
  fill(slots: Slots): void {
    slots.refillScheduled = false;
    while (!this.closed && !slots.speaksFirst && slots.ready.length + slots.connecting < this.size) {
      slots.connecting++;
      const socket = netConnect({ host: slots.address.address, port: slots.address.port, allowHalfOpen: true, noDelay: true }) as PoolSocket;
      socket[SLOTS] = slots;
      socket.on('error', onPooledError);
      socket.once('connect', onPooledConnect);
      socket.once('close', onPooledClose);
      // Read while pooled, so that a FIN or a greeting shows at once (a paused socket would leave
      // both in the kernel, and hand out a dead connection).
      socket.on('data', onPooledData);
      socket.on('end', onPooledEnd);
    }
  }

  /** @internal a pooled socket connected */
  add(slots: Slots, socket: Socket): void {
    slots.connecting--;
    connected.add(socket);
    if (this.closed) {
      socket.destroy();
      return;
    }
    slots.ready.push({ socket, since: performance.now() });
  }

  private sweep(): void {
    const oldest = performance.now() - this.idleMs;
    for (const slots of this.pools.values()) {
      // Oldest first in the list: drop from the front while they are too old (or broken).
      let drop = 0;
      while (drop < slots.ready.length && (slots.ready[drop]!.since < oldest || !usable(slots.ready[drop]!.socket))) drop++;
      for (const { socket } of slots.ready.splice(0, drop)) socket.destroy();
    }
  }
}

/** Pooled sockets that connected (and so no longer count as connecting). */
const connected = new WeakSet<Socket>();

function refill(pool: BackendPool, slots: Slots): void {
  pool.fill(slots);
}

/** Still connected both ways (a socket the backend closed is destroyed at its 'end'). */
function usable(socket: Socket): boolean {
  return !socket.destroyed && socket.readyState === 'open';
}

/** The socket leaves the pool: the pool's listeners go, the caller's take over. */
function release(socket: Socket): void {
  const pooled = socket as PoolSocket;
  pooled[SLOTS] = null;
  socket.off('error', onPooledError);
  socket.off('close', onPooledClose);
  socket.off('data', onPooledData);
  socket.off('end', onPooledEnd);
  // Still flowing, with no 'data' listener until the caller's pipe adds its own in the same tick
  // (nothing can arrive in between). Not paused: a 'data' listener does not resume a paused socket.
}

function onPooledConnect(this: PoolSocket): void {
  const slots = this[SLOTS];
  if (slots == null) return;
  slots.pool.add(slots, this);
}

/** A pooled socket that fails (refused, reset) is just dropped: the next take connects as usual. */
function onPooledError(this: PoolSocket): void {
  this.destroy();
}

/**
 * The backend spoke first (SMTP, MySQL, SSH...): a pooled connection would
 * hand out a greeting made long before the client came. Drop it, and pool
 * nothing more for that backend.
 */
function onPooledData(this: PoolSocket): void {
  const slots = this[SLOTS];
  if (slots != null) slots.speaksFirst = true;
  this.destroy();
}

/** The backend closed an idle pooled connection (its idle timeout): drop it. */
function onPooledEnd(this: PoolSocket): void {
  this.destroy();
}

function onPooledClose(this: PoolSocket): void {
  const slots = this[SLOTS];
  if (slots == null) return;
  if (!connected.has(this)) {
    slots.connecting--;
    return;
  }
  const at = slots.ready.findIndex((p) => p.socket === this);
  if (at >= 0) slots.ready.splice(at, 1);
}
