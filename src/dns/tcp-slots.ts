/**
 * Who gets a TCP slot. The server holds at most `maxTotal` connections, and
 * at most `maxPerSource` from one source (an IPv4 address, or an IPv6 /64:
 * one host can use every address of its /64). At a cap, a new connection
 * does not get refused while an older one is only waiting: the oldest
 * waiting connection makes room for it (BIND's and Unbound's answer to
 * connection floods, and what keeps a real `dig +tcp` answered during one).
 *
 * Which one goes:
 * - per-source cap reached: the oldest waiting connection of that same
 *   source, so a source can only ever push out its own connections;
 * - global cap reached: the oldest waiting connection among the sources that
 *   hold the most connections, so a source with fewer connections than the
 *   biggest holder is never pushed out by the global cap.
 *
 * "Oldest" is by the start of the current wait: the connection's opening, or
 * the last answer sent on it. A trickling client never moves that forward,
 * so it is always among the first to go; a connection that was just
 * answered is the last. A connection with a forwarded query in flight is
 * busy and not evicted; with nothing else to evict, the new one is refused.
 */

export interface TcpSlot {
  /** From sourceKey(). */
  readonly source: string;
  /** performance.now() at the start of the current wait: opening, or the last answer. */
  readonly waitStart: number;
  /** True while a forwarded query is in flight: not evictable. */
  readonly busy: boolean;
}

type Admission<T> = { readonly admit: true; readonly evict: T | null; readonly reason: 'evicted_source' | 'evicted_global' | null } | { readonly admit: false };

export class TcpSlots<T extends TcpSlot> {
  private readonly bySource = new Map<string, Set<T>>();
  private total = 0;

  constructor(
    private readonly maxTotal: number,
    private readonly maxPerSource: number,
  ) {}

  get size(): number {
    return this.total;
  }

  /** How many connections a source holds. */
  countOf(source: string): number {
    return this.bySource.get(source)?.size ?? 0;
  }

  /** Whether a new connection from `source` may come in, and whom it pushes out. Changes nothing. */
  admit(source: string): Admission<T> {
    const own = this.bySource.get(source);
    if (own !== undefined && own.size >= this.maxPerSource) {
      const victim = oldest(own);
      return victim === null ? { admit: false } : { admit: true, evict: victim, reason: 'evicted_source' };
    }
    if (this.total < this.maxTotal) return { admit: true, evict: null, reason: null };
    let most = 0;
    for (const set of this.bySource.values()) if (set.size > most) most = set.size;
    let victim: T | null = null;
    for (const set of this.bySource.values()) {
      if (set.size !== most) continue;
      const candidate = oldest(set);
      if (candidate !== null && (victim === null || candidate.waitStart < victim.waitStart)) victim = candidate;
    }
    // The biggest holders are all busy: anyone waiting will do.
    if (victim === null) for (const set of this.bySource.values()) {
      const candidate = oldest(set);
      if (candidate !== null && (victim === null || candidate.waitStart < victim.waitStart)) victim = candidate;
    }
    return victim === null ? { admit: false } : { admit: true, evict: victim, reason: 'evicted_global' };
  }

  add(slot: T): void {
    let set = this.bySource.get(slot.source);
    if (set === undefined) this.bySource.set(slot.source, (set = new Set()));
    if (set.has(slot)) return;
    set.add(slot);
    this.total++;
  }

  delete(slot: T): void {
    const set = this.bySource.get(slot.source);
    if (set === undefined || !set.delete(slot)) return;
    this.total--;
    if (set.size === 0) this.bySource.delete(slot.source);
  }

  *all(): IterableIterator<T> {
    for (const set of this.bySource.values()) yield* set;
  }
}

function oldest<T extends TcpSlot>(set: Set<T>): T | null {
  let found: T | null = null;
  for (const slot of set) if (!slot.busy && (found === null || slot.waitStart < found.waitStart)) found = slot;
  return found;
}
