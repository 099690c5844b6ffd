/**
 * Prometheus metrics of the DNS server, registered on a registry the caller
 * owns (never prom-client's global one). Query counts are kept in plain
 * numbers on the hot path and handed to prom-client when it is scraped.
 */
import { Counter, Gauge } from 'prom-client';
import type { Metric, Registry } from 'prom-client';
import { RCODE, TYPE } from './wire.js';

const TYPE_LABELS = ['A', 'AAAA', 'NS', 'SOA', 'ANY', 'other'] as const;
const RCODE_LABELS = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'BADVERS', 'other'] as const;

function typeSlot(type: number): number {
  switch (type) {
    case TYPE.A:
      return 0;
    case TYPE.AAAA:
      return 1;
    case TYPE.NS:
      return 2;
    case TYPE.SOA:
      return 3;
    case TYPE.ANY:
      return 4;
    default:
      return 5;
  }
}

function rcodeSlot(rcode: number): number {
  if (rcode <= RCODE.REFUSED) return rcode;
  return rcode === RCODE.BADVERS ? 6 : 7;
}

/**
 * Why the server closed a TCP connection (the `reason` label):
 * - `idle`: no byte of a next query within the idle timeout;
 * - `query_timeout`: a query begun but not complete within the query timeout;
 * - `evicted_source`: closed to make room for a new connection from the same
 *   source address, which had reached the per-source cap;
 * - `evicted_global`: closed to make room for a new connection when the global
 *   cap was reached (taken from the source holding the most connections);
 * - `refused`: a new connection closed at once: at the cap, with nothing evictable;
 * - `overflow`: the client sent more than we buffer without reading our replies.
 */
const TCP_CLOSE_REASONS = ['idle', 'query_timeout', 'evicted_source', 'evicted_global', 'refused', 'overflow'] as const;
export type TcpCloseReason = (typeof TCP_CLOSE_REASONS)[number];

/** What the query path counts (per process: in a cluster each worker has its own, summed at scrape). */
export interface QueryMetrics {
  /** One answered (or dropped-as-garbage) query. */
  query(view: string, type: number, rcode: number, seconds: number): void;
  forwarded(result: 'answered' | 'failed'): void;
  tcpConnections(delta: number): void;
  tcpRefused(): void;
  /** A TCP connection we closed because of a limit. */
  tcpClosed(reason: TcpCloseReason): void;
}

/** What the owner of the topology counts (in a cluster: the primary, once for all workers). */
export interface ZoneMetrics {
  reload(result: 'success' | 'failure' | 'unchanged'): void;
  zoneNames(count: number, views: number): void;
}

export type DnsMetrics = QueryMetrics & ZoneMetrics;

export function createDnsMetrics(registry: Registry): DnsMetrics {
  return { ...createQueryMetrics(registry, null), ...createZoneMetrics(registry) };
}

/**
 * @param worker a cluster worker's id: its total also goes out as
 *   `meshplane_dns_worker_queries_total{worker}` (worked out at scrape
 *   time from the same counts), so the balance across workers shows.
 */
