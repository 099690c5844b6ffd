/**
 * Checks that need both inputs at once: groups named in services.yml exist
 * in the inventory, counts fit the candidate hosts, schedule_with targets
 * exist and form no cycle, ports and gateway routes do not clash, names do
 * not collide in DNS, and shared credentials agree.
 */
import type { Diagnostics, Loc } from './diagnostics.js';
import { didYouMean } from '../lib/did-you-mean.js';
import { groupMembers } from './inventory.js';
import type { MeshInventory, OverlayConfig, ServiceConfig, ServicesConfig } from './types.js';
import { GATEWAY_SERVICE, compareNames, describePortOwner, frontFamily, gatewayPortConflicts, masterNames, registrationPortOf, schedule } from '../topology/index.js';
import type { GatewayPortFacts, ScheduleRequest } from '../topology/index.js';

/** Candidate hosts per enabled service (scheduleWith services get none). */
export type Candidates = ReadonlyMap<string, readonly string[]>;

export function crossCheck(mesh: MeshInventory, services: ServicesConfig, diags: Diagnostics): Candidates {
  const enabled = [...services.services.values()].filter((s) => s.enabled);
  // Every check runs whatever the others found: `meshplane check` promises
  // every error of inputs that parse in one run, scheduling ones included.
  const candidates = checkPlacement(mesh, enabled, diags);
  checkScheduleWith(services, diags);
  checkScheduledWithMasters(mesh, enabled, candidates, diags);
  checkPorts(mesh, enabled, diags);
  checkNameCollisions(mesh, enabled, diags);
  checkCredentials(enabled, diags);
  checkGatewayRoutes(enabled, diags);
  checkGatewayPorts(mesh, enabled, candidates, diags);
  checkPlacedMasters(mesh, enabled, candidates, diags);
  return candidates;
}

function locOf(service: ServiceConfig, key: string): Loc {
  return service.keyLocs.get(key) ?? service.loc;
}

function checkPlacement(mesh: MeshInventory, services: ServiceConfig[], diags: Diagnostics): Map<string, readonly string[]> {
  const groupNames = [...mesh.inventory.groups.keys()];
  const validHosts = mesh.hosts;
  // One shared array per distinct group list: the scheduler relies on it.
  const memo = new Map<string, readonly string[]>();
  const membersOf = (groups: readonly string[]): readonly string[] => {
    const key = groups.join('\0');
    let members = memo.get(key);
    if (members === undefined) {
      const set = new Set<string>();
      for (const group of groups) for (const host of groupMembers(mesh.inventory, group)) if (validHosts.has(host)) set.add(host);
      members = [...set].sort();
      memo.set(key, members);
    }
    return members;
  };
  const unknownGroup = (service: ServiceConfig, locKey: string, key: string, group: string): void => {
    const suggestion = didYouMean(group, groupNames);
    diags.error('CONFIG_ERR_UNKNOWN_GROUP', locOf(service, locKey), `${service.name}.${key}`, `no inventory group "${group}"${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`, {
      expected: `a group of ${mesh.file}`,
    });
  };

  const candidates = new Map<string, readonly string[]>();
  for (const service of services) {
    if (service.scheduleWith !== null) continue;
    let ok = true;
    for (const group of service.schedulingGroups) {
      if (mesh.inventory.groups.has(group)) continue;
      ok = false;
      unknownGroup(service, `group:${group}`, service.keyLocs.has('scheduling_groups') ? 'scheduling_groups' : 'scheduling_group', group);
    }
    // Checked before the candidates are known, so an unknown scheduling group does not hide it.
    const masterGroupKnown = service.masterSchedulingGroup === null || mesh.inventory.groups.has(service.masterSchedulingGroup);
    if (!masterGroupKnown) unknownGroup(service, 'master_scheduling_group', 'master_scheduling_group', service.masterSchedulingGroup ?? '');
    if (!ok) continue;
    const hosts = membersOf(service.schedulingGroups);
    candidates.set(service.name, hosts);
    if (service.numInstances !== null && service.numInstances > hosts.length) {
      diags.error('CONFIG_ERR_TOO_MANY_INSTANCES', locOf(service, 'num_instances'), `${service.name}.num_instances`, `${service.numInstances} instances wanted but only ${hosts.length} candidate host(s) in ${service.schedulingGroups.join(', ')}`, {
        found: String(service.numInstances),
        expected: `at most ${hosts.length}, or more hosts in the scheduling groups`,
      });
    }
    if (hosts.length === 0) {
      diags.warning('CONFIG_WARN_NO_INSTANCES', service.loc, service.name, `service "${service.name}" has no candidate hosts in ${service.schedulingGroups.join(', ')} and will run nowhere`);
    }
    if (service.masterSchedulingGroup !== null && masterGroupKnown) {
      if (hosts.length > 0 && !overlaps(membersOf([service.masterSchedulingGroup]), hosts)) {
        diags.error('CONFIG_ERR_MASTER_GROUP_NO_OVERLAP', locOf(service, 'master_scheduling_group'), `${service.name}.master_scheduling_group`, `no host of group "${service.masterSchedulingGroup}" can run "${service.name}"`, {
          expected: `a group sharing hosts with ${service.schedulingGroups.join(', ')}`,
        });
      }
    }
  }
  return candidates;
}

