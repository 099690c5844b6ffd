/**
 * `meshplane pki serve` (the online CA) and `meshplane pki renew` (renewal
 * on a host); the work is in src/pki (serve.ts, renew.ts, renew-daemon.ts).
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../../errors.js';
import { DEFAULT_CREDENTIALS_ROOT, PkiServeCluster, PkiServer, RenewDaemon, announceServeWorker, leaveServeCluster, parseLifetime, serveWorkerIndex } from '../../pki/index.js';
import { parseSocketAddress } from '../../lib/socket-address.js';
import { LiveTopology } from '../../topology/index.js';
import type { CommandIO } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { daemon, runUntilSignalled, startMetrics } from '../daemon.js';
import { SOURCE_OPTIONS, daemonSource } from '../inputs.js';

export const ONLINE_USAGE = `  serve    the online CA: HTTPS with mutual TLS, POST /renew, GET /crl, GET /ca
             --ca-dir DIR (-t FILE | -s FILE -i FILE) --listen ADDR:PORT [--host NAME]
             [--metrics ADDR:PORT] [--lifetime DURATION] [--serving-lifetime DURATION]
             [--rate-per-identity N] [--rate-global N] [--max-connections N]
             [--workers N] [--log-level L] [--no-watch]
  renew    on a host: renew its installed credentials through the online CA when
           due (two thirds of their life), and fetch the CRL
             --host NAME --ca-url https://ADDR:PORT [--credentials-root DIR]
             [--daemon] [--exec CMD] [--metrics ADDR:PORT] [--force]
             [--crl-interval SECONDS] [--retry-max SECONDS] [--[no-]system-owners]
             (the CRL is fetched every pki_policy.crl_refresh, as the CA says;
             --crl-interval overrides it)`;

type Handler = (args: readonly string[], io: CommandIO) => Promise<number>;

function count(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number, not "${text}"`);
  return n;
}

export const serve: Handler = async (args, io) => {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    options: {
      ...SOURCE_OPTIONS,
      'ca-dir': { type: 'string' },
      listen: { type: 'string' },
      host: { type: 'string' },
      metrics: { type: 'string' },
      lifetime: { type: 'string' },
      'serving-lifetime': { type: 'string' },
      'rate-per-identity': { type: 'string' },
      'rate-global': { type: 'string' },
      'max-connections': { type: 'string' },
      workers: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'no-watch': { type: 'boolean', default: false },
    },
  });
  if (values['ca-dir'] === undefined) throw new UsageError('--ca-dir is required');
  if (values.listen === undefined) throw new UsageError('--listen ADDR:PORT is required');
  const listen = parseSocketAddress(values.listen, 9443);
  const workers = count(values.workers, '--workers', 1);
  if (!Number.isInteger(workers)) throw new UsageError(`--workers must be a whole number, not "${values.workers}"`);
  const worker = serveWorkerIndex();
  if (workers > 1 && worker === undefined) return servePrimary(workers, listen, values, io);
  // With N workers the global limit is split between them (serve-cluster.ts).
  const limits = { perIdentityPerMinute: count(values['rate-per-identity'], '--rate-per-identity', 10), globalPerSecond: count(values['rate-global'], '--rate-global', 2000) / workers };
  const { logger: root, registry } = daemon('pki_serve', values['log-level']);
  const logger = worker === undefined ? root : root.child({ worker });
  const live = new LiveTopology(daemonSource(values, io), { watch: !values['no-watch'], logger });
  live.start();
  const server = new PkiServer({
    caDir: resolve(io.cwd, values['ca-dir']),
    topology: () => live.current,
    host: values.host,
    address: listen.address,
    port: listen.port,
    logger,
    registry,
    lifetimeMs: values.lifetime === undefined ? undefined : parseLifetime(values.lifetime),
    servingLifetimeMs: values['serving-lifetime'] === undefined ? undefined : parseLifetime(values['serving-lifetime']),
    limits,
    maxConnections: count(values['max-connections'], '--max-connections', 1024),
    crlOnlyWhenExpired: worker !== undefined && worker > 1,
  });
  try {
    await server.start();
  } catch (err) {
    live.close();
    throw err;
  }
  // A grown Topology usually comes with a widened CA (`pki init` again): read both.
  live.subscribe(() => {
    try {
      server.reloadCa();
    } catch (err) {
      logger.error({ code: (err as { code?: string }).code, reason: (err as Error).message }, 'cannot read the CA again; still signing with the previous one');
    }
  });
  if (worker !== undefined) {
    // A worker of --workers N: the primary serves the metrics and says where the CA is.
    announceServeWorker(server.port, registry);
    return await runUntilSignalled(logger, {
      reload: () => live.reload('SIGHUP'),
      stop: async () => {
        live.close();
        await server.close();
        leaveServeCluster();
      },
    });
  }
  const metrics = await startMetrics(registry, values.metrics, 9158);
  io.stdout(readyLine(listen.address, server.port, metrics?.url));
  return await runUntilSignalled(logger, {
    reload: () => live.reload('SIGHUP'),
    stop: async () => {
      live.close();
      metrics?.close();
      await server.close();
    },
  });
};

function readyLine(address: string, port: number, metricsUrl: string | undefined): string {
  const host = address.includes(':') ? `[${address}]` : address;
  return `meshplane pki serve: online CA at https://${host}:${port}/${metricsUrl === undefined ? '' : `; metrics at ${metricsUrl}`}\n`;
}

/** `pki serve --workers N` (N > 1): forks the workers (each a whole pki serve) and serves their summed metrics. */
async function servePrimary(workers: number, listen: { address: string }, values: { 'log-level': string; metrics?: string }, io: CommandIO): Promise<number> {
  const { logger } = daemon('pki_serve', values['log-level']);
  const pool = new PkiServeCluster(workers, logger);
  let port: number;
  try {
    port = await pool.start();
  } catch (err) {
    await pool.stop();
    throw err;
  }
  const metrics = await startMetrics(pool.metricsRegistry(), values.metrics, 9158);
  logger.info({ workers, port }, 'online CA workers listening');
  io.stdout(readyLine(listen.address, port, metrics?.url));
  return await runUntilSignalled(logger, {
    reload: () => pool.reload(),
    stop: async () => {
      metrics?.close();
      await pool.stop();
    },
  });
}

