/**
 * Topology: the compiled, immutable description of the mesh (the contract
 * every component reads). src/config builds it (`compileTopology`); read a compiled one with
 * `readTopology(file)`; every daemon starts from that JSON alone.
 */
export { readTopology, serializeTopology, writeTopology } from './io.js';
export { toAnsibleInventory } from './ansible.js';
export { topologyForHost } from './for-host.js';
export { topologyFileSource } from './source.js';
export type { TopologySource, WatchList } from './source.js';
export { LiveTopology, diffTopologies, isEmptyDiff } from './live.js';
export type { ReloadOutcome, TopologyChange, TopologyDiff } from './live.js';
export { addressesSeenBy } from './addresses.js';
export { viewKey, hostsByView } from './views.js';
export { compareNames, schedule, DEFAULT_LOAD_FACTOR } from './scheduler.js';
export { DEFAULT_REGISTRATION_PORT, GATEWAY_SERVICE, describePortOwner, frontFamily, gatewayPortConflicts, registrationPort, registrationPortOf } from './gateway-ports.js';
export type { FrontFamily, GatewayPortFacts } from './gateway-ports.js';
export type { ScheduleRequest, ScheduleOptions } from './scheduler.js';
export { hostFqdn, instanceNames, masterNames, serviceNames, shardNames, srvNames, srvProtocolName } from './names.js';
export { parseWorkloadId, workloadId } from './identity.js';
export { PKI_POLICY_BOUNDS, PKI_POLICY_DEFAULTS, formatPolicyDuration, maxCrlRefreshMs, parsePolicyDuration, pkiPolicy } from './pki-policy.js';
export { DEFAULT_CREDENTIALS_ROOT, credentialDir, credentialFiles, credentialsDir, stateCredentialsRoot } from './credential-layout.js';
// The contract: the Topology's shape and the enums of its fields (src/config reads the inputs into them).
export { BALANCE_POLICIES, GATEWAY_MODES, OVERLAY_DRIVERS, PROXY_PROTOCOLS, TINC_CIPHERS, TINC_DIGESTS, TOPOLOGY_FORMAT_VERSION } from './types.js';
export type {
  GatewayMode,
  OverlayDriver,
  Topology,
  TopologyCredential,
  TopologyGatewayEndpoint,
  TopologyHealthCheck,
  TopologyHost,
  TopologyInstance,
  TopologyOutlier,
  TopologyOverlay,
  TopologyPkiPolicy,
  TopologyService,
} from './types.js';
