/**
 * The gateway's port facts in one place: which service is the gateway, the
 * port agents register on, which family a front port belongs to, and every
 * way two listeners on a gateway host could want the same TCP port. The
 * config check reports the clashes (so `meshplane check` refuses what would
 * otherwise fail at start with EADDRINUSE), the routing table and the CLI
 * use the same rules, so they cannot drift apart.
 *
 * Pure functions over plain data: no config types, no file positions.
 */
import type { GatewayMode, OverlayDriver } from './types.js';
import type { Topology } from './types.js';

/** The service that is the gateway: its hosts run it, its first port is the registration port. */
export const GATEWAY_SERVICE = 'gateway';
/** Where agents register when the topology has no gateway service (or it lists no port). */
export const DEFAULT_REGISTRATION_PORT = 8443;

/** What a front port carries: TLS by SNI, HTTP by Host (and CONNECT), or one tcp endpoint alone. */
export type FrontFamily = 'tls' | 'http' | 'tcp';

/** The port agents register on: the gateway service's first port, else the default. */
export function registrationPort(topology: Pick<Topology, 'services'>): number {
  return registrationPortOf(topology.services[GATEWAY_SERVICE]?.ports);
}

/** The same rule from the gateway service's port list (undefined: no gateway service). */
export function registrationPortOf(gatewayPorts: readonly number[] | undefined): number {
  return gatewayPorts?.[0] ?? DEFAULT_REGISTRATION_PORT;
}

/** http and connect share a front (both start with a request line); tls and tcp are their own. */
export function frontFamily(mode: GatewayMode): FrontFamily {
  return mode === 'tls' || mode === 'tcp' ? mode : 'http';
}

interface EndpointPort {
  readonly service: string;
  readonly endpoint: string;
  readonly port: number;
  readonly mode: GatewayMode;
}

export interface GatewayPortFacts {
  /** Every gateway endpoint, in the order their errors should be reported. */
  readonly endpoints: readonly EndpointPort[];
  /** The gateway's registration port (registrationPort). */
  readonly registrationPort: number;
  /** Services that run, or may run, on a gateway host, with their ports (the gateway's own included). */
  readonly services: readonly { readonly name: string; readonly ports: readonly number[] }[];
  /** Overlays a gateway host is a member of. */
  readonly overlays: readonly { readonly name: string; readonly port: number; readonly driver: OverlayDriver }[];
}

/** Who else wants the port. */
type PortOwner =
  | { readonly kind: 'endpoint'; readonly service: string; readonly endpoint: string; readonly mode: GatewayMode }
  | { readonly kind: 'registration'; readonly service: string }
  | { readonly kind: 'service'; readonly service: string }
  | { readonly kind: 'overlay'; readonly overlay: string; readonly driver: OverlayDriver };

type FixedOwner = Exclude<PortOwner, { readonly kind: 'endpoint' }>;

interface PortConflict {
  readonly port: number;
  /**
   * family: a tls front and an http/connect front on one port; tcp: a tcp
   * endpoint shares its port with another endpoint; registration, service,
   * overlay: the front port is already that listener's on a gateway host.
   */
  readonly kind: 'family' | 'tcp' | 'registration' | 'service' | 'overlay';
  /** The endpoint that has to move (the later one when two endpoints clash). */
  readonly endpoint: EndpointPort;
  readonly other: PortOwner;
}

/**
 * Every port conflict on the gateway hosts, each endpoint blamed at most
 * once: a fixed listener keeps its port, and between two endpoints the first
 * listed keeps it. Endpoints not blamed share their port as routes.
 */
export function gatewayPortConflicts(facts: GatewayPortFacts): PortConflict[] {
  const conflicts: PortConflict[] = [];
  // Fixed listeners first: the registration port, then services, then overlays.
  const fixed = new Map<number, FixedOwner>();
  const claim = (port: number, owner: FixedOwner): void => {
    if (!fixed.has(port)) fixed.set(port, owner);
  };
  const gateway = facts.services.find((s) => s.name === GATEWAY_SERVICE);
  claim(facts.registrationPort, { kind: 'registration', service: gateway?.name ?? GATEWAY_SERVICE });
  for (const service of facts.services) for (const port of service.ports) claim(port, { kind: 'service', service: service.name });
  for (const overlay of facts.overlays) {
    // tinc listens on TCP and UDP, so a TCP front on its port clashes.
    // WireGuard is UDP only, and TCP and UDP ports are separate spaces in
    // the kernel: a front on a WireGuard port binds fine, so it is no clash.
    if (overlay.driver === 'tinc') claim(overlay.port, { kind: 'overlay', overlay: overlay.name, driver: overlay.driver });
  }

  const fronts = new Map<number, EndpointPort>();
  for (const endpoint of facts.endpoints) {
    const owner = fixed.get(endpoint.port);
    if (owner !== undefined) {
      conflicts.push({ port: endpoint.port, kind: owner.kind, endpoint, other: owner });
      continue;
    }
    const first = fronts.get(endpoint.port);
    if (first === undefined) {
      fronts.set(endpoint.port, endpoint);
      continue;
    }
    const family = frontFamily(endpoint.mode);
    const firstFamily = frontFamily(first.mode);
    const other: PortOwner = { kind: 'endpoint', service: first.service, endpoint: first.endpoint, mode: first.mode };
    if (family === 'tcp' || firstFamily === 'tcp') conflicts.push({ port: endpoint.port, kind: 'tcp', endpoint, other });
    else if (family !== firstFamily) conflicts.push({ port: endpoint.port, kind: 'family', endpoint, other });
  }
  return conflicts;
}

/** "endpoint web/site (tls)", "the gateway's registration port", ... for messages. */
export function describePortOwner(owner: PortOwner): string {
  switch (owner.kind) {
    case 'endpoint':
      return `endpoint ${owner.service}/${owner.endpoint} (${owner.mode})`;
    case 'registration':
      return `the gateway's registration port (service "${owner.service}", where agents register)`;
    case 'service':
      return `service "${owner.service}", which can run on a gateway host`;
    case 'overlay':
      return `${owner.driver} overlay "${owner.overlay}" (TCP and UDP), which a gateway host joins`;
  }
}
