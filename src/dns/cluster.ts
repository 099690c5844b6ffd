/**
 * `meshplane dns --workers N`: N processes (Node `cluster`) answering on the
 * same UDP and TCP sockets, so a central server uses every core.
 *
 * The primary answers nothing: it owns the LiveTopology (file watching,
 * SIGHUP), checks each accepted Topology and sends it to every worker at
 * once; a reload counts as done (`meshplane_dns_reloads_total{result}`,
 * reload()'s result) when every worker has swapped its zone. The sockets are
 * the primary's handles shared with the workers (cluster's default for
 * dgram, `exclusive: false`), and TCP is accepted by the workers themselves
 * (SCHED_NONE): the primary may be busy compiling services.yml, which must
 * not hold up accepts. Node 20 has no SO_REUSEPORT for dgram (`reusePort`
 * came in 22.12), so every worker reads the one socket and the kernel wakes
 * whichever is waiting. A worker that dies is replaced with the current
 * Topology; the others keep answering meanwhile.
 *
 * Metrics: each worker counts its queries; a scrape asks every worker for its
 * registry (as JSON) and sums them with the primary's (prom-client's
 * AggregatorRegistry.aggregate), so /metrics shows totals.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { AggregatorRegistry, Registry } from 'prom-client';
import { MeshplaneError } from '../errors.js';
import type { ReloadOutcome, Topology } from '../topology/index.js';
import type { FromWorker, MetricsJson, ToWorker, WorkerSettings } from './cluster-protocol.js';
import { createZoneMetrics } from './metrics.js';
import type { ZoneMetrics } from './metrics.js';
import type { BoundAddress } from './server.js';
import { checkHost } from './service.js';
import type { DnsServiceOptions } from './service.js';

interface DnsClusterOptions extends DnsServiceOptions {
  readonly workers: number;
  /** The workers log at this level (their own pino, on the same stderr). */
  readonly logLevel: string;
}

const WORKER_ENTRY = fileURLToPath(new URL('./worker.js', import.meta.url));
/** A worker that is not ready this long after its fork fails the start. */
const START_TIMEOUT_MS = 120_000;
/** A worker that does not hand over its metrics this long into a scrape is left out of it. */
const METRICS_TIMEOUT_MS = 2_000;
/** Wait before replacing a dead worker: a stop signalled to the whole process group must win. */
const RESTART_DELAY_MS = 1_000;

interface Slot {
  readonly index: number;
  worker: Worker;
  ready: boolean;
}

export class DnsCluster {
  private readonly options: DnsClusterOptions;
  private readonly metrics: ZoneMetrics | null;
  private readonly slots: Slot[] = [];
  private bound: readonly BoundAddress[] = [];
  private ownsTopology = false;
  private closed = false;
  private readonly unsubscribe: (() => void)[] = [];
  /** Generation of the Topology last sent to the workers (and that topology). */
  private generation = 0;
  private served: Topology | null = null;
  private servedJson = '';
  /** Workers that have not yet acknowledged a generation, and what to call when all have. */
  private waiting: { generation: number; pending: Set<number>; failed: string | null; done: (failure: string | null) => void } | null = null;
  private lastApplied = true;
  private metricsRequests = 0;
  private readonly metricsReplies = new Map<number, (metrics: MetricsJson) => void>();

  constructor(options: DnsClusterOptions) {
    this.options = options;
    this.metrics = options.registry ? createZoneMetrics(options.registry) : null;
  }

  get addresses(): readonly BoundAddress[] {
    return this.bound;
  }

