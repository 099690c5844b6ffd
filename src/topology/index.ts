/**
 * Topology: the compiled, immutable description of the mesh. Build it with
 * `compileTopology(loadConfig(...))`, or read a compiled one with
 * `readTopology(file)`; every daemon starts from that JSON alone.
 */
export { compileTopology } from './compile.js';
export { readTopology, parseTopology, serializeTopology, writeTopology } from './io.js';
export { validateTopology, MAX_PROBLEMS } from './validate.js';
export type { TopologyProblem } from './validate.js';
export { toAnsibleInventory } from './ansible.js';
export { topologyForHost } from './for-host.js';
export { configSource, topologyFileSource, watchedDirectories } from './source.js';
export type { TopologySource, WatchList } from './source.js';
export { DEFAULT_DEBOUNCE_MS, LiveTopology, diffTopologies, isEmptyDiff } from './live.js';
export type { LiveTopologyOptions, ReloadOutcome, TopologyChange, TopologyDiff } from './live.js';
export { addressesSeenBy, sharedOverlay } from './addresses.js';
export { viewKey, hostsByView } from './views.js';
export { schedule, DEFAULT_LOAD_FACTOR } from './scheduler.js';
export {
  DEFAULT_REGISTRATION_PORT,
  GATEWAY_SERVICE,
  describePortOwner,
  frontFamily,
  gatewayPortConflicts,
  registrationPort,
  registrationPortOf,
} from './gateway-ports.js';
export type { EndpointPort, FrontFamily, GatewayPortFacts, PortConflict, PortOwner } from './gateway-ports.js';
export type { Placement, ScheduleRequest, ScheduleOptions } from './scheduler.js';
export { TOPOLOGY_FORMAT_VERSION } from './types.js';
export { hostFqdn, instanceNames, masterNames, qualify, serviceNames, shardNames } from './names.js';
export type { HasDomain, NameForms } from './names.js';
export { CREDENTIAL_KINDS, DEFAULT_CREDENTIALS_ROOT, credentialDir, credentialFiles, credentialsDir, stateCredentialsRoot } from './credential-layout.js';
export type { CredentialFiles, CredentialKind } from './credential-layout.js';
export type * from './types.js';
