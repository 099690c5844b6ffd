/**
 * DNS: an authoritative server for the mesh domain with per-host views,
 * forwarding everything else. Start one with `new DnsService(...)`; the
 * pieces below are exported for the CLI.
 */
export { DnsService } from './service.js';
export { DnsCluster } from './cluster.js';
export { expandWildcards, parseSocketAddress, resolversFromResolvConf } from './listen.js';
export type { SocketAddress } from './listen.js';
export { DEFAULT_NEGATIVE_TTL, DEFAULT_TTL } from './zone.js';
// BIND 9 for big central servers: the same views and answers as files (src/dns/README.md, "BIND").
export { renderBind } from './render-bind.js';
export { writeBindRender } from './write-bind.js';
export {
  DEFAULT_TCP_IDLE_TIMEOUT_MS,
  DEFAULT_TCP_MAX_CONNECTIONS,
  DEFAULT_TCP_MAX_CONNECTIONS_PER_SOURCE,
  DEFAULT_TCP_QUERY_TIMEOUT_MS,
  DEFAULT_UDP_SIZE,
} from './server.js';
