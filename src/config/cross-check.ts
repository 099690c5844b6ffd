/**
 * Checks that need both inputs at once: groups named in services.yml exist
 * in the inventory, counts fit the candidate hosts, schedule_with targets
 * exist and form no cycle, ports and gateway routes do not clash, names do
 * not collide in DNS, and shared credentials agree.
 */
import type { Diagnostics, Loc } from './diagnostics.js';
import { masterNames } from '../topology/names.js';
import { didYouMean } from '../lib/did-you-mean.js';
import { groupMembers } from './inventory.js';
import type { MeshInventory, ServiceConfig, ServicesConfig } from './types.js';

/** Candidate hosts per enabled service (scheduleWith services get none). */
export type Candidates = ReadonlyMap<string, readonly string[]>;

export function crossCheck(mesh: MeshInventory, services: ServicesConfig, diags: Diagnostics): Candidates {
  const enabled = [...services.services.values()].filter((s) => s.enabled);
  const candidates = checkPlacement(mesh, enabled, diags);
  checkScheduleWith(services, diags);
  checkPorts(mesh, enabled, diags);
  checkNameCollisions(mesh, enabled, diags);
  checkCredentials(enabled, diags);
  checkGatewayRoutes(enabled, diags);
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
    if (service.masterSchedulingGroup !== null) {
      if (!mesh.inventory.groups.has(service.masterSchedulingGroup)) {
        unknownGroup(service, 'master_scheduling_group', 'master_scheduling_group', service.masterSchedulingGroup);
      } else if (hosts.length > 0 && !overlaps(membersOf([service.masterSchedulingGroup]), hosts)) {
        diags.error('CONFIG_ERR_MASTER_GROUP_NO_OVERLAP', locOf(service, 'master_scheduling_group'), `${service.name}.master_scheduling_group`, `no host of group "${service.masterSchedulingGroup}" can run "${service.name}"`, {
          expected: `a group sharing hosts with ${service.schedulingGroups.join(', ')}`,
        });
      }
    }
  }
  return candidates;
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
      const signature = JSON.stringify([credential.enable_client, credential.enable_server, [...credential.extra_san].sort()]);
      const first = seen.get(credential.name);
      if (first === undefined) {
        seen.set(credential.name, { service: service.name, signature });
      } else if (first.signature !== signature) {
        diags.error('CONFIG_ERR_CREDENTIAL_CONFLICT', credential.loc, `${service.name}.service_credentials`, `credential "${credential.name}" is also defined by service "${first.service}" with different settings`, {
          expected: 'the same enable_client, enable_server and extra_san everywhere the credential is listed',
        });
      }
    }
  }
}

function checkGatewayRoutes(services: ServiceConfig[], diags: Diagnostics): void {
  const routes = new Map<string, string>();
  const portModes = new Map<number, { family: 'tls' | 'http' | 'tcp'; owner: string }>();
  for (const service of [...services].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    for (const endpoint of service.gatewayEndpoints) {
      const label = `${service.name}/${endpoint.name}`;
      const family = endpoint.mode === 'tls' || endpoint.mode === 'tcp' ? endpoint.mode : 'http';
      const portOwner = portModes.get(endpoint.port);
      if (portOwner !== undefined && (portOwner.family !== family || family === 'tcp')) {
        diags.error('CONFIG_ERR_GATEWAY_PORT_MODE', endpoint.loc, `${service.name}.gateway_endpoints`, `port ${endpoint.port} is a ${portOwner.family} port (endpoint ${portOwner.owner}); ${label} wants ${endpoint.mode}`, {
          expected: 'tls endpoints and http/connect endpoints on different ports, and a port of its own for each tcp endpoint',
        });
        continue;
      }
      if (portOwner === undefined) portModes.set(endpoint.port, { family, owner: label });
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