/**
 * A schedule_with service runs where its target runs, so its master group
 * must share hosts with the candidates of the service at the chain's end;
 * without this the scheduler silently elects no master.
 */
function checkScheduledWithMasters(mesh: MeshInventory, services: ServiceConfig[], candidates: Candidates, diags: Diagnostics): void {
  const byName = new Map(services.map((s) => [s.name, s]));
  for (const service of services) {
    const group = service.masterSchedulingGroup;
    if (service.scheduleWith === null || group === null) continue;
    const where = locOf(service, 'master_scheduling_group');
    if (!mesh.inventory.groups.has(group)) {
      const suggestion = didYouMean(group, [...mesh.inventory.groups.keys()]);
      diags.error('CONFIG_ERR_UNKNOWN_GROUP', where, `${service.name}.master_scheduling_group`, `no inventory group "${group}"${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`, {
        expected: `a group of ${mesh.file}`,
      });
      continue;
    }
    const root = chainEnd(service, byName);
    const hosts = root === undefined ? undefined : candidates.get(root.name);
    if (root === undefined || hosts === undefined || hosts.length === 0) continue;
    const members = new Set(groupMembers(mesh.inventory, group));
    if (!hosts.some((host) => members.has(host))) {
      diags.error('CONFIG_ERR_MASTER_GROUP_NO_OVERLAP', where, `${service.name}.master_scheduling_group`, `no host of group "${group}" can run "${service.name}" (it runs where "${root.name}" runs)`, {
        expected: `a group sharing hosts with ${root.schedulingGroups.join(', ')}`,
      });
    }
  }
}

/**
 * Whether a schedule_with service's master group is reached depends on
 * where its target is placed, not only on the groups. So, on inputs with no
 * other error, the scheduler runs here as compile runs it, and a master that
 * could not be elected is refused rather than compiled into a mesh where
 * <service>-master answers nothing. Only such services pay for it.
 */
