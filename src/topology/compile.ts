/**
 * Builds the Topology from validated inputs: schedule every enabled service,
 * then lay out per-service, per-host and per-credential views of the result.
 */
import type { GatewayEndpointConfig, HostConfig, LoadedConfig } from '../config/index.js';
import { ConfigError } from '../config/index.js';
import { compareNames, schedule } from './scheduler.js';
import type { ScheduleOptions, ScheduleRequest } from './scheduler.js';
import { TOPOLOGY_FORMAT_VERSION } from './types.js';
import type {
  Topology,
  TopologyCredential,
  TopologyGatewayEndpoint,
  TopologyHost,
  TopologyInstance,
  TopologyOverlay,
  TopologyService,
} from './types.js';

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
      dns_max_answers: service.dnsMaxAnswers,
      credentials: service.credentials.map((c) => c.name),
      gateway_endpoints: service.gatewayEndpoints.map(endpointOf),
    };
  }

  const hosts: Record<string, TopologyHost> = {};
  for (const host of [...mesh.hosts.values()].sort((a, b) => compareNames(a.name, b.name))) {
    hosts[host.name] = {
      name: host.name,
      fqdn: `${host.name}.${mesh.domain}`,
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
      name,
      enable_client: config.enableClient,
      enable_server: config.enableServer,
      extra_san: [...config.extraSan],
      services: owners,
      hosts: [...credentialHosts].sort(compareNames),
    };
  }

  const overlays: TopologyOverlay[] = mesh.overlays.map((overlay) => ({
    name: overlay.name,
    network: overlay.network,
    port: overlay.port,
    driver: overlay.driver,
    mtu: overlay.mtu,
    cipher: overlay.cipher,
    digest: overlay.digest,
    compression: overlay.compression,
    persistent_keepalive: overlay.persistentKeepalive,
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

function endpointOf(endpoint: GatewayEndpointConfig): TopologyGatewayEndpoint {
  return {
    name: endpoint.name,
    hostnames: [...endpoint.hostnames],
    port: endpoint.port,
    mode: endpoint.mode,
    proxy_protocol: endpoint.proxyProtocol,
    balance: endpoint.balance,
    max_connections: endpoint.maxConnections,
    health: {
      enabled: endpoint.health.enabled,
      path: endpoint.health.path,
      interval_ms: endpoint.health.intervalMs,
      timeout_ms: endpoint.health.timeoutMs,
      rise: endpoint.health.rise,
      fall: endpoint.health.fall,
    },
    outlier: {
      enabled: endpoint.outlier.enabled,
      consecutive_errors: endpoint.outlier.consecutiveErrors,
      ejection_ms: endpoint.outlier.ejectionMs,
    },
  };
}
