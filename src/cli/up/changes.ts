/**
 * The lines `up` prints for what an accepted edit changed that it does not
 * act on itself (DNS-only instances, hosts, services, credentials,
 * overlays, the domain); the reconciler prints its own lines for the
 * agents, backends and gateway it starts and stops.
 */
import type { Topology, TopologyHost } from '../../topology/index.js';
import type { TopologyDiff } from '../../topology/index.js';

const addresses = (host: TopologyHost): string => [...host.ips, ...Object.entries(host.overlays).map(([overlay, ip]) => `${overlay}:${ip}`)].join(' ');

/** The keys of `before` and `after` (same shape) whose values differ, `ignored` aside. */
function changedKeys(before: object, after: object, ignored: readonly string[]): string[] {
  const a = before as Record<string, unknown>;
  const b = after as Record<string, unknown>;
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((key) => !ignored.includes(key) && JSON.stringify(a[key]) !== JSON.stringify(b[key])).sort();
}

/**
 * `handled` holds `<service>@<host>` of the instances the reconciler
 * printed a line for; the diff's other instance changes get one here.
 */
export function changeLines(previous: Topology, current: Topology, diff: TopologyDiff, handled: ReadonlySet<string>): string[] {
  const lines: string[] = [];
  if (diff.domainChanged) lines.push(`~ domain ${previous.domain} -> ${current.domain}`);
  if (diff.pkiPolicyChanged) lines.push('~ pki_policy (lifetimes of certificates issued from now on, CRL lifetime and refresh)');
  if (diff.overlaysChanged) lines.push(`~ overlays (${current.overlays.map((o) => o.name).join(', ') || 'none'})`);
  for (const name of diff.hostsAdded) lines.push(`+ host ${name} (${addresses(current.hosts[name]!)})`);
  for (const name of diff.hostsRemoved) lines.push(`- host ${name}`);
  for (const name of diff.hostsChanged) {
    const before = previous.hosts[name]!;
    const after = current.hosts[name]!;
    if (addresses(before) !== addresses(after) || before.public_ips.join() !== after.public_ips.join()) lines.push(`~ ${name} addresses (${addresses(before)} -> ${addresses(after)})`);
    // Services, masters and credentials of a host follow from the services' lines.
    const other = changedKeys(before, after, ['ips', 'public_ips', 'overlays', 'services', 'masters', 'credentials']);
    if (other.length > 0) lines.push(`~ ${name} ${other.join(', ')}`);
  }
  for (const name of diff.servicesAdded) lines.push(`+ service ${name} (${current.services[name]!.instances.length} instance(s))`);
  for (const name of diff.servicesRemoved) lines.push(`- service ${name}`);
  for (const name of diff.servicesChanged) {
    const before = previous.services[name]!;
    const after = current.services[name]!;
    const other = changedKeys(before, after, ['instances', 'master']);
    if (before.master !== after.master) lines.push(`~ ${name} master ${before.master ?? 'none'} -> ${after.master ?? 'none'}`);
    if (other.length > 0) lines.push(`~ service ${name} (${other.join(', ')})`);
  }
  for (const { service, host } of diff.instancesAdded) if (!handled.has(`${service}@${host}`)) lines.push(`+ ${service} on ${host}`);
  for (const { service, host } of diff.instancesRemoved) if (!handled.has(`${service}@${host}`)) lines.push(`- ${service} on ${host}`);
  for (const name of diff.credentialsAdded) lines.push(`+ credential ${name}`);
  for (const name of diff.credentialsRemoved) lines.push(`- credential ${name}`);
  for (const name of diff.credentialsChanged) {
    // Its hosts and services follow from the instances' lines.
    const other = changedKeys(previous.credentials[name]!, current.credentials[name]!, ['hosts', 'services']);
    if (other.length > 0) lines.push(`~ credential ${name} (${other.join(', ')})`);
  }
  return lines;
}