function checkPlacedMasters(mesh: MeshInventory, services: ServiceConfig[], candidates: Candidates, diags: Diagnostics): void {
  const affected = services.filter((s) => s.scheduleWith !== null && s.masterElection && s.masterSchedulingGroup !== null);
  if (affected.length === 0 || diags.hasErrors()) return;
  const membersOf = (group: string): string[] => groupMembers(mesh.inventory, group).filter((host) => mesh.hosts.has(host));
  const requests: ScheduleRequest[] = [...services]
    .sort((a, b) => compareNames(a.name, b.name))
    .map((s) => ({
      name: s.name,
      candidates: candidates.get(s.name) ?? [],
      count: s.numInstances,
      masterElection: s.masterElection,
      masterCandidates: s.masterSchedulingGroup === null ? null : membersOf(s.masterSchedulingGroup),
      scheduleWith: s.scheduleWith,
    }));
  const placements = schedule(requests);
  const byName = new Map(services.map((s) => [s.name, s]));
  for (const service of affected) {
    const placement = placements.get(service.name);
    if (placement === undefined || placement.hosts.length === 0 || placement.master !== null) continue;
    const root = chainEnd(service, byName)?.name ?? service.scheduleWith ?? '';
    diags.error('CONFIG_ERR_MASTER_NOT_PLACED', locOf(service, 'master_scheduling_group'), `${service.name}.master_scheduling_group`, `"${service.name}" runs where "${root}" is placed (${placement.hosts.join(', ')}), and none of those hosts is in group "${service.masterSchedulingGroup}": no master could be elected`, {
      expected: `a master group holding one of those hosts, "${root}" on every candidate (num_instances: all), or a master_scheduling_group on "${root}" inside this group`,
    });
  }
}

/** The service placed by scheduling groups at the end of a schedule_with chain; undefined for a broken chain. */
function chainEnd(service: ServiceConfig, byName: ReadonlyMap<string, ServiceConfig>): ServiceConfig | undefined {
  const seen = new Set<string>();
  let current: ServiceConfig | undefined = service;
  while (current !== undefined && current.scheduleWith !== null) {
    if (seen.has(current.name)) return undefined;
    seen.add(current.name);
    current = byName.get(current.scheduleWith);
  }
  return current;
}

function overlaps(a: readonly string[], b: readonly string[]): boolean {
  const set = new Set(b);
  return a.some((item) => set.has(item));
}

function checkScheduleWith(services: ServicesConfig, diags: Diagnostics): void {
  const names = [...services.services.keys()];
  for (const service of services.services.values()) {
    if (!service.enabled || service.scheduleWith === null) continue;
    const target = services.services.get(service.scheduleWith);
    const where = locOf(service, 'schedule_with');
    if (target === undefined) {
      const suggestion = didYouMean(service.scheduleWith, names);
      diags.error('CONFIG_ERR_UNKNOWN_SERVICE', where, `${service.name}.schedule_with`, `no service "${service.scheduleWith}"${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`, {
        expected: 'the name of another service in services.yml',
      });
      continue;
    }
    if (!target.enabled) {
      diags.error('CONFIG_ERR_UNKNOWN_SERVICE', where, `${service.name}.schedule_with`, `service "${target.name}" is disabled, so "${service.name}" would run nowhere`, {
        expected: 'an enabled service',
      });
      continue;
    }
    // Follow the chain; a cycle is reported once, at its alphabetically first member.
    const chain = [service.name];
    let current: ServiceConfig | undefined = target;
    while (current !== undefined && current.scheduleWith !== null) {
      if (chain.includes(current.name)) break;
      chain.push(current.name);
      current = services.services.get(current.scheduleWith);
    }
    if (current !== undefined && chain.includes(current.name)) {
      const cycle = chain.slice(chain.indexOf(current.name));
      if ([...cycle].sort()[0] === service.name) {
        diags.error('CONFIG_ERR_SCHEDULE_CYCLE', where, `${service.name}.schedule_with`, `schedule_with cycle: ${[...cycle, current.name].join(' -> ')}`, {
          expected: 'a chain that ends at a service placed by scheduling groups',
        });
      }
    }
  }
}

