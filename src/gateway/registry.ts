/**
 * The backends connected right now: one per agent connection, grouped by
 * service. A new connection from the same agent (same agent id) replaces
 * the old one at once, so a restarted agent never leaves a stale backend.
 */
import type { ClientHttp2Session } from 'node:http2';

export interface Backend {
  /** Connection id: new for every connection, also after a reconnect. */
  readonly id: string;
  readonly service: string;
  readonly credential: string;
  /** Serial of the client certificate the agent registered with (normalized hex), for revocation on reload. */
  readonly certificateSerial: string;
  /** Stable across the agent's reconnects (host, service, connection slot). */
  readonly agentId: string;
  readonly host: string;
  /** The agent's address as the gateway sees it. */
  readonly peer: string;
  readonly connectedAt: Date;
  readonly session: ClientHttp2Session;
  openStreams: number;
  /** Last HTTP/2 PING round trip, ms. */
  rttMs: number | null;
  /** Health per endpoint name (endpoints with checks enabled). */
  readonly health: Map<string, EndpointHealth>;
  /** Last load the backend reported in X-Iconia-Load; null when it reports none. */
  load: number | null;
  readonly outlier: OutlierState;
}

export type HealthState = 'unknown' | 'healthy' | 'unhealthy';

export interface EndpointHealth {
  state: HealthState;
  /** Consecutive results that disagree with `state` (counted towards rise or fall). */
  streak: number;
  /** Why the last check failed (status and body, timeout, broken tunnel); null after a pass. */
  reason: string | null;
  lastCheckAt: Date | null;
  lastDurationMs: number | null;
}

interface OutlierState {
  consecutiveFailures: number;
  /** Ejections so far, decaying while the backend behaves; sets the next ejection's length. */
  level: number;
  /** Epoch ms until which the backend is ejected; 0 when it is not. */
  ejectedUntil: number;
  /** When the last ejection ended (epoch ms), for the decay of `level`. */
  returnedAt: number;
}

/** The mutable state a backend starts with. */
export function freshBackendState(): Pick<Backend, 'openStreams' | 'rttMs' | 'health' | 'load' | 'outlier'> {
  return { openStreams: 0, rttMs: null, health: new Map(), load: null, outlier: { consecutiveFailures: 0, level: 0, ejectedUntil: 0, returnedAt: 0 } };
}

export class BackendRegistry {
  private readonly byId = new Map<string, Backend>();
  private readonly byAgent = new Map<string, Backend>();
  private readonly byService = new Map<string, Backend[]>();

  /** Adds a backend; returns the one it replaced (same agent id), which the caller closes. */
  add(backend: Backend): Backend | undefined {
    const previous = this.byAgent.get(backend.agentId);
    if (previous !== undefined) this.remove(previous.id);
    this.byId.set(backend.id, backend);
    this.byAgent.set(backend.agentId, backend);
    this.byService.set(backend.service, [...(this.byService.get(backend.service) ?? []), backend]);
    return previous;
  }

  /** Removes a backend; false when it was already gone (replaced or removed). */
  remove(id: string): boolean {
    const backend = this.byId.get(id);
    if (backend === undefined) return false;
    this.byId.delete(id);
    if (this.byAgent.get(backend.agentId) === backend) this.byAgent.delete(backend.agentId);
    const rest = (this.byService.get(backend.service) ?? []).filter((b) => b !== backend);
    if (rest.length > 0) this.byService.set(backend.service, rest);
    else this.byService.delete(backend.service);
    return true;
  }

  /** The backend registered under an agent id, if any. */
  forAgent(agentId: string): Backend | undefined {
    return this.byAgent.get(agentId);
  }

  get(id: string): Backend | undefined {
    return this.byId.get(id);
  }

  forService(service: string): readonly Backend[] {
    return this.byService.get(service) ?? [];
  }

  all(): Backend[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }
}
