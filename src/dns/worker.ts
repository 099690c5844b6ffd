/**
 * The entry point of one `meshplane dns --workers N` worker (forked by
 * cluster.ts): a DnsServer on the shared sockets, serving the Topology the
 * primary last sent. No LiveTopology, no file watching, no SIGHUP here:
 * the primary reads, checks and hands out every Topology, so all workers
 * move together.
 */
import { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Topology } from '../topology/index.js';
import { createLogger } from '../lib/log.js';
import { codeOf } from './cluster-protocol.js';
import type { FromWorker, ToWorker, WorkerSettings } from './cluster-protocol.js';
import { Forwarder } from './forwarder.js';
import { createQueryMetrics } from './metrics.js';
import { DnsServer } from './server.js';
import { buildServedZone } from './service.js';

let server: DnsServer | null = null;
let forwarder: Forwarder | null = null;
let settings: WorkerSettings | null = null;
let logger: Logger | null = null;
let registry: Registry | null = null;
let generation = 0;

function send(message: FromWorker): void {
  process.send?.(message);
}

async function start(message: Extract<ToWorker, { kind: 'start' }>): Promise<void> {
  settings = message.settings;
  logger = createLogger(settings.logLevel).child({ component: 'dns', worker: settings.index });
  registry = new Registry();
  const metrics = settings.metrics ? createQueryMetrics(registry, String(settings.index)) : null;
  try {
    const zone = buildServedZone(JSON.parse(message.topology) as Topology, settings, settings.description);
    if (settings.upstreams.length > 0) {
      forwarder = new Forwarder(settings.upstreams);
      await forwarder.start();
    }
    server = new DnsServer(zone, {
      listen: settings.listen,
      forwarder,
      udpSize: settings.udpSize,
      tcpIdleTimeoutMs: settings.tcpIdleTimeoutMs,
      tcpQueryTimeoutMs: settings.tcpQueryTimeoutMs,
      tcpMaxConnections: settings.tcpMaxConnections,
      tcpMaxConnectionsPerSource: settings.tcpMaxConnectionsPerSource,
      metrics,
      logger,
    });
    await server.start();
    generation = message.generation;
    send({ kind: 'ready', addresses: server.addresses, names: zone.nameCount, views: zone.views.views.length });
  } catch (err) {
    // The primary reports it (one line, the code) and stops every worker.
    process.send?.({ kind: 'start-failed', code: codeOf(err), message: (err as Error).message } satisfies FromWorker, () => process.exit(1));
  }
}

function apply(message: Extract<ToWorker, { kind: 'topology' }>): void {
  if (server === null || settings === null || message.generation <= generation) return;
  try {
    const zone = buildServedZone(JSON.parse(message.topology) as Topology, settings, settings.description);
    server.setZone(zone);
    generation = message.generation;
    send({ kind: 'applied', generation: message.generation, names: zone.nameCount, views: zone.views.views.length });
  } catch (err) {
    send({ kind: 'apply-failed', generation: message.generation, code: codeOf(err), message: (err as Error).message });
  }
}

function stop(): void {
  server?.close();
  forwarder?.close();
  logger?.flush();
  process.exit(0);
}

process.on('message', (message: ToWorker) => {
  switch (message.kind) {
    case 'start':
      void start(message);
      break;
    case 'topology':
      apply(message);
      break;
    case 'metrics':
      void (registry?.getMetricsAsJSON() ?? Promise.resolve([])).then((metrics) => send({ kind: 'metrics', id: message.id, metrics }));
      break;
    case 'stop':
      stop();
      break;
  }
});
// Reloads are the primary's (it sends the new Topology); a hangup sent to the whole group must not kill a worker.
process.on('SIGHUP', () => undefined);
// The primary gone (killed): nobody would send reloads or stop us.
process.on('disconnect', stop);
send({ kind: 'hello' });
