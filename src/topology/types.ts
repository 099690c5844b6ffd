/**
 * The compiled Topology: the one value every other component consumes (DNS,
 * PKI, overlays, gateway, Ansible). Plain JSON-serializable data, keys in
 * snake_case like the inputs, maps keyed and sorted by name so the same
 * inputs always serialize to the same bytes.
 */

/** Bumped on any incompatible change of the shape below. */
export const TOPOLOGY_FORMAT_VERSION = 1;

// The enums live here, with their value lists, because the Topology is the
// contract: config produces these values and every consumer reads them.
export const OVERLAY_DRIVERS = ['tinc', 'wireguard'] as const;
export type OverlayDriver = (typeof OVERLAY_DRIVERS)[number];
/** tinc 1.0's UDP packet protection: CBC ciphers only, as its manual advises. */
export const TINC_CIPHERS = ['aes-128-cbc', 'aes-192-cbc', 'aes-256-cbc', 'camellia-128-cbc', 'camellia-192-cbc', 'camellia-256-cbc', 'none'] as const;
export const TINC_DIGESTS = ['sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'none'] as const;
export const GATEWAY_MODES = ['tls', 'http', 'connect', 'tcp'] as const;
export type GatewayMode = (typeof GATEWAY_MODES)[number];
export const PROXY_PROTOCOLS = ['v1', 'v2', 'none'] as const;
type ProxyProtocol = (typeof PROXY_PROTOCOLS)[number];
export const BALANCE_POLICIES = ['least_load', 'round_robin', 'random', 'client_affinity'] as const;
type BalancePolicy = (typeof BALANCE_POLICIES)[number];

export interface Topology {
  readonly format_version: typeof TOPOLOGY_FORMAT_VERSION;
  readonly domain: string;
  readonly overlays: readonly TopologyOverlay[];
  readonly hosts: Readonly<Record<string, TopologyHost>>;
  readonly services: Readonly<Record<string, TopologyService>>;
  readonly credentials: Readonly<Record<string, TopologyCredential>>;
  /**
   * Present (true) only when services.yml said `allow_no_services: true`: a
   * topology without services is then intended, and daemons may reload into
   * it. Without it, a running daemon keeps its services (TOPOLOGY_ERR_NO_SERVICES).
   */
  readonly allow_no_services?: true;
  /**
   * services.yml `pki_policy:`, complete (defaults filled in for the keys it
   * does not give); absent when it has none, which means the defaults
   * (`pkiPolicy()` in pki-policy.ts), so older topologies read unchanged.
   */
  readonly pki?: TopologyPkiPolicy;
}

/** The mesh's PKI lifetimes; bounds and the rule between them in pki-policy.ts. */
export interface TopologyPkiPolicy {
  /** Leaf certificates of credentials without their own `lifetime_ms`. */
  readonly leaf_lifetime_ms: number;
  /** The CRL's nextUpdate - thisUpdate. */
  readonly crl_lifetime_ms: number;
  /** How often hosts fetch the CRL from the online CA (`pki renew --daemon`). */
  readonly crl_refresh_ms: number;
}

export interface TopologyOverlay {
  readonly name: string;
  readonly network: string;
  readonly port: number;
  readonly driver: OverlayDriver;
  readonly mtu: number | null;
  /** tinc: UDP packet cipher, digest and compression level (null for wireguard). */
  readonly cipher: string | null;
  readonly digest: string | null;
  readonly compression: number | null;
  /** wireguard: PersistentKeepalive seconds, null = off (always null for tinc). */
  readonly persistent_keepalive: number | null;
  /** Hosts with an address on this overlay, sorted. */
  readonly hosts: readonly string[];
}

export interface HostAddresses {
  /** Addresses outside any overlay: what DNS answers when no overlay is shared. */
  readonly ips: readonly string[];
  /** Addresses reachable from outside the host's network (NAT); default `ips`. */
  readonly public_ips: readonly string[];
  /** Overlay name -> address, sorted by overlay name. */
  readonly overlays: Readonly<Record<string, string>>;
}

export interface TopologyHost extends HostAddresses {
  readonly name: string;
  /** `<host>.<domain>` */
  readonly fqdn: string;
  readonly shard: string | null;
  /** Inventory groups, nested ones included, sorted. */
  readonly groups: readonly string[];
  /** Services with an instance on this host, sorted. */
  readonly services: readonly string[];
  /** Services whose master this host is, sorted. */
  readonly masters: readonly string[];
  /** Credentials this host needs (client and/or server), sorted. */
  readonly credentials: readonly string[];
}

export interface TopologyInstance extends HostAddresses {
  readonly host: string;
  readonly shard: string | null;
}

export interface TopologyService {
  readonly name: string;
  /** One per host, sorted by host name. */
  readonly instances: readonly TopologyInstance[];
  readonly master: string | null;
  readonly master_election: boolean;
  readonly scheduling_groups: readonly string[];
  readonly num_instances: number | 'all';
  readonly schedule_with: string | null;
  readonly ports: readonly number[];
  /** The ones of `ports` that are UDP (written `53/udp`); absent when none is. The rest are TCP. */
  readonly udp_ports?: readonly number[];
  /** Most address records in one DNS answer for the service (rotated between queries); null = all. */
  readonly dns_max_answers: number | null;
  /** Credential names, as listed. */
  readonly credentials: readonly string[];
  readonly gateway_endpoints: readonly TopologyGatewayEndpoint[];
}

export interface TopologyCredential {
  readonly name: string;
  readonly enable_client: boolean;
  readonly enable_server: boolean;
  readonly extra_san: readonly string[];
  /** Leaf certificate lifetime (services.yml `lifetime`); absent: the PKI's default (or `--lifetime`). */
  readonly lifetime_ms?: number;
  /** Services that list this credential, sorted. */
  readonly services: readonly string[];
  /** Hosts running any of those services, sorted. */
  readonly hosts: readonly string[];
}

export interface TopologyGatewayEndpoint {
  readonly name: string;
  readonly hostnames: readonly string[];
  readonly port: number;
  readonly mode: GatewayMode;
  readonly proxy_protocol: ProxyProtocol;
  readonly balance: BalancePolicy;
  /** Per-backend cap of concurrent connections; null means unlimited. */
  readonly max_connections: number | null;
  readonly health: TopologyHealthCheck;
  readonly outlier: TopologyOutlier;
}

export interface TopologyHealthCheck {
  readonly enabled: boolean;
  readonly path: string;
  readonly interval_ms: number;
  readonly timeout_ms: number;
  /** Consecutive successes before a backend is marked up. */
  readonly rise: number;
  /** Consecutive failures before a backend is marked down. */
  readonly fall: number;
}

export interface TopologyOutlier {
  readonly enabled: boolean;
  readonly consecutive_errors: number;
  readonly ejection_ms: number;
}