function checkPorts(mesh: MeshInventory, services: ServiceConfig[], diags: Diagnostics): void {
  const owner = new Map<number, string>();
  for (const overlay of mesh.overlays) owner.set(overlay.port, `overlay "${overlay.name}"`);
  for (const service of [...services].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    for (const port of service.ports) {
      const other = owner.get(port);
      if (other === undefined) {
        owner.set(port, `service "${service.name}"`);
        continue;
      }
      diags.error('CONFIG_ERR_PORT_CONFLICT', locOf(service, `ports:${port}`), `${service.name}.ports`, `port ${port} is already used by ${other} (ports are global in the mesh)`, {
        expected: 'a port no other service or overlay uses',
      });
    }
  }
}

/** `svc`, `svc-master` and `host` all live directly under the domain. */
function checkNameCollisions(mesh: MeshInventory, services: ServiceConfig[], diags: Diagnostics): void {
  const names = new Map<string, string>();
  for (const host of mesh.hosts.keys()) names.set(host, `host "${host}"`);
  for (const service of services) {
    const own = names.get(service.name);
    if (own !== undefined) {
      diags.error('CONFIG_ERR_NAME_COLLISION', service.loc, service.name, `service name "${service.name}" collides with ${own} in DNS`, {
        expected: 'service names distinct from host names and from other services\' "-master" names',
      });
    } else names.set(service.name, `service "${service.name}"`);
  }
  for (const service of services) {
    if (!service.masterElection) continue;
    const masterName = masterNames(mesh, service.name).short;
    const own = names.get(masterName);
    if (own !== undefined) {
      diags.error('CONFIG_ERR_NAME_COLLISION', locOf(service, 'master_election'), `${service.name}.master_election`, `DNS name "${masterName}" of the master collides with ${own}`, {
        expected: `no host or service named "${masterName}"`,
      });
    }
  }
}

function checkCredentials(services: ServiceConfig[], diags: Diagnostics): void {
  const seen = new Map<string, { service: string; signature: string }>();
  for (const service of [...services].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    for (const credential of service.credentials) {
      const signature = JSON.stringify([credential.enable_client, credential.enable_server, [...credential.extra_san].sort(), credential.lifetime_ms ?? null]);
      const first = seen.get(credential.name);
      if (first === undefined) {
        seen.set(credential.name, { service: service.name, signature });
      } else if (first.signature !== signature) {
        diags.error('CONFIG_ERR_CREDENTIAL_CONFLICT', credential.loc, `${service.name}.service_credentials`, `credential "${credential.name}" is also defined by service "${first.service}" with different settings`, {
          expected: 'the same enable_client, enable_server, extra_san and lifetime everywhere the credential is listed',
        });
      }
    }
  }
}

/** Hostnames routed twice; port clashes are checkGatewayPorts'. */
function checkGatewayRoutes(services: ServiceConfig[], diags: Diagnostics): void {
  const routes = new Map<string, string>();
  const mixed = gatewayPortConflicts(gatewayPortFacts(services, [], []))
    .filter((c) => c.kind === 'family' || c.kind === 'tcp')
    .map((c) => c.endpoint);
  for (const service of [...services].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    for (const endpoint of service.gatewayEndpoints) {
      const label = `${service.name}/${endpoint.name}`;
      // An endpoint on a front of another family is reported there; its routes would only repeat it.
      if (mixed.some((m) => m.service === service.name && m.endpoint === endpoint.name)) continue;
      for (const hostname of endpoint.hostnames) {
        const key = `${endpoint.port}/${endpoint.mode}/${hostname}`;
        const other = routes.get(key);
        if (other !== undefined) {
          diags.error('CONFIG_ERR_GATEWAY_ROUTE_CONFLICT', endpoint.loc, `${service.name}.gateway_endpoints`, `${hostname}:${endpoint.port} (${endpoint.mode}) is already routed to ${other}`, {
            expected: 'each hostname, port and mode routed to one endpoint',
          });
        } else routes.set(key, label);
      }
    }
  }
}

/**
 * Port clashes on the gateway hosts (gateway-ports.ts holds the rules):
 * fronts of different families or a shared tcp front (PORT_MODE), and a
 * front on the registration port, on a port of a service that can run on a
 * gateway host, or on a tinc overlay's port (PORT_CLASH). Each is reported
 * at the endpoint's `port` key.
 */
