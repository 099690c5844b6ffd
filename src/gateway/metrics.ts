/**
 * The gateway's Prometheus metrics, on the registry it is given (never the
 * global one). Per-backend gauges are read from the live registry at scrape
 * time, so a backend that goes (killed, disconnected) vanishes from the next
 * scrape; its histograms and counters are removed when it deregisters.
 * Every name is listed in README.md.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import { isEjected } from './balance.js';
import type { CheckResult } from './health.js';
import type { LimitReason } from './limits.js';
import type { Backend, BackendRegistry } from './registry.js';

/**
 * A backend in labels: its service, host and the agent's connection slot
 * (`slot`), all stable across the agent's reconnects. The connection id
 * changes on every reconnect, so it stays in logs and the admin API: as a
 * label it would churn series and break graphs.
 */
type BackendLabels = 'service' | 'host' | 'slot';
const LIMIT_REASONS: readonly LimitReason[] = ['listener_full', 'source_full', 'handshake_timeout'];
const BACKEND_LABELS: BackendLabels[] = ['service', 'host', 'slot'];

function backendLabels(backend: Backend): Record<BackendLabels, string> {
  // The agent id is host/service/slot (the agent's hello); the slot is its last part.
  const slash = backend.agentId.lastIndexOf('/');
  return { service: backend.service, host: backend.host, slot: slash < 0 ? '0' : backend.agentId.slice(slash + 1) };
}

const sameLabels = (a: Backend, b: Backend): boolean => a.service === b.service && a.host === b.host && backendLabels(a).slot === backendLabels(b).slot;

/** Is a backend routable for all its checked endpoints (for the per-service count)? */
export function isServing(backend: Backend): boolean {
  return !isEjected(backend) && [...backend.health.values()].every((h) => h.state === 'healthy');
}

export class GatewayMetrics {
  private readonly authFailures: Counter<'reason'>;
  private readonly connections: Counter<'port' | 'result'>;
  private readonly connectionsLimited: Counter<'listener' | 'port' | 'reason'>;
  private readonly adminRefusals: Counter<'code'>;
  private readonly ttfb: Histogram<BackendLabels>;
  private readonly checkDuration: Histogram<BackendLabels | 'endpoint'>;
  private readonly checks: Counter<BackendLabels | 'endpoint' | 'result'>;
  private readonly ejections: Counter<'service'>;
  private readonly kills: Counter<'service'>;
  /** Endpoints each backend was checked for, to remove their series when it goes. */
  private readonly checkedEndpoints = new Map<string, Set<string>>();
  private readonly backends: BackendRegistry;

