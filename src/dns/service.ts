/**
 * A running DNS service: the server plus everything around it — loading
 * the topology, forwarding, metrics, and reloading on SIGHUP (wired by the
 * CLI) or when the topology files change. A reload that fails keeps the old
 * zone serving and says why in the log.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { MeshplaneError } from '../errors.js';
import { serializeTopology, watchedDirectories } from '../topology/index.js';
import type { Topology, TopologySource } from '../topology/index.js';
import { Forwarder } from './forwarder.js';
import type { SocketAddress } from './listen.js';
import { createDnsMetrics } from './metrics.js';
import type { DnsMetrics } from './metrics.js';
import { DnsServer } from './server.js';
import type { BoundAddress } from './server.js';
import { DEFAULT_NEGATIVE_TTL, DEFAULT_TTL, Zone } from './zone.js';

interface DnsServiceOptions {
  readonly source: TopologySource;
  /** The host this server runs on; null for a central server. */
  readonly host: string | null;
  readonly listen: readonly SocketAddress[];
  /** Resolvers for names outside the zone; empty means REFUSED. */
  readonly upstreams: readonly SocketAddress[];
  readonly ttl?: number;
  readonly negativeTtl?: number;
  readonly udpSize?: number;
  readonly tcpIdleTimeoutMs?: number;
  readonly tcpQueryTimeoutMs?: number;
  readonly tcpMaxConnections?: number;
  readonly tcpMaxConnectionsPerSource?: number;
  /** Reload when the source files change (default true). */
  readonly watch?: boolean;
  readonly registry?: Registry | null;
  readonly logger: Logger;
}

type ReloadResult = 'success' | 'failure' | 'unchanged';

/** How long file events must settle before a reload: editors and renames fire several. */
const WATCH_DEBOUNCE_MS = 200;

export class DnsService {
  private readonly options: DnsServiceOptions;
  private readonly metrics: DnsMetrics | null;
  private server: DnsServer | null = null;
  private forwarder: Forwarder | null = null;
  /** By directory. */
  private readonly watchers = new Map<string, FSWatcher>();
  private watchedFiles = new Set<string>();
  private wildcardDirectories = new Set<string>();
  private closed = false;
  private debounce: NodeJS.Timeout | null = null;
  private servedText = '';
  private servedServices = 0;

  constructor(options: DnsServiceOptions) {
    this.options = options;
    this.metrics = options.registry ? createDnsMetrics(options.registry) : null;
  }

  get addresses(): readonly BoundAddress[] {
    return this.server?.addresses ?? [];
  }

  /** Loads the topology (an error here stops the start), binds every listener, starts watching. */
  async start(): Promise<void> {
    const topology = this.options.source.load();
    const zone = this.buildZone(topology);
    if (this.options.upstreams.length > 0) {
      this.forwarder = new Forwarder(this.options.upstreams);
      await this.forwarder.start();
    }
    this.server = new DnsServer(zone, {
      listen: this.options.listen,
      forwarder: this.forwarder,
      udpSize: this.options.udpSize,
      tcpIdleTimeoutMs: this.options.tcpIdleTimeoutMs,
      tcpQueryTimeoutMs: this.options.tcpQueryTimeoutMs,
      tcpMaxConnections: this.options.tcpMaxConnections,
      tcpMaxConnectionsPerSource: this.options.tcpMaxConnectionsPerSource,
      metrics: this.metrics,
      logger: this.options.logger,
    });
    try {
      await this.server.start();
    } catch (err) {
      this.close();
      throw err;
    }
    this.servedText = serializeTopology(topology);
    this.servedServices = Object.keys(topology.services).length;
    if (this.servedServices === 0 && topology.allow_no_services !== true) {
      // Nothing better to serve at a start (refusing would take forwarding down too); say it loudly.
      this.options.logger.warn({ code: 'TOPOLOGY_ERR_NO_SERVICES', source: this.options.source.description }, 'the topology has no service: every service name answers NXDOMAIN');
    }
    this.metrics?.zoneNames(zone.nameCount, zone.views.views.length);
    this.syncWatchers();
    this.options.logger.info(
      { listen: this.addresses.filter((a) => a.transport === 'udp').map((a) => `${a.address}:${a.port}`), host: this.options.host, names: zone.nameCount, views: zone.views.views.length, upstreams: this.options.upstreams.map((u) => `${u.address}:${u.port}`) },
      'DNS server ready',
    );
  }

