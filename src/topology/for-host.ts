/**
 * The Topology for one host: the Topology as that host needs it: what the host's own daemons (DNS on
 * loopback, PKI requests, overlay files, firewall, gateway, agent) read, and
 * nothing they do not. Overlays the host is not on are left out, and so are
 * other hosts' addresses on them.
 *
 * Why: the playbook ships this file to each host. With the whole Topology
 * every host's copy changed whenever any host's overlay address moved, so
 * every host reported a change and reloaded; with its own, a host changes
 * only when something it resolves, serves or connects to changes. Every
 * answer a host's loopback DNS server gives, every SAN of its certificates
 * and every file of its overlay render are the same from it as from the
 * whole Topology (tested in test/topology-for-host.test.ts).
 */
import { MeshplaneError } from '../errors.js';
import type { HostAddresses, Topology } from './types.js';

export function topologyForHost(topology: Topology, hostName: string): Topology {
  const self = topology.hosts[hostName];
  if (self === undefined) {
    const known = Object.keys(topology.hosts);
    throw new MeshplaneError('TOPOLOGY_ERR_UNKNOWN_HOST', `host "${hostName}" is not in the topology (it has ${known.length > 10 ? `${known.slice(0, 10).join(', ')}, ...` : known.join(', ')})`);
  }
  const mine = new Set(Object.keys(self.overlays));
  const keep = <T extends HostAddresses>(item: T): T => ({
    ...item,
    overlays: Object.fromEntries(Object.entries(item.overlays).filter(([name]) => mine.has(name))),
  });
  return {
    ...topology,
    overlays: topology.overlays.filter((overlay) => mine.has(overlay.name)),
    hosts: Object.fromEntries(Object.entries(topology.hosts).map(([name, host]) => [name, keep(host)])),
    services: Object.fromEntries(Object.entries(topology.services).map(([name, service]) => [name, { ...service, instances: service.instances.map(keep) }])),
  };
}
