/**
 * Backend selection for a routed client connection. First the eligible
 * backends of the route's service: tunnel up, healthy for the endpoint
 * (when it has checks), not ejected as an outlier, under the endpoint's
 * `max_connections`. Then the endpoint's `balance` policy picks one:
 *
 *   least_load       power of two choices: two at random, the lower score
 *                    (1 + reported load) x (1 + open connections) wins
 *   round_robin      in turn, per endpoint
 *   random           uniformly
 *   client_affinity  rendezvous (highest random weight) hash of the client
 *   (alias source)   address and the agent id: a client stays on its
 *                    backend, and when backends come or go only the
 *                    clients of those backends move
 *
 * Outlier ejection: `consecutive_errors` failed tunnelled connections in a
 * row eject a backend for ejection_time x 2^level (level = earlier
 * ejections, capped, one forgiven per ejection_time of good behaviour).
 */
import { createHash } from 'node:crypto';
import type { TopologyGatewayEndpoint } from '../topology/index.js';
import type { Backend, BackendRegistry } from './registry.js';
import type { Route } from './routes.js';

type PickRefusal = 'no_backend' | 'no_healthy_backend' | 'backends_full';

export type PickResult = { readonly backend: Backend } | { readonly refusal: PickRefusal; readonly detail: string };

/** What the fronts need: a backend for a route and a client, and how each attempt went. */
export interface BackendPicker {
  pick(route: Route, clientAddress: string): PickResult;
}

interface OutlierEvents {
  ejected(backend: Backend, forMs: number, failures: number): void;
}

/** Longest ejection, as a multiple of the base time. */
const MAX_EJECTION_FACTOR = 16;

export function isEjected(backend: Backend, now = Date.now()): boolean {
  return backend.outlier.ejectedUntil > now;
}

/** Healthy for this endpoint: checks off, or its last verdict was healthy. */
function isHealthyFor(backend: Backend, endpoint: TopologyGatewayEndpoint): boolean {
  if (!endpoint.health.enabled) return true;
  return backend.health.get(endpoint.name)?.state === 'healthy';
}

function score(backend: Backend): number {
  return (1 + (backend.load ?? 0)) * (1 + backend.openStreams);
}

export function rendezvousWeight(client: string, backend: Backend): bigint {
  return createHash('sha256').update(client).update('\0').update(backend.agentId).digest().readBigUInt64BE(0);
}

/** IPv4-mapped IPv6 is the IPv4 client it is. */
function clientKey(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export class Balancer implements BackendPicker {
  private readonly turns = new Map<string, number>();

  constructor(
    private readonly registry: BackendRegistry,
    private readonly events: OutlierEvents,
    private readonly random: () => number = Math.random,
    private readonly now: () => number = Date.now,
  ) {}

  pick(route: Route, clientAddress: string): PickResult {
    const { endpoint } = route;
    const connected = this.registry.forService(route.service).filter((b) => !b.session.closed && !b.session.destroyed);
    if (connected.length === 0) return { refusal: 'no_backend', detail: `no backend connected for service ${route.service}` };
    const now = this.now();
    const healthy = connected.filter((b) => isHealthyFor(b, endpoint));
    if (healthy.length === 0) return { refusal: 'no_healthy_backend', detail: `no healthy backend for service ${route.service} (${connected.length} connected, none passing its health check)` };
    // Ejection sets outliers aside, but never empties a service: that is for health checks to decide.
    const inService = healthy.filter((b) => !isEjected(b, now));
    const pool = inService.length > 0 ? inService : healthy;
    const max = endpoint.max_connections;
    const open = max === null ? pool : pool.filter((b) => b.openStreams < max);
    if (open.length === 0) return { refusal: 'backends_full', detail: `every healthy backend of service ${route.service} has ${max} open connections (max_connections)` };
    return { backend: this.choose(route, open, clientAddress) };
  }

  private choose(route: Route, candidates: readonly Backend[], clientAddress: string): Backend {
    if (candidates.length === 1) return candidates[0]!;
    switch (route.endpoint.balance) {
      case 'round_robin': {
        const key = `${route.service}/${route.endpoint.name}`;
        const turn = this.turns.get(key) ?? 0;
        this.turns.set(key, (turn + 1) % 1_000_000_007);
        return candidates[turn % candidates.length]!;
      }
      case 'random':
        return candidates[Math.floor(this.random() * candidates.length)]!;
      case 'client_affinity': {
        const client = clientKey(clientAddress);
        let best = candidates[0]!;
        let bestWeight = rendezvousWeight(client, best);
        for (const candidate of candidates.slice(1)) {
          const weight = rendezvousWeight(client, candidate);
          if (weight > bestWeight) [best, bestWeight] = [candidate, weight];
        }
        return best;
      }
      case 'least_load':
      default: {
        const i = Math.floor(this.random() * candidates.length);
        const j = (i + 1 + Math.floor(this.random() * (candidates.length - 1))) % candidates.length;
        const a = candidates[i]!;
        const b = candidates[j]!;
        return score(b) < score(a) ? b : a;
      }
    }
  }

  /** A tunnelled connection reached the backend's service. */
  succeeded(backend: Backend): void {
    backend.outlier.consecutiveFailures = 0;
  }

  /** A tunnelled connection failed (stream error, or the agent could not reach its service). */
  failed(backend: Backend, endpoint: TopologyGatewayEndpoint): void {
    const outlier = backend.outlier;
    outlier.consecutiveFailures++;
    const now = this.now();
    if (!endpoint.outlier.enabled || isEjected(backend, now) || outlier.consecutiveFailures < endpoint.outlier.consecutive_errors) return;
    const base = endpoint.outlier.ejection_ms;
    // Forgive one earlier ejection per base time spent back in service.
    if (outlier.returnedAt > 0) outlier.level = Math.max(0, outlier.level - Math.floor((now - outlier.returnedAt) / Math.max(base, 1)));
    const forMs = base * Math.min(MAX_EJECTION_FACTOR, 2 ** outlier.level);
    outlier.level++;
    outlier.ejectedUntil = now + forMs;
    outlier.returnedAt = outlier.ejectedUntil;
    const failures = outlier.consecutiveFailures;
    outlier.consecutiveFailures = 0;
    this.events.ejected(backend, forMs, failures);
  }
}