  /**
   * `services` names the services that take gateway traffic: each gets a
   * per-service series even with no backend connected (0, not absent, so
   * "no backends" can be alerted on).
   */
  constructor(registry: Registry, backends: BackendRegistry, services: () => Iterable<string> = () => []) {
    this.backends = backends;
    const registers = [registry];
    this.authFailures = new Counter({ name: 'meshplane_gateway_auth_failures_total', help: 'Agent registrations refused, by reason', labelNames: ['reason'], registers });
    this.connections = new Counter({ name: 'meshplane_gateway_connections_total', help: 'Client connections on the fronts, by port and result (routed or the refusal reason)', labelNames: ['port', 'result'], registers });
    this.connectionsLimited = new Counter({
      name: 'meshplane_gateway_connections_limited_total',
      help: 'Connections closed by a limit: at the listener cap or the per-source cap (closed at accept), or at the TLS handshake deadline; by listener (front, registration, admin), port and reason',
      labelNames: ['listener', 'port', 'reason'],
      registers,
    });
    this.adminRefusals = new Counter({ name: 'meshplane_gateway_admin_refusals_total', help: 'Admin API requests refused by authentication, by error code', labelNames: ['code'], registers });
    this.ttfb = new Histogram({
      name: 'meshplane_gateway_backend_first_byte_seconds',
      help: "Time from opening a tunnelled connection to the backend's first byte back",
      labelNames: BACKEND_LABELS,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.checkDuration = new Histogram({
      name: 'meshplane_gateway_health_check_duration_seconds',
      help: 'Duration of health checks through the tunnel',
      labelNames: [...BACKEND_LABELS, 'endpoint'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.checks = new Counter({ name: 'meshplane_gateway_health_checks_total', help: 'Health checks by result (pass or fail)', labelNames: [...BACKEND_LABELS, 'endpoint', 'result'], registers });
    this.ejections = new Counter({ name: 'meshplane_gateway_ejections_total', help: 'Backends ejected as outliers after consecutive connection failures', labelNames: ['service'], registers });
    this.kills = new Counter({ name: 'meshplane_gateway_kills_total', help: 'Backends killed by id (admin API), or cut off by a reload that no longer authorizes them', labelNames: ['service'], registers });

    const perBackend = (name: string, help: string, value: (b: Backend) => number | null): void => {
      new Gauge({
        name,
        help,
        labelNames: BACKEND_LABELS,
        registers,
        collect() {
          this.reset();
          for (const b of backends.all()) {
            const v = value(b);
            if (v !== null) this.set(backendLabels(b), v);
          }
        },
      });
    };
    new Gauge({
      name: 'meshplane_gateway_backends',
      help: 'Connected backends per service',
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        for (const service of services()) this.set({ service }, 0);
        for (const b of backends.all()) this.inc({ service: b.service });
      },
    });
    new Gauge({
      name: 'meshplane_gateway_backends_serving',
      help: 'Connected backends per service that are healthy on every checked endpoint and not ejected',
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        for (const service of services()) this.set({ service }, 0);
        for (const b of backends.all()) this.inc({ service: b.service }, isServing(b) ? 1 : 0);
      },
    });
    perBackend('meshplane_gateway_backend_rtt_seconds', 'Tunnel round-trip time (last HTTP/2 PING)', (b) => (b.rttMs === null ? null : b.rttMs / 1000));
    perBackend('meshplane_gateway_backend_open_connections', 'Tunnelled connections open to the backend', (b) => b.openStreams);
    perBackend('meshplane_gateway_backend_load', 'Load the backend last reported in X-Iconia-Load', (b) => b.load);
    perBackend('meshplane_gateway_backend_ejected', '1 while the backend is ejected as an outlier', (b) => (isEjected(b) ? 1 : 0));
    new Gauge({
      name: 'meshplane_gateway_backend_healthy',
      help: 'Health per backend and endpoint: 1 healthy, 0 unhealthy or not yet checked',
      labelNames: [...BACKEND_LABELS, 'endpoint'],
      registers,
      collect() {
        this.reset();
        for (const b of backends.all()) for (const [endpoint, h] of b.health) this.set({ ...backendLabels(b), endpoint }, h.state === 'healthy' ? 1 : 0);
      },
    });
  }

  authFailure(reason: string): void {
    this.authFailures.inc({ reason });
  }

  connection(port: number, result: string): void {
    this.connections.inc({ port: String(port), result });
  }

  limited(listener: string, port: number, reason: string): void {
    this.connectionsLimited.inc({ listener, port: String(port), reason });
  }

  /** A listener is open: its limit counters start at 0 (increase() misses a series' first step). */
  listening(listener: string, port: number): void {
    for (const reason of LIMIT_REASONS) this.connectionsLimited.inc({ listener, port: String(port), reason }, 0);
  }

  adminRefused(code: string): void {
    this.adminRefusals.inc({ code });
  }

  firstByte(backend: Backend, seconds: number): void {
    this.ttfb.observe(backendLabels(backend), seconds);
  }

  healthChecked(backend: Backend, endpoint: string, result: CheckResult): void {
    let seen = this.checkedEndpoints.get(backend.id);
    if (seen === undefined) this.checkedEndpoints.set(backend.id, (seen = new Set()));
    seen.add(endpoint);
    const labels = { ...backendLabels(backend), endpoint };
    this.checkDuration.observe(labels, result.durationMs / 1000);
    this.checks.inc({ ...labels, result: result.ok ? 'pass' : 'fail' });
  }

  ejected(backend: Backend): void {
    this.ejections.inc({ service: backend.service });
  }

  killed(backend: Backend): void {
    this.kills.inc({ service: backend.service });
  }

  /**
   * A backend went: its series go with it (no unbounded growth as hosts
   * come and go), unless its agent is already back on the same slot, whose
   * series these are.
   */
  forget(backend: Backend): void {
    const endpoints = this.checkedEndpoints.get(backend.id) ?? [];
    this.checkedEndpoints.delete(backend.id);
    if (this.backends.all().some((other) => other !== backend && sameLabels(other, backend))) return;
    const base = backendLabels(backend);
    this.ttfb.remove(base);
    for (const endpoint of endpoints) {
      this.checkDuration.remove({ ...base, endpoint });
      for (const result of ['pass', 'fail']) this.checks.remove({ ...base, endpoint, result });
    }
  }
}