export function createQueryMetrics(registry: Registry, worker: string | null): QueryMetrics {
  // view label -> counts by [type slot][rcode slot]; the hot path only indexes arrays.
  const counts = new Map<string, Float64Array>();
  let lastView: string | null = null;
  let lastTable: Float64Array | undefined;
  new Counter({
    name: 'meshplane_dns_queries_total',
    help: 'DNS queries answered, by query type, response code and view (the asker\'s overlay set; "public" outside the mesh)',
    labelNames: ['type', 'rcode', 'view'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [view, table] of counts) {
        table.forEach((value, index) => {
          if (value > 0) this.inc({ type: TYPE_LABELS[Math.floor(index / RCODE_LABELS.length)]!, rcode: RCODE_LABELS[index % RCODE_LABELS.length]!, view }, value);
        });
      }
    },
  });
  if (worker !== null) {
    new Counter({
      name: 'meshplane_dns_worker_queries_total',
      help: 'DNS queries answered by each cluster worker (meshplane dns --workers): how the kernel spreads the load',
      labelNames: ['worker'],
      registers: [registry],
      collect() {
        let total = 0;
        for (const table of counts.values()) for (const value of table) total += value;
        this.reset();
        this.inc({ worker }, total);
      },
    });
  }
  const observeLatency = latencyHistogram(registry);
  const forwards = new Counter({
    name: 'meshplane_dns_forwarded_total',
    help: 'Queries outside the zone sent upstream, by result',
    labelNames: ['result'],
    registers: [registry],
  });
  const connections = new Gauge({ name: 'meshplane_dns_tcp_connections', help: 'Open TCP connections', registers: [registry] });
  const refused = new Counter({
    name: 'meshplane_dns_tcp_refused_total',
    help: 'TCP connections closed at once because the connection cap was reached and no other connection could be evicted',
    registers: [registry],
  });
  const closed = new Counter({
    name: 'meshplane_dns_tcp_closed_total',
    help: 'TCP connections the server closed because of a limit, by reason: idle, query_timeout, evicted_source, evicted_global, refused, overflow',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of TCP_CLOSE_REASONS) closed.inc({ reason }, 0);
  return {
    query(view, type, rcode, seconds) {
      // Runs per query: the last view's table is at hand (a per-host server has one view), else one Map lookup.
      let table = view === lastView ? lastTable : counts.get(view);
      if (table === undefined) counts.set(view, (table = new Float64Array(TYPE_LABELS.length * RCODE_LABELS.length)));
      lastView = view;
      lastTable = table;
      table[typeSlot(type) * RCODE_LABELS.length + rcodeSlot(rcode)]! += 1;
      observeLatency(seconds);
    },
    forwarded: (result) => forwards.inc({ result }),
    tcpConnections: (delta) => connections.inc(delta),
    tcpRefused: () => refused.inc(),
    tcpClosed: (reason) => closed.inc({ reason }),
  };
}

export function createZoneMetrics(registry: Registry): ZoneMetrics {
  const reloads = new Counter({
    name: 'meshplane_dns_reloads_total',
    help: 'Topology reloads by result: success, failure (old topology kept), unchanged',
    labelNames: ['result'],
    registers: [registry],
  });
  // Every result from 0: increase() misses a counter's first step when its series starts at 1.
  for (const result of ['success', 'failure', 'unchanged']) reloads.inc({ result }, 0);
  const names = new Gauge({ name: 'meshplane_dns_zone_names', help: 'Names in the served zone', registers: [registry] });
  const views = new Gauge({ name: 'meshplane_dns_views', help: 'Distinct views (overlay sets) in the served topology', registers: [registry] });

  return {
    reload: (result) => reloads.inc({ result }),
    zoneNames(count, viewCount) {
      names.set(count);
      views.set(viewCount);
    },
  };
}

const LATENCY_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1, 0.5, 2];

/**
 * meshplane_dns_request_duration_seconds, kept in a typed array and handed
 * to prom-client only when scraped: prom-client's Histogram.observe() makes
 * a closure and hashes its labels on every call, which showed in the
 * profile of the query path (BENCHMARKS.md). Same buckets, same exposition.
 */
function latencyHistogram(registry: Registry): (seconds: number) => void {
  const name = 'meshplane_dns_request_duration_seconds';
  const help = 'Time from receiving a query to handing its reply to the socket (forwarded queries include the upstream)';
  const counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  let sum = 0;
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get() {
      let cumulative = 0;
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = LATENCY_BUCKETS.map((le, i) => ({ labels: { le }, value: (cumulative += counts[i]!), metricName: `${name}_bucket` }));
      const count = cumulative + counts[LATENCY_BUCKETS.length]!;
      values.push({ labels: { le: '+Inf' }, value: count, metricName: `${name}_bucket` }, { labels: {}, value: sum, metricName: `${name}_sum` }, { labels: {}, value: count, metricName: `${name}_count` });
      return Promise.resolve({ name, help, type: 'histogram', aggregator: 'sum', values });
    },
    reset() {
      counts.fill(0);
      sum = 0;
    },
  };
  registry.registerMetric(metric as unknown as Metric);
  return (seconds) => {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    counts[i]! += 1;
    sum += seconds;
  };
}
