/**
 * Agent: runs beside a backend, dials the gateway with the credential's
 * client certificate and serves the gateway's CONNECT streams by opening
 * connections to the backend (with a PROXY protocol header). See README.md.
 */
export { Agent, DEFAULT_BACKOFF, DEFAULT_PING_INTERVAL_MS } from './agent.js';
export type { Address, AgentOptions, AgentRouting } from './agent.js';
export { followTopology } from './follow.js';
export type { AgentFollowStep } from './follow.js';
export { agentSettings, readAgentTls, resolveGateways, DEFAULT_GATEWAY_PORT } from './settings.js';
export type { AgentSettings, AgentSettingsInput } from './settings.js';
export { proxyHeader } from './proxy-protocol.js';
export type { ProxyVersion } from './proxy-protocol.js';
