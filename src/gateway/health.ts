/**
 * Health checks through the tunnel. For every connected backend and every
 * endpoint of its service with checks enabled, the gateway opens a GET
 * stream on the agent's HTTP/2 session (the agent asks its local backend,
 * see src/agent/health-answer.ts), every `interval`, cancelled after
 * `timeout`. 200 passes; any other status, a timeout or a broken tunnel
 * fails, and the body (or the error) becomes the reason.
 *
 * States: a new backend is `unknown` (not routed to) until its first
 * result decides; after that `fall` failures in a row make a healthy one
 * unhealthy and `rise` passes in a row make an unhealthy one healthy.
 */
import { constants as http2Constants } from 'node:http2';
import type { Topology, TopologyGatewayEndpoint } from '../topology/index.js';
import { HEADER, HEALTH_BODY_MAX_BYTES, HEALTH_HOST, LOAD_HEADER } from '../lib/tunnel-io.js';
import type { Backend, EndpointHealth, HealthState } from './registry.js';

export interface CheckResult {
  readonly ok: boolean;
  readonly durationMs: number;
  /** Reported load (X-Iconia-Load), when the answer carried a valid one. */
  readonly load: number | null;
  readonly reason: string | null;
}

interface HealthEvents {
  checked(backend: Backend, endpoint: string, result: CheckResult): void;
  changed(backend: Backend, endpoint: string, from: HealthState, to: HealthState, reason: string | null): void;
}

/** One check over the backend's tunnel. Never rejects. */
export function checkOnce(backend: Backend, endpoint: TopologyGatewayEndpoint): Promise<CheckResult> {
  const started = performance.now();
  const finish = (ok: boolean, reason: string | null, load: number | null = null): CheckResult => ({ ok, reason, load, durationMs: performance.now() - started });
  return new Promise((resolve) => {
    let stream;
    try {
      stream = backend.session.request(
        // The request the backend will see: GET <path> with Host iconia-healthcheck (the agent asks it the same over HTTP/1.1).
        { ':method': 'GET', ':path': endpoint.health.path, ':authority': HEALTH_HOST, [HEADER.healthEndpoint]: endpoint.name, ...(endpoint.mode === 'tls' ? { [HEADER.healthTls]: '1' } : {}) },
        { endStream: true },
      );
    } catch (err) {
      resolve(finish(false, `tunnel: ${(err as Error).message}`));
      return;
    }
    let settled = false;
    const settle = (result: CheckResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const timer = setTimeout(() => {
      settle(finish(false, `no answer within ${endpoint.health.timeout_ms} ms`));
      stream.close(http2Constants.NGHTTP2_CANCEL);
    }, endpoint.health.timeout_ms);
    let status = 0;
    let load: number | null = null;
    let body = '';
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
      const reported = Number(headers[LOAD_HEADER]);
      load = headers[LOAD_HEADER] !== undefined && Number.isFinite(reported) && reported >= 0 ? reported : null;
    });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      if (body.length < HEALTH_BODY_MAX_BYTES) body += chunk;
    });
    stream.on('error', (err: Error) => settle(finish(false, `tunnel: ${err.message}`)));
    stream.on('end', () => {
      const text = body.trim().slice(0, HEALTH_BODY_MAX_BYTES);
      settle(status === 200 ? finish(true, null, load) : finish(false, `HTTP ${status}${text === '' ? '' : `: ${text}`}`, load));
    });
    stream.on('close', () => settle(finish(false, 'tunnel: check stream closed before an answer')));
  });
}

/** The next state after one result (rise/fall hysteresis). */
export function nextHealth(current: EndpointHealth, ok: boolean, rise: number, fall: number): { state: HealthState; streak: number } {
  if (current.state === 'unknown') return { state: ok ? 'healthy' : 'unhealthy', streak: 0 };
  const agrees = (current.state === 'healthy') === ok;
  if (agrees) return { state: current.state, streak: 0 };
  const streak = current.streak + 1;
  if (streak >= (current.state === 'healthy' ? fall : rise)) return { state: ok ? 'healthy' : 'unhealthy', streak: 0 };
  return { state: current.state, streak };
}

export class HealthMonitor {
  private readonly timers = new Map<Backend, Map<string, NodeJS.Timeout>>();
  private topology: Topology;

  constructor(
    topology: Topology,
    private readonly events: HealthEvents,
  ) {
    this.topology = topology;
  }

  /** Starts checking a new backend at once (it is not routed to before its first pass). */
  add(backend: Backend): void {
    this.timers.set(backend, new Map());
    this.sync(backend);
  }

  remove(backend: Backend): void {
    for (const timer of this.timers.get(backend)?.values() ?? []) clearTimeout(timer);
    this.timers.delete(backend);
  }

  /** New topology: endpoints with checks start being checked, the others stop (and their state goes). */
  setTopology(topology: Topology): void {
    this.topology = topology;
    for (const backend of this.timers.keys()) this.sync(backend);
  }

  close(): void {
    for (const backend of [...this.timers.keys()]) this.remove(backend);
  }

  private endpoints(backend: Backend): TopologyGatewayEndpoint[] {
    return (this.topology.services[backend.service]?.gateway_endpoints ?? []).filter((e) => e.health.enabled);
  }

  private sync(backend: Backend): void {
    const timers = this.timers.get(backend);
    if (timers === undefined) return;
    const wanted = new Set(this.endpoints(backend).map((e) => e.name));
    for (const [name, timer] of timers) {
      if (!wanted.has(name)) {
        clearTimeout(timer);
        timers.delete(name);
        backend.health.delete(name);
      }
    }
    for (const name of wanted) {
      if (timers.has(name)) continue;
      backend.health.set(name, { state: 'unknown', streak: 0, reason: null, lastCheckAt: null, lastDurationMs: null });
      timers.set(name, setTimeout(() => void this.run(backend, name), 0));
    }
  }

  private async run(backend: Backend, name: string): Promise<void> {
    const endpoint = this.endpoints(backend).find((e) => e.name === name);
    const timers = this.timers.get(backend);
    if (endpoint === undefined || timers === undefined) return;
    const started = Date.now();
    const result = await checkOnce(backend, endpoint);
    // Removed (deregistered, or the endpoint went) while the check ran.
    if (this.timers.get(backend) !== timers || !timers.has(name)) return;
    const health = backend.health.get(name);
    if (health === undefined) return;
    if (result.ok || result.load !== null) backend.load = result.load;
    health.lastCheckAt = new Date();
    health.lastDurationMs = result.durationMs;
    const next = nextHealth(health, result.ok, endpoint.health.rise, endpoint.health.fall);
    // A failure's reason stays until the backend is healthy again.
    health.reason = result.ok ? (next.state === 'healthy' ? null : health.reason) : result.reason;
    const from = health.state;
    health.state = next.state;
    health.streak = next.streak;
    this.events.checked(backend, name, result);
    if (from !== next.state) this.events.changed(backend, name, from, next.state, result.reason);
    const timer = setTimeout(() => void this.run(backend, name), Math.max(0, endpoint.health.interval_ms - (Date.now() - started)));
    timer.unref();
    timers.set(name, timer);
  }
}
