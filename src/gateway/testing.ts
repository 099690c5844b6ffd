/**
 * For tests only; not used by src/. The gateway's parts its tests drive
 * directly, past the front door (index.ts).
 */
export type { GatewayTlsFiles } from './gateway.js';
export type { Route } from './routes.js';
export { BackendRegistry, freshBackendState } from './registry.js';
export type { Backend, HealthState } from './registry.js';
export { buildAdminApi } from './admin.js';
export type { AdminTarget } from './admin.js';
export { connectionBudget, openFileLimit, perSourceCap } from './limits.js';
export { Balancer, rendezvousWeight } from './balance.js';
export type { PickResult } from './balance.js';
export { checkOnce, HealthMonitor, nextHealth } from './health.js';
export { GatewayMetrics } from './metrics.js';
export { readClientHello, unrecognizedNameAlert } from './client-hello.js';
export { readRequestHead } from './http-head.js';
