/**
 * `pki renew --daemon`: renews each credential when it is due and refreshes
 * the CRL on a schedule, sleeping until the next of those. The CRL schedule
 * is the CA's: `pki serve` says how long to wait (Cache-Control max-age, its
 * Topology's pki_policy.crl_refresh), so a host needs no Topology of its own
 * and follows a policy change at its next fetch; `crlIntervalMs` (the
 * `--crl-interval` flag) overrides it. While the CA
 * cannot be reached (or refuses), retries with exponential backoff (1 s
 * doubling up to `retryMaxMs`, with jitter). After a pass that changed a
 * file (a certificate or a CRL), runs `exec` once; never after a no-op.
 * Metrics carry what an operator alerts on: expiry, the last success and
 * failures.
 */
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { MeshplaneError } from '../errors.js';
import { refreshCrl, renewCredentials } from './renew.js';

interface DaemonOptions {
  readonly root: string;
  readonly caUrl: URL;
  readonly logger: Logger;
  readonly registry: Registry;
  /** Shell command run once after a pass that changed files. */
  readonly exec?: string;
  /** How often the CRL is fetched, overriding what the CA says (default: the CA's max-age, else 1 hour). */
  readonly crlIntervalMs?: number;
  /** The longest wait between retries while failing (default 5 minutes). */
  readonly retryMaxMs?: number;
  readonly manageOwnership?: boolean;
}

const RETRY_INITIAL_MS = 1000;
/** The CRL interval when neither the flag nor the CA says (a CA from before pki_policy). */
const DEFAULT_CRL_INTERVAL_MS = 3600_000;
/** setTimeout's limit is about 24.8 days; wake at least daily anyway to notice new files. */
const LONGEST_SLEEP_MS = 24 * 3600 * 1000;

interface PassResult {
  readonly changed: boolean;
  readonly failed: boolean;
  /** When something is next due (a renewal or the CRL). */
  readonly next: number;
}

export class RenewDaemon {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private failures = 0;
  private nextCrlAt = 0;
  private running: Promise<unknown> = Promise.resolve();
  private readonly expiry: Gauge<'credential' | 'kind'>;
  private readonly dueAt: Gauge<'credential' | 'kind'>;
  private readonly lastSuccess: Gauge;
  private readonly renewals: Counter<'credential' | 'kind'>;
  private readonly failuresTotal: Counter<'code'>;
  private readonly execs: Counter<'outcome'>;
  private readonly crlFetches: Counter;
  private readonly crlRefresh: Gauge;

  constructor(private readonly options: DaemonOptions) {
    const registers = [options.registry];
    this.expiry = new Gauge({ name: 'meshplane_pki_certificate_expiry_timestamp_seconds', help: 'notAfter of each certificate, Unix time', labelNames: ['credential', 'kind'], registers });
    this.dueAt = new Gauge({ name: 'meshplane_pki_renew_due_timestamp_seconds', help: 'When each certificate is next due for renewal, Unix time', labelNames: ['credential', 'kind'], registers });
    this.lastSuccess = new Gauge({ name: 'meshplane_pki_renew_last_success_timestamp_seconds', help: 'End of the last pass in which the CA answered and nothing failed, Unix time', registers });
    this.renewals = new Counter({ name: 'meshplane_pki_renew_renewals_total', help: 'Certificates renewed', labelNames: ['credential', 'kind'], registers });
    this.failuresTotal = new Counter({ name: 'meshplane_pki_renew_failures_total', help: 'Failed renewals and CRL fetches by error code', labelNames: ['code'], registers });
    this.execs = new Counter({ name: 'meshplane_pki_renew_exec_total', help: 'Runs of --exec by outcome (ok, failed)', labelNames: ['outcome'], registers });
    this.crlFetches = new Counter({ name: 'meshplane_pki_renew_crl_fetches_total', help: 'CRLs fetched from the online CA (failures count in meshplane_pki_renew_failures_total)', registers });
    this.crlRefresh = new Gauge({ name: 'meshplane_pki_renew_crl_refresh_seconds', help: 'Interval between CRL fetches in force: --crl-interval, else what the CA says (pki_policy.crl_refresh), else 3600', registers });
  }

