/**
 * Gateway: agents register over mutual TLS and carry HTTP/2 CONNECT
 * streams back to their backends; clients are routed by SNI, Host or
 * CONNECT. See README.md.
 */
export { Gateway, credentialTlsFiles, readTlsFiles } from './gateway.js';
export { AdminServer, DEFAULT_ADMIN_CREDENTIAL } from './admin.js';
export type { AdminAuth } from './admin.js';
export type { LimitSettings } from './limits.js';
