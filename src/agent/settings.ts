/**
 * Working out what an agent serves from as little as possible: the host it
 * runs on and the Topology name the service, its backend port, the
 * credential and the PROXY protocol of each endpoint; the credential files
 * sit under the credentials root; the gateway is found through mesh DNS
 * (`gateway.<domain>`) unless given. Flags win over environment variables,
 * which win over what the Topology implies.
 */
import { readFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { MeshplaneError } from '../errors.js';
import { registrationPortOf } from '../topology/index.js';
import type { Topology } from '../topology/index.js';
import { credentialFiles, serviceNames } from '../topology/index.js';
import type { Address } from './agent.js';
import type { ProxyVersion } from './proxy-protocol.js';

export interface AgentSettingsInput {
  readonly host: string;
  readonly service?: string;
  readonly credential?: string;
  readonly credentialsRoot: string;
  readonly gateways?: readonly Address[];
  readonly gatewayService: string;
  readonly gatewayName?: string;
  readonly backend?: Address;
}

export interface AgentSettings {
  readonly host: string;
  readonly service: string;
  readonly credential: string;
  readonly files: { readonly ca: string; readonly cert: string; readonly key: string };
  readonly gatewayName: string;
  readonly backend: Address;
  /** The service's ports a CONNECT may name (empty with an explicit --backend: that one only). */
  readonly backendPorts: readonly number[];
  readonly proxyProtocol: ReadonlyMap<string, ProxyVersion | 'none'>;
  /** Explicit gateways, or null: resolve `gatewayName` through DNS. */
  readonly gateways: readonly Address[] | null;
  readonly gatewayPort: number;
}


export function agentSettings(topology: Topology, input: AgentSettingsInput): AgentSettings {
  const host = topology.hosts[input.host];
  if (host === undefined) throw new MeshplaneError('AGENT_ERR_SETTINGS', `host "${input.host}" is not in the topology; pass --host (or MESHPLANE_HOST) with this host's inventory name`);
  const exposed = host.services.filter((name) => (topology.services[name]?.gateway_endpoints.length ?? 0) > 0);
  const serviceName = input.service ?? (exposed.length === 1 ? exposed[0]! : undefined);
  if (serviceName === undefined) {
    throw new MeshplaneError(
      'AGENT_ERR_SETTINGS',
      exposed.length === 0 ? `host "${input.host}" runs no service with gateway endpoints: nothing for an agent to serve` : `host "${input.host}" runs several services with gateway endpoints (${exposed.join(', ')}); pick one with --service`,
    );
  }
  const service = topology.services[serviceName];
  if (service === undefined || !service.instances.some((i) => i.host === input.host)) throw new MeshplaneError('AGENT_ERR_SETTINGS', `service "${serviceName}" does not run on host "${input.host}"`);
  if (service.gateway_endpoints.length === 0) throw new MeshplaneError('AGENT_ERR_SETTINGS', `service "${serviceName}" has no gateway endpoints`);
  const clientCredentials = service.credentials.filter((name) => topology.credentials[name]?.enable_client === true);
  const credential = input.credential ?? clientCredentials[0];
  if (credential === undefined || !clientCredentials.includes(credential)) {
    throw new MeshplaneError('AGENT_ERR_SETTINGS', `service "${serviceName}" lists no client credential${input.credential === undefined ? '' : ` named "${input.credential}"`}; the agent registers with one (enable_client: true)`);
  }
  const port = service.ports[0];
  const backend = input.backend ?? (port === undefined ? undefined : { address: '127.0.0.1', port });
  if (backend === undefined) throw new MeshplaneError('AGENT_ERR_SETTINGS', `service "${serviceName}" lists no ports; give the backend with --backend ADDR:PORT`);
  const files = credentialFiles(input.credentialsRoot, credential, 'client');
  const gatewayService = topology.services[input.gatewayService];
  return {
    host: input.host,
    service: serviceName,
    credential,
    files: { ca: files.ca, cert: files.cert, key: files.key },
    gatewayName: input.gatewayName ?? serviceNames(topology, input.gatewayService).fqdn,
    backend,
    backendPorts: input.backend === undefined ? service.ports : [],
    proxyProtocol: new Map(service.gateway_endpoints.map((e) => [e.name, e.proxy_protocol])),
    gateways: input.gateways ?? null,
    gatewayPort: registrationPortOf(gatewayService?.ports),
  };
}

export function readAgentTls(files: AgentSettings['files']): { ca: Buffer; cert: Buffer; key: Buffer } {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new MeshplaneError('AGENT_ERR_CREDENTIALS', `cannot read the agent's ${what} ${path}: ${(err as Error).message} (issue it with "meshplane pki issue", and run the agent as a member of the credential's group)`, { cause: err });
    }
  };
  return { ca: read(files.ca, 'CA certificate'), cert: read(files.cert, 'client certificate'), key: read(files.key, 'client key') };
}

/** Every address of the gateway name, through the system resolver (mesh DNS on a mesh host). */
export async function resolveGateways(settings: AgentSettings): Promise<Address[]> {
  if (settings.gateways !== null) return [...settings.gateways];
  try {
    const found = await lookup(settings.gatewayName, { all: true });
    return found.map((entry) => ({ address: entry.address, port: settings.gatewayPort }));
  } catch (err) {
    throw new MeshplaneError('AGENT_ERR_GATEWAY', `cannot resolve ${settings.gatewayName}: ${(err as Error).message} (is mesh DNS set up on this host? or pass --gateway ADDR:PORT)`, { cause: err });
  }
}