  /** One pass: renew what is due, refresh the CRL when its time has come (or `forceCrl`), run exec after a change. */
  async pass(forceCrl = false, force = false): Promise<PassResult> {
    const { options } = this;
    const log = options.logger;
    let changed = false;
    let failed = false;
    let next = Date.now() + LONGEST_SLEEP_MS;
    for (const outcome of await renewCredentials({ root: options.root, caUrl: options.caUrl, manageOwnership: options.manageOwnership, force })) {
      const labels = { credential: outcome.credential, kind: outcome.kind };
      this.expiry.set(labels, outcome.notAfter.getTime() / 1000);
      this.dueAt.set(labels, outcome.due.getTime() / 1000);
      next = Math.min(next, outcome.due.getTime());
      if (outcome.action === 'renewed') {
        changed = true;
        this.renewals.inc(labels);
        log.info({ ...labels, notAfter: outcome.notAfter.toISOString(), due: outcome.due.toISOString() }, 'renewed');
      } else if (outcome.action === 'failed') {
        failed = true;
        const code = outcome.error?.code ?? 'PKI_ERR_RENEW_REFUSED';
        this.failuresTotal.inc({ code });
        log.warn({ ...labels, code, reason: outcome.error?.message, ca: options.caUrl.origin }, 'renewal failed');
      }
    }
    if (forceCrl || Date.now() >= this.nextCrlAt) {
      try {
        const crl = await refreshCrl({ root: options.root, caUrl: options.caUrl, manageOwnership: options.manageOwnership });
        const intervalMs = options.crlIntervalMs ?? crl.refreshMs ?? DEFAULT_CRL_INTERVAL_MS;
        this.crlRefresh.set(intervalMs / 1000);
        if (crl.fetched) {
          this.crlFetches.inc();
          log.debug({ refreshSeconds: intervalMs / 1000, changed: crl.changed.length > 0 }, 'CRL fetched');
        }
        if (crl.changed.length > 0) {
          changed = true;
          log.info({ credentials: crl.changed }, 'CRL updated');
        }
        this.nextCrlAt = Date.now() + intervalMs;
      } catch (err) {
        failed = true;
        const code = err instanceof MeshplaneError ? err.code : 'PKI_ERR_CRL_UNTRUSTED';
        this.failuresTotal.inc({ code });
        log.warn({ code, reason: (err as Error).message, ca: options.caUrl.origin }, 'CRL refresh failed');
      }
    }
    next = Math.min(next, this.nextCrlAt);
    if (!failed) this.lastSuccess.set(Date.now() / 1000);
    if (changed && options.exec !== undefined) await this.runExec(options.exec);
    return { changed, failed, next };
  }

  private runExec(command: string): Promise<void> {
    return new Promise((resolve) => {
      const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'inherit', 'inherit'] });
      child.on('error', (err) => {
        this.execs.inc({ outcome: 'failed' });
        this.options.logger.error({ code: 'PKI_ERR_EXEC', command, reason: err.message }, '--exec could not run');
        resolve();
      });
      child.on('close', (status) => {
        this.execs.inc({ outcome: status === 0 ? 'ok' : 'failed' });
        if (status === 0) this.options.logger.info({ command }, '--exec ran');
        else this.options.logger.error({ code: 'PKI_ERR_EXEC', command, status }, '--exec failed');
        resolve();
      });
    });
  }

  /** Runs passes until stop(): at each due time, or after a backoff while failing. */
  start(): void {
    const loop = async (): Promise<void> => {
      if (this.stopped) return;
      let wait: number;
      try {
        const result = await this.pass();
        if (result.failed) {
          this.failures += 1;
          const backoff = Math.min(this.options.retryMaxMs ?? 300_000, RETRY_INITIAL_MS * 2 ** (this.failures - 1));
          wait = backoff / 2 + Math.random() * (backoff / 2);
          this.options.logger.info({ retryInMs: Math.round(wait), failures: this.failures }, 'retrying with backoff');
        } else {
          if (this.failures > 0) this.options.logger.info({ after: this.failures }, 'the online CA answers again');
          this.failures = 0;
          wait = Math.max(0, result.next - Date.now());
        }
      } catch (err) {
        this.failures += 1;
        wait = Math.min(this.options.retryMaxMs ?? 300_000, RETRY_INITIAL_MS * 2 ** (this.failures - 1));
        this.options.logger.error({ reason: (err as Error).message }, 'renewal pass failed');
      }
      if (!this.stopped) this.timer = setTimeout(() => {
        this.running = loop();
      }, Math.min(wait, LONGEST_SLEEP_MS));
    };
    this.running = loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.running;
  }
}
