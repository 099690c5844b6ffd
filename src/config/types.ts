/**
 * The validated inputs: what the inventory and services.yml say, after every
 * check has passed. Everything here is plain data; positions (`loc`) are kept
 * so later cross-checks can still point at the right line.
 */
import type { Loc } from './diagnostics.js';
import type { Inventory } from './inventory.js';

export type OverlayDriver = 'tinc' | 'wireguard';

export interface OverlayConfig {
  readonly name: string;
  /** CIDR, canonical form. */
  readonly network: string;
  readonly port: number;
  readonly driver: OverlayDriver;
  /** Interface MTU; null leaves the driver's default. */
  readonly mtu: number | null;
  /** tinc only (null for wireguard): UDP packet cipher, digest, compression level 0-11. */
  readonly cipher: string | null;
  readonly digest: string | null;
  readonly compression: number | null;
  /** wireguard only: PersistentKeepalive seconds; null means off (and always null for tinc). */
  readonly persistentKeepalive: number | null;
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

export type GatewayMode = 'tls' | 'http' | 'connect' | 'tcp';
export type ProxyProtocol = 'v1' | 'v2' | 'none';
export type BalancePolicy = 'least_load' | 'round_robin' | 'random' | 'client_affinity';

export interface HealthCheckConfig {
  readonly enabled: boolean;
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive successes before a backend is marked up. */
  readonly rise: number;
  /** Consecutive failures before a backend is marked down. */
  readonly fall: number;
}

export interface OutlierConfig {
  readonly enabled: boolean;
  readonly consecutiveErrors: number;
  readonly ejectionMs: number;
}

export interface GatewayEndpointConfig {
  readonly name: string;
  readonly hostnames: readonly string[];
  readonly port: number;
  readonly mode: GatewayMode;
  readonly proxyProtocol: ProxyProtocol;
  readonly health: HealthCheckConfig;
  readonly balance: BalancePolicy;
  /** Per-backend cap of concurrent connections; null means unlimited. */
  readonly maxConnections: number | null;
  readonly outlier: OutlierConfig;
  readonly loc: Loc;
  /** Where `port` was written (absent when the mode's default port applies), and the entry's key path. */
  readonly portLoc?: Loc;
  readonly path?: string;
}

export interface CredentialConfig {
  readonly name: string;
  readonly enableClient: boolean;
  readonly enableServer: boolean;
  readonly extraSan: readonly string[];
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
}
