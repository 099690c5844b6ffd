/**
 * The messages between the primary of `meshplane dns --workers N` and its
 * workers (Node `cluster` IPC, advanced serialization). The primary owns the
 * LiveTopology; a worker only ever serves the Topology it was last sent.
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { SocketAddress } from './listen.js';
import type { BoundAddress } from './server.js';
import type { ZoneSettings } from './service.js';

/** What a worker needs to serve, besides the Topology. */
export interface WorkerSettings extends ZoneSettings {
  /** 1..N, stable across a restart of that worker: the `worker` label of its metrics and logs. */
  readonly index: number;
  readonly upstreams: readonly SocketAddress[];
  readonly udpSize?: number;
  readonly tcpIdleTimeoutMs?: number;
  readonly tcpQueryTimeoutMs?: number;
  readonly tcpMaxConnections?: number;
  readonly tcpMaxConnectionsPerSource?: number;
  readonly logLevel: string;
  /** Where the topology comes from, for error messages (the primary's LiveTopology description). */
  readonly description: string;
  readonly metrics: boolean;
}

/** `topology`: the Topology as JSON text (JSON.stringify of the one the primary checked). */
export type ToWorker =
  | { readonly kind: 'start'; readonly settings: WorkerSettings; readonly topology: string; readonly generation: number }
  | { readonly kind: 'topology'; readonly topology: string; readonly generation: number }
  | { readonly kind: 'metrics'; readonly id: number }
  | { readonly kind: 'stop' };

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export type FromWorker =
  /** Sent once the worker listens for messages: an ES module loads asynchronously, and IPC messages that arrive before a listener are lost. */
  | { readonly kind: 'hello' }
  | { readonly kind: 'ready'; readonly addresses: readonly BoundAddress[]; readonly names: number; readonly views: number }
  | { readonly kind: 'start-failed'; readonly code: string; readonly message: string }
  | { readonly kind: 'applied'; readonly generation: number; readonly names: number; readonly views: number }
  | { readonly kind: 'apply-failed'; readonly generation: number; readonly code: string; readonly message: string }
  | { readonly kind: 'metrics'; readonly id: number; readonly metrics: MetricsJson };

/** The error code of anything thrown (MeshplaneError's, else a generic one). */
export function codeOf(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[A-Z]+_ERR_[A-Z_]+$/.test(code) ? code : 'DNS_ERR_WORKER';
}
