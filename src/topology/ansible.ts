/**
 * The Topology as an Ansible dynamic inventory (the JSON a script inventory
 * prints for `--list`): one group per service listing the hosts that run it,
 * a `<service>_master` group per elected master, and `meshplane_*` host vars.
 * Group names have dashes turned into underscores (ansibleGroupName): a
 * dashed group name makes every Ansible command warn, even beside its
 * underscore twin, so the dashed forms are not listed at all.
 * Use it beside the static inventory: `ansible-playbook -i hosts.yml -i
 * meshplane-inventory ...`; Ansible merges the two.
 */
import type { Topology } from './types.js';
import { ansibleGroupName, masterNames } from './names.js';

export function toAnsibleInventory(topology: Topology): Record<string, unknown> {
  const hostvars: Record<string, Record<string, unknown>> = {};
  for (const host of Object.values(topology.hosts)) {
    hostvars[host.name] = {
      meshplane_domain: topology.domain,
      meshplane_fqdn: host.fqdn,
      meshplane_ips: host.ips,
      meshplane_public_ips: host.public_ips,
      meshplane_overlays: host.overlays,
      meshplane_shard: host.shard,
      meshplane_services: host.services,
      meshplane_masters: host.masters,
      meshplane_credentials: host.credentials,
      // Services here that the gateway routes to: the agent role runs one agent per entry.
      meshplane_agent_services: host.services.filter((name) => (topology.services[name]?.gateway_endpoints.length ?? 0) > 0),
    };
  }
  const inventory: Record<string, unknown> = { _meta: { hostvars } };
  const children: string[] = [];
  for (const service of Object.values(topology.services)) {
    const group = ansibleGroupName(service.name);
    inventory[group] = { hosts: service.instances.map((i) => i.host) };
    children.push(group);
    if (service.master !== null) {
      const group = ansibleGroupName(masterNames(topology, service.name).short);
      inventory[group] = { hosts: [service.master] };
      children.push(group);
    }
  }
  inventory.all = { hosts: Object.keys(topology.hosts), children };
  return inventory;
}