export const renew: Handler = async (args, io) => {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    options: {
      host: { type: 'string' },
      'ca-url': { type: 'string' },
      'credentials-root': { type: 'string', default: DEFAULT_CREDENTIALS_ROOT },
      daemon: { type: 'boolean', default: false },
      exec: { type: 'string' },
      metrics: { type: 'string' },
      force: { type: 'boolean', default: false },
      'crl-interval': { type: 'string' },
      'retry-max': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'system-owners': { type: 'boolean' },
      'no-system-owners': { type: 'boolean' },
    },
  });
  if (values.host === undefined) throw new UsageError('--host is required');
  if (values['ca-url'] === undefined) throw new UsageError('--ca-url https://ADDR:PORT is required');
  let caUrl: URL;
  try {
    caUrl = new URL(values['ca-url']);
  } catch {
    throw new UsageError(`--ca-url must be a URL such as https://10.0.0.1:9443, not "${values['ca-url']}"`);
  }
  if (caUrl.protocol !== 'https:') throw new UsageError(`--ca-url must be https://, not "${values['ca-url']}"`);
  if (values['system-owners'] === true && values['no-system-owners'] === true) throw new UsageError('give --system-owners or --no-system-owners, not both');
  const manageOwnership = values['system-owners'] === true ? true : values['no-system-owners'] === true ? false : undefined;
  const { logger, registry } = daemon('pki_renew', values['log-level']);
  const renewer = new RenewDaemon({
    root: resolve(io.cwd, values['credentials-root']),
    caUrl,
    logger: logger.child({ host: values.host }),
    registry,
    exec: values.exec,
    // Without the flag, the CA's Topology decides (pki_policy.crl_refresh, sent with each CRL).
    ...(values['crl-interval'] === undefined ? {} : { crlIntervalMs: count(values['crl-interval'], '--crl-interval', 3600) * 1000 }),
    retryMaxMs: count(values['retry-max'], '--retry-max', 300) * 1000,
    manageOwnership,
  });
  if (!values.daemon) {
    if (values.metrics !== undefined) throw new UsageError('--metrics needs --daemon (a one-shot run has no endpoint to scrape)');
    const result = await renewer.pass(true, values.force);
    io.stdout(`meshplane pki renew: ${result.changed ? 'changed' : 'nothing to do'}${result.failed ? '; some renewals failed (see the log)' : ''}\n`);
    return result.failed ? EXIT_INVALID : EXIT_OK;
  }
  const metrics = await startMetrics(registry, values.metrics, 9157);
  renewer.start();
  io.stdout(`meshplane pki renew: renewing under ${values['credentials-root']} through ${caUrl.origin}${metrics === null ? '' : `; metrics at ${metrics.url}`}\n`);
  return await runUntilSignalled(logger, {
    stop: async () => {
      metrics?.close();
      await renewer.stop();
    },
  });
};
