/**
 * The gateway `up` runs: where it registers agents and listens for
 * clients, worked out from the Topology, and starting one. A fingerprint of
 * those settings tells the reconciler when a reload is not enough (the
 * gateway host, its addresses or its registration port changed).
 */
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { Gateway, credentialTlsFiles } from '../../gateway/index.js';
import { GATEWAY_SERVICE, registrationPort, serviceNames, stateCredentialsRoot } from '../../topology/index.js';
import type { Topology } from '../../topology/index.js';

export interface GatewaySpec {
  readonly host: string;
  readonly name: string;
  readonly registration: { readonly address: string; readonly port: number };
  readonly fronts: readonly string[];
  readonly credential: string;
  /** Credentials root of the gateway host under the state directory. */
  readonly root: string;
  readonly fingerprint: string;
}

/** Services the gateway routes to: some gateway endpoints and at least one instance. */
function exposedServices(topology: Topology): string[] {
  return Object.values(topology.services)
    .filter((s) => s.gateway_endpoints.length > 0 && s.instances.length > 0)
    .map((s) => s.name);
}

/** Null when there is nothing for a gateway to do: no `gateway` service, or no exposed service. */
export function gatewaySpec(topology: Topology, stateDir: string): GatewaySpec | null {
  const service = topology.services[GATEWAY_SERVICE];
  const host = service === undefined ? undefined : topology.hosts[service.instances[0]?.host ?? ''];
  if (service === undefined || host === undefined || exposedServices(topology).length === 0) return null;
  const registration = { address: host.ips[0] ?? '127.0.0.1', port: registrationPort(topology) };
  const fronts = host.public_ips.length > 0 ? host.public_ips : host.ips;
  const credential = service.credentials[0] ?? 'gateway';
  const root = stateCredentialsRoot(stateDir, host.name);
  const name = serviceNames(topology, service.name).fqdn;
  return { host: host.name, name, registration, fronts, credential, root, fingerprint: JSON.stringify([host.name, name, registration, fronts, credential]) };
}

/**
 * Each gateway gets its own metrics registry: one restarted in the same process would register its
 * metrics a second time on a shared one, which prom-client refuses. `up --metrics` serves the
 * current gateway's registry beside DNS's.
 */
export async function startGateway(spec: GatewaySpec, topology: Topology, logger: Logger): Promise<{ gateway: Gateway; registry: Registry }> {
  const registry = new Registry();
  const gateway = new Gateway({
    topology,
    tls: credentialTlsFiles(spec.root, spec.credential, null),
    registration: spec.registration,
    frontAddresses: spec.fronts,
    registry,
    logger: logger.child({ component: 'gateway' }),
  });
  await gateway.start();
  return { gateway, registry };
}