  async start(): Promise<void> {
    const live = this.options.topology;
    // Frozen at the first fork; the workers accept TCP themselves (see the top of this file).
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ exec: WORKER_ENTRY, args: [], serialization: 'advanced' });
    // Forked before the Topology is read: the workers boot (Node, modules) while the primary reads and
    // checks it, instead of after. Their 'hello' is handled once this synchronous read is done.
    const forks = Array.from({ length: this.options.workers }, (_, i) => this.fork(i + 1));
    try {
      if (!live.started) {
        live.start();
        this.ownsTopology = true;
      }
      const topology = live.current;
      checkHost(topology, this.options.host, live.description);
      this.serve(topology);
      const ready = await Promise.all(forks);
      this.bound = ready[0]!.addresses;
      this.metrics?.zoneNames(ready[0]!.names, ready[0]!.views);
      this.unsubscribe.push(
        live.subscribe((change) => this.apply(change.current, change.reason)),
        live.onError(() => this.metrics?.reload('failure')),
        live.onOutcome((outcome) => {
          if (outcome === 'unchanged') this.metrics?.reload('unchanged');
        }),
      );
      if (live.current !== this.served) await this.apply(live.current, 'changed during start');
      this.options.logger.info(
        { listen: this.bound.filter((a) => a.transport === 'udp').map((a) => `${a.address}:${a.port}`), host: this.options.host, workers: this.options.workers, names: ready[0]!.names, views: ready[0]!.views },
        'DNS server ready',
      );
    } catch (err) {
      // The other forks fail as they are stopped: the first error is the one to report.
      for (const fork of forks) fork.catch(() => undefined);
      this.close();
      throw err;
    }
  }

  /**
   * The Topology the workers serve from now on, and its JSON text: sent as one string, which is
   * copied, not walked, on the way (a structured clone of the object graph cost the primary as much
   * per worker as JSON.stringify once, and each worker more than JSON.parse).
   */
  private serve(topology: Topology): void {
    this.served = topology;
    this.servedJson = JSON.stringify(topology);
    this.generation++;
  }

  /** Like DnsService.reload(): 'success' once every worker serves the new Topology. */
  async reload(reason: string): Promise<ReloadOutcome> {
    if (this.closed || this.slots.length === 0) return 'failure';
    const outcome = await this.options.topology.reload(reason);
    return outcome === 'success' && !this.lastApplied ? 'failure' : outcome;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const unsubscribe of this.unsubscribe.splice(0)) unsubscribe();
    if (this.ownsTopology) this.options.topology.close();
    for (const slot of this.slots) {
      if (slot.worker.isConnected()) slot.worker.send({ kind: 'stop' } satisfies ToWorker);
      // A worker stuck in a zone build still goes.
      setTimeout(() => slot.worker.process.kill('SIGKILL'), 2_000).unref();
    }
    this.waiting?.done('stopped');
  }

  /**
   * The registry the --metrics endpoint serves: `primary` (process and
   * reload metrics) summed with every worker's query metrics at each scrape.
   */
  metricsRegistry(primary: Registry): Registry {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the registry below calls back into this cluster
    const owner = this;
    return new (class extends Registry {
      override async metrics(): Promise<string> {
        const parts = [await primary.getMetricsAsJSON(), ...(await owner.workerMetrics())];
        return AggregatorRegistry.aggregate(parts).metrics();
      }
    })();
  }

  private workerMetrics(): Promise<MetricsJson[]> {
    const asks = this.slots
      .filter((slot) => slot.ready && slot.worker.isConnected())
      .map(
        (slot) =>
          new Promise<MetricsJson | null>((resolve) => {
            const id = ++this.metricsRequests;
            const timer = setTimeout(() => {
              this.metricsReplies.delete(id);
              resolve(null);
            }, METRICS_TIMEOUT_MS);
            this.metricsReplies.set(id, (metrics) => {
              clearTimeout(timer);
              this.metricsReplies.delete(id);
              resolve(metrics);
            });
            slot.worker.send({ kind: 'metrics', id } satisfies ToWorker);
          }),
      );
    return Promise.all(asks).then((all) => all.filter((m): m is MetricsJson => m !== null));
  }

  /** Forks worker `index` with the served Topology; resolves when it answers (its sockets bound). */
  private fork(index: number): Promise<Extract<FromWorker, { kind: 'ready' }>> {
    const worker = cluster.fork();
    const existing = this.slots.find((s) => s.index === index);
    const slot: Slot = existing ?? { index, worker, ready: false };
    slot.worker = worker;
    slot.ready = false;
    if (existing === undefined) this.slots.push(slot);
    const settings: WorkerSettings = {
      index,
      host: this.options.host,
      listen: this.options.listen,
      upstreams: this.options.upstreams,
      ttl: this.options.ttl,
      negativeTtl: this.options.negativeTtl,
      udpSize: this.options.udpSize,
      tcpIdleTimeoutMs: this.options.tcpIdleTimeoutMs,
      tcpQueryTimeoutMs: this.options.tcpQueryTimeoutMs,
      tcpMaxConnections: this.options.tcpMaxConnections,
      tcpMaxConnectionsPerSource: this.options.tcpMaxConnectionsPerSource,
      logLevel: this.options.logLevel,
      description: this.options.topology.description,
      metrics: this.metrics !== null,
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new MeshplaneError('DNS_ERR_WORKER', `DNS worker ${index} (pid ${worker.process.pid}) was not ready ${START_TIMEOUT_MS / 1000} s after it started`)), START_TIMEOUT_MS);
      timer.unref();
      worker.on('message', (message: FromWorker) => {
        switch (message.kind) {
          case 'hello':
            if (this.closed) break;
            // Never before the Topology is read: start() reads it synchronously right after forking.
            worker.send({ kind: 'start', settings, topology: this.servedJson, generation: this.generation } satisfies ToWorker);
            break;
          case 'ready':
            clearTimeout(timer);
            slot.ready = true;
            // A Topology accepted while this worker started: it gets it now.
            if (this.generation > 1 && this.served !== null) worker.send({ kind: 'topology', topology: this.servedJson, generation: this.generation } satisfies ToWorker);
            resolve(message);
            break;
          case 'start-failed':
            clearTimeout(timer);
            reject(new MeshplaneError(message.code, message.message));
            break;
          case 'applied':
          case 'apply-failed':
            this.acknowledged(index, message);
            break;
          case 'metrics':
            this.metricsReplies.get(message.id)?.(message.metrics);
            break;
        }
      });
      worker.on('exit', (code, signal) => {
        clearTimeout(timer);
        slot.ready = false;
        if (this.closed) return;
        reject(new MeshplaneError('DNS_ERR_WORKER', `DNS worker ${index} (pid ${worker.process.pid}) exited (${signal ?? `code ${code}`}) before it was ready`));
        if (slot.worker !== worker) return;
        this.options.logger.error({ code: 'DNS_ERR_WORKER', worker: index, pid: worker.process.pid, exitCode: code, signal }, 'DNS worker exited; starting another (the others keep answering)');
        // This worker will never acknowledge: the reload waits for the others only.
        if (this.waiting !== null) this.acknowledged(index, null);
        setTimeout(() => {
          if (!this.closed && slot.worker === worker) this.fork(index).catch((err: unknown) => this.options.logger.error({ err, code: (err as MeshplaneError).code, worker: index }, 'DNS worker could not be restarted'));
        }, RESTART_DELAY_MS).unref();
      });
    });
  }

  /** A change the LiveTopology accepted: to every worker at once; settles when all have it. */
  private apply(topology: Topology, reason: string): Promise<void> {
    try {
      checkHost(topology, this.options.host, this.options.topology.description);
    } catch (err) {
      this.lastApplied = false;
      this.metrics?.reload('failure');
      this.options.logger.error({ err, reason, source: this.options.topology.description, code: (err as MeshplaneError).code }, 'reload failed; still serving the previous topology');
      return Promise.resolve();
    }
    this.serve(topology);
    const generation = this.generation;
    const started = performance.now();
    this.waiting?.done('superseded');
    return new Promise<void>((resolve) => {
      const pending = new Set(this.slots.filter((s) => s.ready).map((s) => s.index));
      const done = (failure: string | null): void => {
        if (this.waiting?.generation === generation) this.waiting = null;
        if (failure === 'superseded' || failure === 'stopped') return resolve();
        this.lastApplied = failure === null;
        this.metrics?.reload(failure === null ? 'success' : 'failure');
        if (failure === null) this.options.logger.info({ reason, workers: this.slots.length, ms: Math.round(performance.now() - started) }, 'topology reloaded');
        else this.options.logger.error({ reason, source: this.options.topology.description, err: failure }, 'reload failed in a worker; it still serves the previous topology');
        resolve();
      };
      this.waiting = { generation, pending, failed: null, done };
      for (const slot of this.slots) if (slot.ready) slot.worker.send({ kind: 'topology', topology: this.servedJson, generation } satisfies ToWorker);
      if (pending.size === 0) done(null);
    });
  }

  private acknowledged(index: number, message: Extract<FromWorker, { kind: 'applied' | 'apply-failed' }> | null): void {
    const waiting = this.waiting;
    if (waiting === null || (message !== null && message.generation !== waiting.generation)) return;
    if (message?.kind === 'apply-failed') waiting.failed = `${message.code}: ${message.message}`;
    if (message?.kind === 'applied') this.metrics?.zoneNames(message.names, message.views);
    waiting.pending.delete(index);
    if (waiting.pending.size === 0) waiting.done(waiting.failed);
  }
}
