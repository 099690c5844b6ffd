/**
 * Gateway: agents register over mutual TLS and carry HTTP/2 CONNECT
 * streams back to their backends; clients are routed by SNI, Host or
 * CONNECT. See README.md.
 */
export { Gateway, credentialTlsFiles, readTlsFiles } from './gateway.js';
export type { GatewayOptions, GatewayTlsFiles } from './gateway.js';
export { RoutingTable } from './routes.js';
export type { FrontPort, Route } from './routes.js';
export { BackendRegistry, freshBackendState } from './registry.js';
export type { Backend, EndpointHealth, HealthState } from './registry.js';
export { AdminServer, buildAdminApi, DEFAULT_ADMIN_CREDENTIAL } from './admin.js';
export type { AdminAuth, AdminEvents, AdminOptions, AdminTarget } from './admin.js';
export { ConnectionGuard, connectionBudget, openFileLimit, perSourceCap } from './limits.js';
export type { ConnectionBudget, LimitReason, LimitSettings, ListenerLimits } from './limits.js';
export { GATEWAY_TLS_POLICY, gatewayServerTls } from './tls-policy.js';
export { backendView } from './backend-view.js';
export type { BackendView } from './backend-view.js';
export { Balancer, rendezvousWeight, score } from './balance.js';
export type { BackendPicker, PickResult } from './balance.js';
export { nextHealth } from './health.js';
export { readClientHello } from './client-hello.js';
export { readRequestHead } from './http-head.js';

/** Where credentials live on a host (the PKI's default root). */
export { DEFAULT_CREDENTIALS_ROOT as DEFAULT_CREDENTIALS_ROOT_PATH } from '../topology/credential-layout.js';
