/**
 * pki serve's own TLS certificate, kept fresh while it runs: a new key and
 * certificate at two thirds of the current one's life (counted from when it
 * was made, not from its backdated notBefore), and at once when asked (the
 * CA was read again). The key is made in memory and never touches the disk.
 * Whoever serves TLS swaps its context in `onChange` (serve.ts:
 * `server.setSecureContext`, so connections already open keep theirs).
 * If making one fails (the CA narrowed its constraints, the CA expires
 * sooner), the current certificate stays and it is tried again later.
 */
import type { Logger } from 'pino';
import { MeshplaneError } from '../errors.js';
import { generateKeyPair } from './keys.js';
import type { San } from './sans.js';
import type { LeafSigner } from './sign.js';
import { VALIDITY } from './validity.js';

export interface ServingPair {
  readonly keyPem: string;
  readonly certPem: string;
  readonly serial: string;
  readonly notAfter: Date;
}

interface ServingOptions {
  /** The CA's signer now (it changes when the CA is read again). */
  readonly signer: () => LeafSigner;
  /** The names to certify now (the Topology may have changed). */
  readonly names: () => San[];
  readonly lifetimeMs: number;
  readonly logger: Logger;
  /** Called with each new pair after the first. */
  readonly onChange: (pair: ServingPair) => void;
}

const COMMON_NAME = 'meshplane-pki-serve';
/** setTimeout's largest delay (about 24.8 days); longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** After a failed attempt: try again in this long, or sooner when the current certificate expires sooner. */
const RETRY_MS = 60_000;

export class ServingCertificate {
  private pair: ServingPair;
  /** When the current pair is due for replacement (ms since the epoch). */
  private dueAt: number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  /** Makes the first pair (throws when it cannot: pki serve does not start without one). */
  constructor(private readonly options: ServingOptions) {
    if (!Number.isFinite(options.lifetimeMs) || options.lifetimeMs < 1000 || options.lifetimeMs > VALIDITY.leafMaxDays * 86_400_000) {
      throw new MeshplaneError('PKI_ERR_VALIDITY', `the online CA's own certificate lifetime must be 1 second to ${VALIDITY.leafMaxDays} days, not ${options.lifetimeMs} ms`);
    }
    const now = Date.now();
    this.pair = this.make(new Date(now));
    this.dueAt = this.dueFrom(now);
  }

  get current(): ServingPair {
    return this.pair;
  }

  /** Starts replacing the pair when due. */
  start(): void {
    this.schedule();
  }

  /** Replaces the pair now (after the CA was read again); keeps the current one if that fails. */
  renewNow(reason: string): void {
    this.replace(reason);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private make(now: Date): ServingPair {
    const key = generateKeyPair();
    const signed = this.options.signer().signServing(COMMON_NAME, this.options.names(), key.publicKeySpki, now, this.options.lifetimeMs);
    return { keyPem: key.privateKeyPem, certPem: signed.pem, serial: signed.serial, notAfter: signed.notAfter };
  }

  private dueFrom(madeAt: number): number {
    return madeAt + this.options.lifetimeMs * (1 - VALIDITY.renewFraction);
  }

  private replace(reason: string): void {
    const now = Date.now();
    try {
      this.pair = this.make(new Date(now));
      this.dueAt = this.dueFrom(now);
      this.options.logger.info({ serial: this.pair.serial, notAfter: this.pair.notAfter.toISOString(), reason }, 'serving certificate renewed');
      this.options.onChange(this.pair);
    } catch (err) {
      // Keep serving with the current certificate; try again before it runs out.
      this.dueAt = now + Math.max(1000, Math.min(RETRY_MS, (this.pair.notAfter.getTime() - now) / 4));
      const code = err instanceof MeshplaneError ? err.code : 'PKI_ERR_INTERNAL';
      this.options.logger.error({ code, reason: (err as Error).message, notAfter: this.pair.notAfter.toISOString(), retryAt: new Date(this.dueAt).toISOString() }, 'cannot renew the serving certificate; still serving the current one');
    }
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const wait = this.dueAt - Date.now();
    this.timer = setTimeout(() => (Date.now() >= this.dueAt ? this.replace('two thirds of its life passed') : this.schedule()), Math.min(Math.max(wait, 0), MAX_TIMER_MS));
    this.timer.unref();
  }
}
