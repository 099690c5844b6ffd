/**
 * What a running agent does when its topology changes: nothing, take new
 * routing settings in place (PROXY protocol, backend ports), redial (a new
 * credential or gateway), or retire because its service no longer runs on
 * its host. Pure, so the CLI's wiring stays thin and the rule is testable.
 */
import { MeshplaneError } from '../errors.js';
import type { Topology } from '../topology/index.js';
import { agentSettings } from './settings.js';
import type { AgentSettings, AgentSettingsInput } from './settings.js';

type AgentFollowStep =
  | { readonly kind: 'same' }
  | { readonly kind: 'update'; readonly settings: AgentSettings }
  | { readonly kind: 'redial'; readonly settings: AgentSettings }
  /** The service no longer runs here (or has no endpoints left): drain and exit 0. */
  | { readonly kind: 'retire'; readonly why: string }
  /** The new topology gives no usable settings for another reason: keep running as before. */
  | { readonly kind: 'invalid'; readonly error: MeshplaneError };

/**
 * `input` is what the agent was started with, its service pinned to the one
 * it serves (a change must not make it pick another).
 */
export function followTopology(current: AgentSettings, topology: Topology, input: AgentSettingsInput): AgentFollowStep {
  const host = topology.hosts[current.host];
  const service = topology.services[current.service];
  if (host === undefined) return { kind: 'retire', why: `host "${current.host}" is no longer in the topology` };
  if (service === undefined) return { kind: 'retire', why: `service "${current.service}" is no longer in the topology` };
  if (!service.instances.some((instance) => instance.host === current.host)) return { kind: 'retire', why: `service "${current.service}" no longer runs on host "${current.host}"` };
  if (service.gateway_endpoints.length === 0) return { kind: 'retire', why: `service "${current.service}" has no gateway endpoints any more` };
  let next: AgentSettings;
  try {
    next = agentSettings(topology, { ...input, service: current.service });
  } catch (err) {
    if (err instanceof MeshplaneError) return { kind: 'invalid', error: err };
    throw err;
  }
  const redial =
    next.credential !== current.credential ||
    next.gatewayName !== current.gatewayName ||
    next.gatewayPort !== current.gatewayPort ||
    JSON.stringify(next.files) !== JSON.stringify(current.files) ||
    JSON.stringify(next.gateways) !== JSON.stringify(current.gateways);
  if (redial) return { kind: 'redial', settings: next };
  const routing = (s: AgentSettings): string => JSON.stringify([s.backend, s.backendPorts, [...s.proxyProtocol].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
  return routing(next) === routing(current) ? { kind: 'same' } : { kind: 'update', settings: next };
}
