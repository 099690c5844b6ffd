/**
 * Builds the Topology from validated inputs: schedule every enabled service,
 * then lay out per-service, per-host and per-credential views of the result.
 */
import { TOPOLOGY_FORMAT_VERSION, compareNames, hostFqdn, schedule } from '../topology/index.js';
import type { ScheduleOptions, ScheduleRequest } from '../topology/index.js';
import { ConfigError } from './diagnostics.js';
import type { LoadedConfig } from './load.js';
import type { GatewayEndpointConfig, HostConfig } from './types.js';
import type {
  Topology,
  TopologyCredential,
  TopologyGatewayEndpoint,
  TopologyHost,
  TopologyInstance,
  TopologyOverlay,
  TopologyService,
} from '../topology/index.js';

export function compileTopology(config: LoadedConfig, options: ScheduleOptions = {}): Topology {
  if (!config.ok) throw new ConfigError(config.diagnostics.sorted());
  const { mesh, services } = config;
  const enabled = [...services.services.values()].filter((s) => s.enabled).sort((a, b) => compareNames(a.name, b.name));

  const requests: ScheduleRequest[] = enabled.map((service) => ({
    name: service.name,
    candidates: config.candidates.get(service.name) ?? [],
    count: service.numInstances,
    masterElection: service.masterElection,
    masterCandidates: service.masterSchedulingGroup === null ? null : membersOfGroup(config, service.masterSchedulingGroup),
    scheduleWith: service.scheduleWith,
  }));
  const placements = schedule(requests, options);

  const hostServices = new Map<string, string[]>();
  const hostMasters = new Map<string, string[]>();
  const hostCredentials = new Map<string, Set<string>>();
  const push = <T>(map: Map<string, T[]>, key: string, value: T): void => {
    const list = map.get(key);
    if (list === undefined) map.set(key, [value]);
    else list.push(value);
  };

  const topologyServices: Record<string, TopologyService> = {};
  const credentialServices = new Map<string, string[]>();
  for (const service of enabled) {
    const placement = placements.get(service.name) ?? { hosts: [], master: null };
    const instances: TopologyInstance[] = placement.hosts.map((hostName) => instanceOf(mesh.hosts.get(hostName) as HostConfig));
    for (const hostName of placement.hosts) {
      push(hostServices, hostName, service.name);
      const set = hostCredentials.get(hostName) ?? new Set<string>();
      for (const credential of service.credentials) set.add(credential.name);
      hostCredentials.set(hostName, set);
    }
    if (placement.master !== null) push(hostMasters, placement.master, service.name);
    for (const credential of service.credentials) push(credentialServices, credential.name, service.name);
    topologyServices[service.name] = {
      name: service.name,
      instances,
      master: placement.master,
      master_election: service.masterElection,
      scheduling_groups: [...service.schedulingGroups],
      num_instances: service.numInstances ?? 'all',
      schedule_with: service.scheduleWith,
      ports: [...service.ports],
      // Only when some port is UDP: topologies of inputs without one stay byte for byte the same.
      ...(service.udpPorts.length > 0 ? { udp_ports: [...service.udpPorts] } : {}),
      dns_max_answers: service.dnsMaxAnswers,
      credentials: service.credentials.map((c) => c.name),
      gateway_endpoints: service.gatewayEndpoints.map(endpointOf),
    };
  }

  const hosts: Record<string, TopologyHost> = {};
  for (const host of [...mesh.hosts.values()].sort((a, b) => compareNames(a.name, b.name))) {
    hosts[host.name] = {
      name: host.name,
      fqdn: hostFqdn(mesh, host.name),
      ips: [...host.ips],
      public_ips: [...host.publicIps],
      overlays: Object.fromEntries(host.overlays),
      shard: host.shard,
      groups: [...host.groups],
      services: (hostServices.get(host.name) ?? []).sort(compareNames),
      masters: (hostMasters.get(host.name) ?? []).sort(compareNames),
      credentials: [...(hostCredentials.get(host.name) ?? [])].sort(compareNames),
    };
  }

  const credentials: Record<string, TopologyCredential> = {};
  // Validation made every listing of a credential agree: the first one speaks for all.
  const credentialConfigs = new Map(enabled.flatMap((s) => s.credentials).reverse().map((c) => [c.name, c]));
  for (const name of [...credentialServices.keys()].sort(compareNames)) {
    const config = credentialConfigs.get(name);
    if (config === undefined) continue;
    const owners = [...new Set(credentialServices.get(name))].sort(compareNames);
    const credentialHosts = new Set<string>();
    for (const owner of owners) for (const instance of topologyServices[owner]?.instances ?? []) credentialHosts.add(instance.host);
    credentials[name] = {
      ...withoutLoc(config),
      extra_san: [...config.extra_san],
      services: owners,
      hosts: [...credentialHosts].sort(compareNames),
    };
  }

  const overlays: TopologyOverlay[] = mesh.overlays.map((overlay) => ({
    ...withoutLoc(overlay),
    hosts: Object.values(hosts)
      .filter((h) => overlay.name in h.overlays)
      .map((h) => h.name),
  }));

  return {
    format_version: TOPOLOGY_FORMAT_VERSION,
    domain: mesh.domain,
    overlays,
    hosts,
    services: topologyServices,
    credentials,
    // Only when set, so every other topology keeps its bytes.
    ...(services.allowNoServices ? { allow_no_services: true as const } : {}),
    ...(services.pkiPolicy === undefined ? {} : { pki: { ...services.pkiPolicy } }),
  };
}

function membersOfGroup(config: LoadedConfig, group: string): string[] {
  return [...config.mesh.hosts.values()].filter((host) => host.groups.includes(group)).map((host) => host.name);
}

function instanceOf(host: HostConfig): TopologyInstance {
  return {
    host: host.name,
    shard: host.shard,
    ips: [...host.ips],
    public_ips: [...host.publicIps],
    overlays: Object.fromEntries(host.overlays),
  };
}

/** Config's parsed shapes are the Topology's fields plus a source position. */
function withoutLoc<T extends { readonly loc: unknown }>(item: T): Omit<T, 'loc'> {
  const { loc, ...fields } = item;
  void loc;
  return fields;
}

/** Field by field: the parsed endpoint also carries source positions (`loc`, `portLoc`, `path`), which are no part of the Topology. */
function endpointOf(e: GatewayEndpointConfig): TopologyGatewayEndpoint {
  return {
    name: e.name,
    hostnames: [...e.hostnames],
    port: e.port,
    mode: e.mode,
    proxy_protocol: e.proxy_protocol,
    balance: e.balance,
    max_connections: e.max_connections,
    health: { ...e.health },
    outlier: { ...e.outlier },
  };
}
