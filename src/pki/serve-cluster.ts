/**
 * `pki serve --workers N`: N processes (Node `cluster`) serving the online
 * CA on one listening socket, so a dedicated CA host uses its cores. A
 * renewal is CPU work from the first byte to the last (the mutual-TLS
 * handshake, then checking and signing), so a second process is what uses
 * the second core.
 *
 * Each worker is a whole `pki serve` (its own LiveTopology, CA directory
 * reader, serving certificate and rate limiter); the primary answers
 * nothing. It forks the workers with the same command line, accepts on the
 * shared socket in none of them (SCHED_NONE: each worker accepts for
 * itself, no hop through the primary), reports ready once every worker
 * listens, forwards SIGHUP, replaces a worker that dies, and serves
 * /metrics as the sum of every worker's registry (prom-client's
 * AggregatorRegistry).
 *
 * What is per worker: the rate limits (the global limit is split evenly; an
 * identity may renew up to N × --rate-per-identity a minute if its
 * connections land on different workers), and the connection cap
 * (--max-connections each). Only worker 1 re-signs the CRL at half its life;
 * the others serve the file it wrote, and re-sign only a CRL that has
 * expired outright, so two workers never race to publish two CRLs.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry } from 'prom-client';
import { MeshplaneError } from '../errors.js';

/** The environment variable that tells a forked process which worker it is (1..N). */
const WORKER_ENV = 'MESHPLANE_PKI_SERVE_WORKER';
/** A worker that is not listening this long after its fork fails the start. */
const START_TIMEOUT_MS = 60_000;
/** Wait before replacing a dead worker: a stop signalled to the whole process group must win. */
const RESTART_DELAY_MS = 1_000;

interface Ready {
  readonly kind: 'pki-serve-ready';
  readonly port: number;
}

/** In a worker: its number (1..N); undefined in a process that is not a pki serve worker. */
export function serveWorkerIndex(): number | undefined {
  const text = cluster.isWorker ? process.env[WORKER_ENV] : undefined;
  return text === undefined ? undefined : Number(text);
}

/** In a worker: tells the primary it listens on `port`, and lets the primary read `registry` at each scrape. */
export function announceServeWorker(port: number, registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one is what makes prom-client answer the primary's metrics requests in a worker.
  new AggregatorRegistry();
  process.send?.({ kind: 'pki-serve-ready', port } satisfies Ready);
}

/** In a worker, once its server is closed: drops the IPC channel to the primary, which would otherwise keep the process alive. */
export function leaveServeCluster(): void {
  if (cluster.isWorker && process.connected) process.disconnect();
}

export class PkiServeCluster {
  private readonly workers = new Map<number, Worker>();
  private readonly aggregator = new AggregatorRegistry();
  private stopping = false;

  constructor(
    private readonly count: number,
    private readonly logger: Logger,
  ) {}

  /** Forks every worker; resolves with the port they listen on once all do. */
  async start(): Promise<number> {
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    const ports = await Promise.all(Array.from({ length: this.count }, (_, i) => this.fork(i + 1)));
    return ports[0] ?? 0;
  }

  /** The registry /metrics serves: the sum of every worker's. */
  metricsRegistry(): Registry {
    const { aggregator } = this;
    return new (class extends Registry {
      override metrics(): Promise<string> {
        return aggregator.clusterMetrics();
      }
    })();
  }

  /** SIGHUP for every worker: each reloads its Topology and CA. */
  reload(): void {
    for (const worker of this.workers.values()) worker.process.kill('SIGHUP');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.workers.values()].map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.isDead()) return resolve();
            worker.once('exit', () => resolve());
            worker.process.kill('SIGTERM');
          }),
      ),
    );
  }

  private fork(index: number): Promise<number> {
    const worker = cluster.fork({ [WORKER_ENV]: String(index) });
    this.workers.set(index, worker);
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new MeshplaneError('PKI_ERR_SERVE_WORKER', `pki serve worker ${index} was not listening ${START_TIMEOUT_MS / 1000} s after it started`)), START_TIMEOUT_MS);
      let listening = false;
      worker.on('message', (message: Partial<Ready>) => {
        if (message.kind !== 'pki-serve-ready' || typeof message.port !== 'number') return;
        listening = true;
        clearTimeout(timer);
        resolve(message.port);
      });
      worker.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (this.stopping) return;
        if (!listening) {
          reject(new MeshplaneError('PKI_ERR_SERVE_WORKER', `pki serve worker ${index} exited (${signal ?? `code ${code}`}) before it listened; its error is above`));
          return;
        }
        this.logger.error({ worker: index, code, signal }, 'pki serve worker died; starting a new one');
        setTimeout(() => {
          if (!this.stopping) this.fork(index).catch((err: Error) => this.logger.error({ worker: index, reason: err.message }, 'cannot restart the pki serve worker'));
        }, RESTART_DELAY_MS).unref();
      });
    });
  }
}
