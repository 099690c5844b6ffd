/**
 * The validated inputs: what the inventory and services.yml say, after every
 * check has passed. Everything here is plain data; positions (`loc`) are kept
 * so later cross-checks can still point at the right line.
 */
import type { Loc } from './diagnostics.js';
import type { Inventory } from './inventory.js';
import type { TopologyCredential, TopologyGatewayEndpoint, TopologyOverlay, TopologyPkiPolicy } from '../topology/index.js';

// The enums are the Topology's; config re-exports them for its readers.
export type { GatewayMode, OverlayDriver, TopologyHealthCheck as HealthCheckConfig, TopologyOutlier as OutlierConfig } from '../topology/index.js';

/** An overlay as the Topology spells it, less the member list compile fills in. */
export interface OverlayConfig extends Omit<TopologyOverlay, 'hosts'> {
  readonly loc: Loc;
}

export interface HostConfig {
  readonly name: string;
  readonly loc: Loc;
  /** Addresses outside any overlay (`ip`, `ip6`, `ips`), canonical text. */
  readonly ips: readonly string[];
  /** Addresses reachable from outside (`public_ip(s)`); defaults to `ips`. */
  readonly publicIps: readonly string[];
  /** Overlay name -> this host's address on it (`ip_<overlay>`). */
  readonly overlays: ReadonlyMap<string, string>;
  readonly shard: string | null;
  /** Every inventory group the host is in, nested ones included, sorted. */
  readonly groups: readonly string[];
}

export interface MeshInventory {
  readonly file: string;
  readonly domain: string;
  readonly overlays: readonly OverlayConfig[];
  readonly hosts: ReadonlyMap<string, HostConfig>;
  readonly inventory: Inventory;
}

/** A gateway endpoint as the Topology spells it (snake_case), plus where it was written. */
export interface GatewayEndpointConfig extends TopologyGatewayEndpoint {
  readonly loc: Loc;
  /** Where `port` was written (absent when the mode's default port applies), and the entry's key path. */
  readonly portLoc?: Loc;
  readonly path?: string;
}

/** A credential as the Topology spells it, less the services/hosts compile derives. */
export interface CredentialConfig extends Omit<TopologyCredential, 'services' | 'hosts'> {
  readonly loc: Loc;
}

export interface ServiceConfig {
  readonly name: string;
  readonly loc: Loc;
  readonly enabled: boolean;
  /** Inventory groups whose hosts may run the service; empty with scheduleWith. */
  readonly schedulingGroups: readonly string[];
  /** null means every candidate host (`all`). */
  readonly numInstances: number | null;
  readonly masterElection: boolean;
  readonly masterSchedulingGroup: string | null;
  readonly scheduleWith: string | null;
  readonly ports: readonly number[];
  /** The ports of `ports` written `N/udp`. */
  readonly udpPorts: readonly number[];
  /** Most A/AAAA records one DNS answer for the service carries (rotated); null = all. */
  readonly dnsMaxAnswers: number | null;
  readonly credentials: readonly CredentialConfig[];
  readonly gatewayEndpoints: readonly GatewayEndpointConfig[];
  /** Where individual keys were written, for cross-checks. */
  readonly keyLocs: ReadonlyMap<string, Loc>;
}

export interface ServicesConfig {
  readonly file: string;
  /** Every file read, the main file first, then includes in order. */
  readonly files: readonly string[];
  /**
   * Where a change can change the config: every file an include named
   * (read or not: a missing or broken one counts once it is fixed), and the
   * directories that wildcard includes list (a new matching file there).
   */
  readonly watch: { readonly files: readonly string[]; readonly directories: readonly string[] };
  readonly services: ReadonlyMap<string, ServiceConfig>;
  /**
   * `allow_no_services: true`: a services.yml with no enabled service is
   * intended (an empty mesh). Without it, that is CONFIG_ERR_NO_SERVICES:
   * an emptied or truncated file must not turn into "serve nothing".
   */
  readonly allowNoServices: boolean;
  /** `pki_policy:`, complete (defaults filled in); undefined when services.yml has none. */
  readonly pkiPolicy: TopologyPkiPolicy | undefined;
}
