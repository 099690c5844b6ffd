/**
 * Waiting for what a test needs instead of sleeping for a guessed time.
 *
 * A deadline here is a ceiling for a slow, busy machine, not a measure of
 * the product: a waiter returns as soon as its condition holds, so a
 * generous deadline costs nothing when things go well. Tests that assert
 * how long the product takes derive their bounds from the configured
 * values (a timer never fires early; anything may run late), never from
 * how fast this machine happens to be today.
 */

/** Default ceiling for a condition the product should reach "soon" (a registration, a reload, a port). */
export const SOON_MS = 30_000;

export interface WaitOptions {
  /** Give up after this many ms (default SOON_MS). */
  readonly deadline?: number;
  /** What is awaited, for the error ("three tunnels to each gateway"). */
  readonly what: string;
  /** Poll interval in ms (default 25). */
  readonly interval?: number;
  /** More context for the error when the deadline passes (logs, the last value seen). */
  readonly explain?: () => Promise<string> | string;
}

/**
 * Polls `check` until it returns true (or a value other than false,
 * undefined and null, which is returned) and fails with `what` once
 * `deadline` ms have passed. A check that throws counts as "not yet"
 * (a port not open, a file not written); its last error is reported.
 */
export async function waitFor<T>(check: () => Promise<T | false | undefined | null> | T | false | undefined | null, options: WaitOptions): Promise<T> {
  const deadline = options.deadline ?? SOON_MS;
  const until = Date.now() + deadline;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== false && value !== undefined && value !== null) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > until) {
      const context = options.explain === undefined ? '' : await Promise.resolve(options.explain()).catch((err: unknown) => `(explain failed: ${String(err)})`);
      const last = lastError === undefined ? '' : `\nlast error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)}`;
      throw new Error(`${options.what}: not within ${deadline} ms${last}${context === '' ? '' : `\n${context}`}`);
    }
    await sleep(options.interval ?? 25);
  }
}

/** Resolves once `promise` does, or fails with `what` after `deadline` ms (the promise itself is not cancelled). */
export async function within<T>(promise: Promise<T>, options: { deadline?: number; what: string }): Promise<T> {
  const deadline = options.deadline ?? SOON_MS;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${options.what}: not within ${deadline} ms`)), deadline);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Only for letting time pass that the test is about (a check must NOT
 * happen during it, a backoff must elapse), never as a stand-in for readiness.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
