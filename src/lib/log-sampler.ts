/**
 * Sampling for log lines that a stranger can cause once per packet or per
 * connection (limit hits, refusals): without it a flood becomes a flood of
 * log lines too, and fills the disk or drowns the journal. Per key (a reason,
 * usually), the first `perWindow` events of each window are logged; the rest
 * are only counted, and the next logged event of that key says how many were
 * left out since the last one. Metrics keep the exact totals; logs keep
 * examples.
 */

export interface LogSamplerOptions {
  /** Length of a window in milliseconds (default 10 s). */
  readonly windowMs?: number;
  /** Events logged per key and window (default 5). */
  readonly perWindow?: number;
  /** Most distinct keys tracked; past it, unknown keys share one slot (default 64). */
  readonly maxKeys?: number;
  /** Clock in milliseconds, for tests. */
  readonly now?: () => number;
}

interface Slot {
  windowStart: number;
  logged: number;
  suppressed: number;
}

const OVERFLOW_KEY = '\u0000other';

export class LogSampler {
  private readonly windowMs: number;
  private readonly perWindow: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  private readonly slots = new Map<string, Slot>();

  constructor(options: LogSamplerOptions = {}) {
    this.windowMs = options.windowMs ?? 10_000;
    this.perWindow = options.perWindow ?? 5;
    this.maxKeys = options.maxKeys ?? 64;
    this.now = options.now ?? Date.now;
  }

  /**
   * Records one event. Returns null when it should not be logged, else the
   * number of events of this key left out since the last logged one (log it
   * as `suppressed`).
   */
  take(key: string): number | null {
    const now = this.now();
    let slot = this.slots.get(key);
    if (slot === undefined) {
      if (this.slots.size >= this.maxKeys && key !== OVERFLOW_KEY) return this.take(OVERFLOW_KEY);
      slot = { windowStart: now, logged: 0, suppressed: 0 };
      this.slots.set(key, slot);
    }
    if (now - slot.windowStart >= this.windowMs) {
      slot.windowStart = now;
      slot.logged = 0;
    }
    if (slot.logged >= this.perWindow) {
      slot.suppressed++;
      return null;
    }
    slot.logged++;
    const suppressed = slot.suppressed;
    slot.suppressed = 0;
    return suppressed;
  }
}