function checkGatewayPorts(mesh: MeshInventory, services: ServiceConfig[], candidates: Candidates, diags: Diagnostics): void {
  const byName = new Map(services.map((s) => [s.name, s]));
  const hostsOf = (service: ServiceConfig): readonly string[] => {
    const root = chainEnd(service, byName);
    return root === undefined ? [] : (candidates.get(root.name) ?? []);
  };
  const gateway = byName.get(GATEWAY_SERVICE);
  const gatewayHosts = new Set(gateway === undefined ? [] : hostsOf(gateway));
  // Services of the same groups share one candidate array: test each array once (10,000-host meshes).
  const touches = new Map<readonly string[], boolean>();
  const mayRunThere = (hosts: readonly string[]): boolean => {
    let found = touches.get(hosts);
    if (found === undefined) touches.set(hosts, (found = hosts.some((h) => gatewayHosts.has(h))));
    return found;
  };
  const onGatewayHosts = gatewayHosts.size === 0 ? [] : services.filter((s) => s === gateway || mayRunThere(hostsOf(s)));
  const joined = new Set([...gatewayHosts].flatMap((h) => [...(mesh.hosts.get(h)?.overlays.keys() ?? [])]));
  const facts = gatewayPortFacts(services, onGatewayHosts, mesh.overlays.filter((o) => joined.has(o.name)));
  for (const conflict of gatewayPortConflicts(facts)) {
    const service = byName.get(conflict.endpoint.service);
    const endpoint = service?.gatewayEndpoints.find((e) => e.name === conflict.endpoint.endpoint && e.port === conflict.endpoint.port);
    if (service === undefined || endpoint === undefined) continue;
    const label = `${service.name}/${endpoint.name}`;
    const loc = endpoint.portLoc ?? endpoint.loc;
    const key = `${endpoint.path ?? `${service.name}.gateway_endpoints`}.port`;
    const taken = `port ${conflict.port}${endpoint.portLoc === undefined ? ` (the ${endpoint.mode} default)` : ''}`;
    if (conflict.kind === 'family' || conflict.kind === 'tcp') {
      const otherFamily = conflict.other.kind === 'endpoint' ? frontFamily(conflict.other.mode) : '';
      diags.error('CONFIG_ERR_GATEWAY_PORT_MODE', loc, key, `${taken} is a ${otherFamily} front (${describePortOwner(conflict.other)}); ${label} wants ${endpoint.mode}`, {
        expected: 'tls endpoints and http/connect endpoints on different ports, and a port of its own for each tcp endpoint',
      });
    } else {
      diags.error('CONFIG_ERR_GATEWAY_PORT_CLASH', loc, key, `${label} wants front ${taken}, which on the gateway hosts is already ${describePortOwner(conflict.other)}: one of them would fail to start with EADDRINUSE`, {
        expected: 'a front port that no service on the gateway hosts, no tinc overlay and not the registration port uses',
      });
    }
  }
}

/** The plain facts gateway-ports.ts works on, endpoints in name order (the first keeps a port). */
function gatewayPortFacts(services: ServiceConfig[], onGatewayHosts: ServiceConfig[], overlays: readonly OverlayConfig[]): GatewayPortFacts {
  const sorted = [...services].sort((a, b) => (a.name < b.name ? -1 : 1));
  const gateway = services.find((s) => s.name === GATEWAY_SERVICE);
  return {
    endpoints: sorted.flatMap((s) => s.gatewayEndpoints.map((e) => ({ service: s.name, endpoint: e.name, port: e.port, mode: e.mode }))),
    registrationPort: registrationPortOf(gateway?.ports),
    services: onGatewayHosts.map((s) => ({ name: s.name, ports: s.ports })),
    overlays: overlays.map((o) => ({ name: o.name, port: o.port, driver: o.driver })),
  };
}
