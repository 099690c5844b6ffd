/**
 * Log lines that survive a flood. Whatever a stranger can cause once per
 * packet or per connection (refusals, limit hits, failed sends) goes through
 * here: at most `burst` lines per key (a message and a reason, say "agent
 * refused" / "tls_error") per interval; the rest are only counted, and at the
 * end of the interval one `log lines suppressed` line per key says how many
 * were dropped. Counters and metrics are the caller's and keep exact totals:
 * this only decides what gets written. Used by the gateway and DNS.
 */
import type { Logger } from 'pino';

export interface LogSamplerOptions {
  /** Lines per key per interval (0: none, only the summaries). */
  readonly burst: number;
  readonly intervalMs: number;
  /** Most distinct keys tracked per interval; past it, new keys share one (default 64). */
  readonly maxKeys?: number;
}

export const DEFAULT_LOG_SAMPLING: LogSamplerOptions = { burst: 10, intervalMs: 10_000 };

/** The summary line's message. */
export const SUPPRESSED_MESSAGE = 'log lines suppressed';

type Level = 'debug' | 'info' | 'warn' | 'error';

interface Window {
  readonly msg: string;
  readonly reason: string;
  written: number;
  suppressed: number;
}

const OVERFLOW_REASON = '(other)';

export class LogSampler {
  private readonly windows = new Map<string, Window>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly logger: Logger,
    private readonly options: LogSamplerOptions = DEFAULT_LOG_SAMPLING,
  ) {}

  /** Writes `msg` with `fields` at `level` unless its key (msg and reason) is over its burst this interval. */
  log(level: Level, reason: string, fields: Record<string, unknown>, msg: string): void {
    const window = this.windowOf(msg, reason);
    if (window.written < this.options.burst) {
      window.written++;
      this.logger[level](fields, msg);
    } else {
      window.suppressed++;
    }
  }

  /** Ends the interval: one summary line per key that dropped lines; the next interval starts empty. */
  flush(): void {
    for (const window of this.windows.values()) {
      if (window.suppressed > 0) {
        this.logger.warn({ event: window.msg, reason: window.reason, suppressed: window.suppressed, interval_ms: this.options.intervalMs }, SUPPRESSED_MESSAGE);
      }
    }
    this.windows.clear();
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  close(): void {
    this.flush();
  }

  private windowOf(msg: string, reason: string): Window {
    const key = `${msg}\0${reason}`;
    let window = this.windows.get(key);
    if (window !== undefined) return window;
    // Reasons may carry what a peer sent: bound the keys so a flood of distinct ones cannot grow the map.
    if (this.windows.size >= (this.options.maxKeys ?? 64) && reason !== OVERFLOW_REASON) return this.windowOf(msg, OVERFLOW_REASON);
    window = { msg, reason, written: 0, suppressed: 0 };
    this.windows.set(key, window);
    this.timer ??= setInterval(() => this.flush(), this.options.intervalMs).unref();
    return window;
  }
}
