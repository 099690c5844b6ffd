/**
 * The gateway's routing table, built from the Topology's gateway endpoints:
 * for each front port, its mode and which service/endpoint each hostname
 * goes to. A port carries TLS endpoints (routed by SNI) or HTTP ones (plain
 * requests routed by Host, CONNECT requests by their authority), never both
 * (the config check enforces it).
 */
import { frontFamily, serviceNames } from '../topology/index.js';
import type { FrontFamily, Topology, TopologyGatewayEndpoint } from '../topology/index.js';

export interface Route {
  readonly service: string;
  readonly endpoint: TopologyGatewayEndpoint;
  /** The service's ports: a CONNECT may name any of them, nothing else. */
  readonly servicePorts: readonly number[];
}

export interface FrontPort {
  readonly port: number;
  /** tls: SNI passthrough; http: Host and CONNECT; tcp: the whole port to one endpoint, nothing read. */
  readonly kind: FrontFamily;
  /** Plain HTTP requests and TLS hellos, by lowercased hostname. */
  readonly byHost: ReadonlyMap<string, Route>;
  /** CONNECT requests, by lowercased host (`service.<domain>` or an endpoint hostname). */
  readonly byConnectHost: ReadonlyMap<string, Route>;
  /** For TLS hellos without SNI: the first TLS endpoint listed on the port; for tcp: its endpoint. */
  readonly fallback: Route | null;
  /** Every endpoint on the port is mode connect: other requests are answered 405. */
  readonly connectOnly: boolean;
}

export class RoutingTable {
  readonly ports: ReadonlyMap<number, FrontPort>;

  constructor(topology: Topology) {
    const ports = new Map<number, { kind: FrontFamily; byHost: Map<string, Route>; byConnectHost: Map<string, Route>; fallback: Route | null; connectOnly: boolean }>();
    for (const service of Object.values(topology.services)) {
      if (service.instances.length === 0) continue;
      for (const endpoint of service.gateway_endpoints) {
        const kind = frontFamily(endpoint.mode);
        let front = ports.get(endpoint.port);
        if (front === undefined) ports.set(endpoint.port, (front = { kind, byHost: new Map(), byConnectHost: new Map(), fallback: null, connectOnly: true }));
        if (front.kind !== kind) continue; // refused by `meshplane check`; never mix on one port
        if (endpoint.mode !== 'connect') front.connectOnly = false;
        const route: Route = { service: service.name, endpoint, servicePorts: service.ports };
        if (endpoint.mode === 'connect') {
          for (const name of [serviceNames(topology, service.name).fqdn, ...endpoint.hostnames]) if (!front.byConnectHost.has(name)) front.byConnectHost.set(name.toLowerCase(), route);
        } else {
          for (const name of endpoint.hostnames) if (!front.byHost.has(name)) front.byHost.set(name.toLowerCase(), route);
        }
        if ((kind === 'tls' || kind === 'tcp') && front.fallback === null) front.fallback = route;
      }
    }
    this.ports = new Map([...ports].map(([port, front]) => [port, { port, ...front }]));
  }

  /** Route for a hostname on a port: exact name, then a `*.` wildcard one label up. */
  lookup(port: number, host: string | null, connect: boolean): Route | null {
    const front = this.ports.get(port);
    if (front === undefined) return null;
    const table = connect ? front.byConnectHost : front.byHost;
    if (host === null) return connect ? null : front.fallback;
    const exact = table.get(host);
    if (exact !== undefined) return exact;
    const dot = host.indexOf('.');
    return dot < 0 ? null : (table.get(`*${host.slice(dot)}`) ?? null);
  }
}