  /** Reads the source again and swaps the zone; a broken source keeps the old zone serving. */
  reload(reason: string): ReloadResult {
    const result = this.reloadZone(reason);
    // The inputs may name other files now (an include added or removed).
    if (!this.closed) this.syncWatchers();
    return result;
  }

  private reloadZone(reason: string): ReloadResult {
    const log = this.options.logger;
    const server = this.server;
    if (server === null) return 'failure';
    let topology: Topology;
    let zone: Zone;
    try {
      topology = this.options.source.load();
      const text = serializeTopology(topology);
      if (text === this.servedText) {
        this.metrics?.reload('unchanged');
        log.info({ reason, source: this.options.source.description }, 'topology unchanged; nothing to reload');
        return 'unchanged';
      }
      const services = Object.keys(topology.services).length;
      if (services === 0 && this.servedServices > 0 && topology.allow_no_services !== true) {
        throw new MeshplaneError(
          'TOPOLOGY_ERR_NO_SERVICES',
          `the new topology from ${this.options.source.description} has no service (the one served has ${this.servedServices}): every service name would answer NXDOMAIN. ` +
            'An emptied or truncated input is the usual cause; if an empty mesh is intended, set "allow_no_services: true" in services.yml and compile again',
        );
      }
      zone = this.buildZone(topology);
      this.servedText = text;
      this.servedServices = services;
    } catch (err) {
      this.metrics?.reload('failure');
      log.error({ err, reason, source: this.options.source.description, code: (err as { code?: string }).code }, 'reload failed; still serving the previous topology');
      return 'failure';
    }
    server.setZone(zone);
    this.metrics?.reload('success');
    this.metrics?.zoneNames(zone.nameCount, zone.views.views.length);
    log.info({ reason, names: zone.nameCount, views: zone.views.views.length }, 'topology reloaded');
    return 'success';
  }

  close(): void {
    this.closed = true;
    if (this.debounce !== null) clearTimeout(this.debounce);
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
    this.server?.close();
    this.forwarder?.close();
  }

  private buildZone(topology: Topology): Zone {
    const host = this.options.host;
    if (host !== null && !(host in topology.hosts)) {
      throw new MeshplaneError('DNS_ERR_UNKNOWN_HOST', `host "${host}" is not in the topology from ${this.options.source.description}; --host must name the host this server runs on`);
    }
    return new Zone(topology, {
      ttl: this.options.ttl ?? DEFAULT_TTL,
      negativeTtl: this.options.negativeTtl ?? DEFAULT_NEGATIVE_TTL,
      selfHost: host,
      // Where askers reach this server: the addresses it listens on, wildcards aside (a zone is no part of a record).
      nsAddresses: [...new Set(this.options.listen.map((l) => l.address.split('%')[0]!).filter((a) => a !== '0.0.0.0' && a !== '::'))],
    });
  }

  /**
   * Watches the directories of every input file (and of wildcard includes),
   * as of the last load: called after the start and after every reload, so
   * a newly included file is watched from then on.
   */
  private syncWatchers(): void {
    if (!(this.options.watch ?? true)) return;
    const list = this.options.source.watchList();
    this.watchedFiles = new Set(list.files);
    this.wildcardDirectories = new Set(list.directories);
    const wanted = new Set(watchedDirectories(list));
    for (const [directory, watcher] of this.watchers) {
      if (wanted.has(directory)) continue;
      watcher.close();
      this.watchers.delete(directory);
    }
    for (const directory of wanted) {
      if (this.watchers.has(directory)) continue;
      let watcher: FSWatcher;
      try {
        watcher = watch(directory, (_event, filename) => {
          const relevant = filename === null || this.wildcardDirectories.has(directory) || this.watchedFiles.has(join(directory, filename.toString()));
          if (relevant) this.scheduleReload();
        });
      } catch (err) {
        this.options.logger.warn({ err, directory }, 'cannot watch for topology changes; SIGHUP still reloads');
        continue;
      }
      watcher.on('error', (err) => this.options.logger.warn({ err, directory }, 'cannot watch for topology changes; SIGHUP still reloads'));
      this.watchers.set(directory, watcher);
    }
  }

  private scheduleReload(): void {
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      this.reload('file changed');
    }, WATCH_DEBOUNCE_MS);
  }
}
