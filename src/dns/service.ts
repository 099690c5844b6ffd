/**
 * A running DNS service: the server plus everything around it — forwarding,
 * metrics, and a zone that follows the LiveTopology (file changes, SIGHUP
 * wired by the CLI). A reload that fails keeps the old zone serving and
 * says why in the log; so does a topology this server cannot build a zone
 * from (its --host gone).
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { MeshplaneError } from '../errors.js';
import type { LiveTopology, ReloadOutcome, Topology } from '../topology/index.js';
import { Forwarder } from './forwarder.js';
import type { SocketAddress } from './listen.js';
import { createDnsMetrics } from './metrics.js';
import type { DnsMetrics } from './metrics.js';
import { DnsServer } from './server.js';
import type { BoundAddress } from './server.js';
import { DEFAULT_NEGATIVE_TTL, DEFAULT_TTL, Zone } from './zone.js';

export interface DnsServiceOptions {
  /**
   * Where the zone comes from. DnsService starts it if it is not started yet
   * (and then closes it on close()); whether it watches files is its own option.
   */
  readonly topology: LiveTopology;
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
  readonly registry?: Registry | null;
  readonly logger: Logger;
}

type ReloadResult = ReloadOutcome;

export class DnsService {
  private readonly options: DnsServiceOptions;
  private readonly live: LiveTopology;
  private readonly metrics: DnsMetrics | null;
  private server: DnsServer | null = null;
  private forwarder: Forwarder | null = null;
  private ownsTopology = false;
  private readonly unsubscribe: (() => void)[] = [];
  /** Whether the last accepted change became a zone (false: the old zone still serves). */
  private lastApplied = true;
  /** The topology the served zone was built from. */
  private servedTopology: Topology | null = null;

  constructor(options: DnsServiceOptions) {
    this.options = options;
    this.live = options.topology;
    this.metrics = options.registry ? createDnsMetrics(options.registry) : null;
  }

  get addresses(): readonly BoundAddress[] {
    return this.server?.addresses ?? [];
  }

  /** Loads the topology (an error here stops the start), binds every listener, follows changes. */
  async start(): Promise<void> {
    if (!this.live.started) {
      this.live.start();
      this.ownsTopology = true;
    }
    let zone: Zone;
    try {
      zone = await this.startServer();
    } catch (err) {
      this.close();
      throw err;
    }
    this.unsubscribe.push(
      this.live.subscribe((change) => this.apply(change.current, change.reason)),
      this.live.onError(() => this.metrics?.reload('failure')),
      this.live.onOutcome((outcome) => {
        if (outcome === 'unchanged') this.metrics?.reload('unchanged');
      }),
    );
    this.metrics?.zoneNames(zone.nameCount, zone.views.views.length);
    // A change accepted while the listeners were binding: not seen by the subscriber yet.
    if (this.live.current !== this.servedTopology) this.apply(this.live.current, 'changed during start');
    this.options.logger.info(
      { listen: this.addresses.filter((a) => a.transport === 'udp').map((a) => `${a.address}:${a.port}`), host: this.options.host, names: zone.nameCount, views: zone.views.views.length, upstreams: this.options.upstreams.map((u) => `${u.address}:${u.port}`) },
      'DNS server ready',
    );
  }

  private async startServer(): Promise<Zone> {
    const topology = this.live.current;
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
    this.servedTopology = topology;
    await this.server.start();
    return zone;
  }

  /**
   * Reads the source again (through the LiveTopology) and swaps the zone; a
   * broken source, or one this server cannot build its zone from, keeps the
   * old zone serving.
   */
  async reload(reason: string): Promise<ReloadResult> {
    if (this.server === null) return 'failure';
    const outcome = await this.live.reload(reason);
    return outcome === 'success' && !this.lastApplied ? 'failure' : outcome;
  }

  close(): void {
    for (const unsubscribe of this.unsubscribe.splice(0)) unsubscribe();
    if (this.ownsTopology) this.live.close();
    this.server?.close();
    this.forwarder?.close();
  }

  /** A change the LiveTopology accepted: a new zone, unless this server cannot build one from it. */
  private apply(topology: Topology, reason: string): void {
    const server = this.server;
    if (server === null) return;
    let zone: Zone;
    try {
      zone = this.buildZone(topology);
    } catch (err) {
      this.lastApplied = false;
      this.metrics?.reload('failure');
      this.options.logger.error({ err, reason, source: this.live.description, code: (err as { code?: string }).code }, 'reload failed; still serving the previous topology');
      return;
    }
    this.lastApplied = true;
    server.setZone(zone);
    this.servedTopology = topology;
    this.metrics?.reload('success');
    this.metrics?.zoneNames(zone.nameCount, zone.views.views.length);
    this.options.logger.info({ reason, names: zone.nameCount, views: zone.views.views.length }, 'topology reloaded');
  }

  private buildZone(topology: Topology): Zone {
    return buildServedZone(topology, this.options, this.live.description);
  }
}

/** What a zone is built from besides the Topology (a cluster worker gets these from the primary). */
export type ZoneSettings = Pick<DnsServiceOptions, 'host' | 'listen' | 'ttl' | 'negativeTtl'>;

/** `host` when the topology has it (or null, a central server); else DNS_ERR_UNKNOWN_HOST. */
export function checkHost(topology: Topology, host: string | null, description: string): string | null {
  if (host !== null && !(host in topology.hosts)) {
    throw new MeshplaneError('DNS_ERR_UNKNOWN_HOST', `host "${host}" is not in the topology from ${description}; --host must name the host this server runs on`);
  }
  return host;
}

/** The zone this server serves from `topology`; DNS_ERR_UNKNOWN_HOST when --host is not in it. */
export function buildServedZone(topology: Topology, settings: ZoneSettings, description: string): Zone {
  const host = checkHost(topology, settings.host, description);
  return new Zone(topology, {
    ttl: settings.ttl ?? DEFAULT_TTL,
    negativeTtl: settings.negativeTtl ?? DEFAULT_NEGATIVE_TTL,
    selfHost: host,
    // Where askers reach this server: the addresses it listens on, wildcards aside (a zone is no part of a record).
    nsAddresses: [...new Set(settings.listen.map((l) => l.address.split('%')[0]!).filter((a) => a !== '0.0.0.0' && a !== '::'))],
  });
}
