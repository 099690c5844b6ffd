/** How the admin API and the status page show a backend (JSON, snake_case). */
import { isEjected } from './balance.js';
import type { Backend } from './registry.js';

type OverallHealth = 'healthy' | 'unhealthy' | 'unknown' | 'unchecked';

export interface BackendView {
  readonly id: string;
  readonly service: string;
  readonly credential: string;
  readonly agent_id: string;
  readonly host: string;
  readonly agent_address: string;
  readonly connected_since: string;
  /** unhealthy if any checked endpoint is; unknown before the first verdict; unchecked when no endpoint checks. */
  readonly health: OverallHealth;
  readonly checks: Record<string, { state: string; reason: string | null; last_check_at: string | null; duration_ms: number | null }>;
  readonly load: number | null;
  readonly open_connections: number;
  readonly rtt_ms: number | null;
  readonly ejected_until: string | null;
}

function overallHealth(backend: Backend): OverallHealth {
  const states = [...backend.health.values()].map((h) => h.state);
  if (states.length === 0) return 'unchecked';
  if (states.includes('unhealthy')) return 'unhealthy';
  if (states.includes('unknown')) return 'unknown';
  return 'healthy';
}

export function backendView(backend: Backend, now = Date.now()): BackendView {
  return {
    id: backend.id,
    service: backend.service,
    credential: backend.credential,
    agent_id: backend.agentId,
    host: backend.host,
    agent_address: backend.peer,
    connected_since: backend.connectedAt.toISOString(),
    health: overallHealth(backend),
    checks: Object.fromEntries(
      [...backend.health].map(([endpoint, h]) => [
        endpoint,
        { state: h.state, reason: h.reason, last_check_at: h.lastCheckAt?.toISOString() ?? null, duration_ms: h.lastDurationMs === null ? null : Math.round(h.lastDurationMs * 1000) / 1000 },
      ]),
    ),
    load: backend.load,
    open_connections: backend.openStreams,
    rtt_ms: backend.rttMs,
    ejected_until: isEjected(backend, now) ? new Date(backend.outlier.ejectedUntil).toISOString() : null,
  };
}
