/** What the long-running commands (dns, gateway, agent) share: logger, metrics endpoint, signals. */
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import { createLogger } from '../lib/log.js';
import type { Server } from 'node:http';
import { MeshplaneError } from '../errors.js';
import { serveMetrics } from '../lib/metrics-http.js';
import type { RegistrySource } from '../lib/metrics-http.js';
import { parseSocketAddress } from '../lib/socket-address.js';
import { takeHeldHangup } from './early-signals.js';

interface Daemon {
  readonly logger: Logger;
  readonly registry: Registry;
}

/**
 * Node's process metrics under their standard names (process_cpu_seconds_total,
 * nodejs_heap_size_used_bytes...) with a `component` label: the names every
 * Node/Prometheus dashboard knows, and one set per process (`up` runs several
 * components in one process and serves them once).
 */
export function processMetrics(registry: Registry, component: string): void {
  collectDefaultMetrics({ register: registry, labels: { component } });
  // prom-client names these gauges *_total, which Prometheus keeps for counters (promtool flags
  // them); the same counts, by type, stay in nodejs_active_handles / _requests / _resources.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
}

export function daemon(component: string, level: string): Daemon {
  const registry = new Registry();
  processMetrics(registry, component);
  return { logger: createLogger(level).child({ component }), registry };
}

/**
 * The --metrics endpoint: /metrics, and /status when `status` is given.
 * `url` is the metrics URL, `base` the endpoint's root (http://host:port).
 */
export async function startMetrics(registry: RegistrySource, text: string | undefined, defaultPort: number, status?: () => unknown): Promise<{ url: string; base: string; close(): void } | null> {
  if (text === undefined) return null;
  const address = parseSocketAddress(text, defaultPort);
  let served: { server: Server; port: number };
  try {
    served = await serveMetrics(registry, address.address, address.port, status);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'the address is in use' : (err as Error).message;
    throw new MeshplaneError('CLI_ERR_METRICS_LISTEN', `cannot serve metrics on ${address.address}:${address.port}: ${reason}`, { cause: err });
  }
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  const base = `http://${host}:${served.port}`;
  return { url: `${base}/metrics`, base, close: () => served.server.close() };
}

/**
 * Resolves with exit code 0 after SIGTERM or SIGINT, once `stop` is done;
 * SIGHUP calls `reload` (its errors are the callee's to log).
 */
export function runUntilSignalled(logger: Logger, handlers: { reload?: () => unknown; stop: (signal: string) => Promise<void> | void }): Promise<number> {
  return new Promise((resolve) => {
    const onHangup = (): void => void handlers.reload?.();
    const onStop = (signal: string): void => {
      logger.info({ signal }, 'stopping');
      process.off('SIGHUP', onHangup);
      void Promise.resolve(handlers.stop(signal)).then(() => resolve(0));
    };
    process.on('SIGHUP', onHangup);
    process.once('SIGTERM', () => onStop('SIGTERM'));
    process.once('SIGINT', () => onStop('SIGINT'));
    // A reload asked for while the daemon was starting: it may have read the old files, so do it now.
    if (takeHeldHangup()) {
      logger.info('SIGHUP arrived during start-up; reloading now');
      onHangup();
    }
  });
}
