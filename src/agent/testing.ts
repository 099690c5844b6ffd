/**
 * For tests only; not used by src/. What the agent's tests reach past its
 * front door (index.ts) for.
 */
export type { AgentOptions } from './agent.js';
export { proxyHeader } from './proxy-protocol.js';
export { BackendPool } from './backend-pool.js';
