/**
 * Agent: runs beside a backend, dials the gateway with the credential's
 * client certificate and serves the gateway's CONNECT streams by opening
 * connections to the backend (with a PROXY protocol header). See README.md.
 */
export { Agent, DEFAULT_BACKOFF } from './agent.js';
export type { Address } from './agent.js';
export { followTopology } from './follow.js';
export { AgentMetrics } from './metrics.js';
export { agentSettings, readAgentTls, resolveGateways } from './settings.js';
export type { AgentSettings, AgentSettingsInput } from './settings.js';
// The demo backend reads the header the agent writes.
export { readProxyHeader } from './proxy-protocol.js';
export type { ConnectionAddresses } from './proxy-protocol.js';
