/**
 * What each certificate is entitled to name, derived from the Topology alone.
 * The host uses it to ask (CSR), the controller to check the CSR, and the
 * renewal rule to notice a changed set (new overlay address, new master).
 */
import { parseIp } from '../lib/ip.js';
import { OID } from './oids.js';
import type { Topology, TopologyCredential, TopologyHost, TopologyService } from '../topology/index.js';
import { instanceNames, masterNames, serviceNames, shardNames, workloadId } from '../topology/index.js';

export type CertKind = 'client' | 'server';
export const CERT_KINDS: readonly CertKind[] = ['client', 'server'];

export interface San {
  readonly type: 'dns' | 'ip' | 'uri';
  /** DNS names lowercase; IPs in canonical text (dotted quad, RFC 5952); URIs as given (the workload identity). */
  readonly value: string;
}

/** `dns:name` / `ip:addr` / `uri:spiffe://…`: one string per SAN for sets and messages. */
export function sanKey(san: San): string {
  return `${san.type}:${san.value}`;
}

/** A DNS name or an IP address, canonicalized; IP text becomes an IP SAN. */
export function toSan(text: string): San {
  const ip = parseIp(text);
  return ip !== undefined ? { type: 'ip', value: ip.text } : { type: 'dns', value: text.toLowerCase().replace(/\.$/, '') };
}

function unique(names: readonly string[]): San[] {
  const seen = new Set<string>();
  const out: San[] = [];
  for (const name of names) {
    const san = toSan(name);
    const key = sanKey(san);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(san);
    }
  }
  // DNS names first, then addresses, each in first-seen order: stable output for tests and diffs.
  return [...out.filter((s) => s.type === 'dns'), ...out.filter((s) => s.type === 'ip')];
}

/** The workload identity SAN: which host holds the credential (src/topology/identity.ts). */
export function identitySan(topology: Topology, credential: TopologyCredential, host: TopologyHost): San {
  return { type: 'uri', value: workloadId(topology, host.name, credential.name) };
}

/** Client certificate of `credential` on `host`: `name`, `name.domain` and the workload identity. */
export function clientSans(topology: Topology, credential: TopologyCredential, host: TopologyHost): San[] {
  const own = serviceNames(topology, credential.name);
  return [...unique([own.short, own.fqdn]), identitySan(topology, credential, host)];
}

/**
 * Server certificate of `credential` on `host`: per service of the credential
 * that runs there `svc`, `svc.domain`, `host.svc`, `host.svc.domain`,
 * `shard.svc.domain`, and `svc-master[.domain]` on the master; then the host's
 * FQDN, `localhost`, every address (ips, public_ips, overlays), 127.0.0.1,
 * ::1 and `extra_san`; last the workload identity URI.
 */
export function serverSans(topology: Topology, credential: TopologyCredential, host: TopologyHost): San[] {
  const names: string[] = [];
  for (const serviceName of credential.services) {
    // The topology's contract: a credential's services all exist.
    if (!host.services.includes(serviceName)) continue;
    const service = topology.services[serviceName] as TopologyService;
    const all = serviceNames(topology, serviceName);
    const instance = instanceNames(topology, serviceName, host.name);
    names.push(all.short, all.fqdn, instance.short, instance.fqdn);
    if (host.shard !== null) names.push(shardNames(topology, serviceName, host.shard).fqdn);
    if (service.master === host.name) {
      const master = masterNames(topology, serviceName);
      names.push(master.short, master.fqdn);
    }
  }
  names.push(host.fqdn, 'localhost');
  names.push(...host.ips, ...host.public_ips, ...Object.values(host.overlays), '127.0.0.1', '::1');
  names.push(...credential.extra_san);
  return [...unique(names), identitySan(topology, credential, host)];
}

/** The SANs `host` is entitled to for `credential` and `kind`. */
export function entitledSans(topology: Topology, credential: TopologyCredential, host: TopologyHost, kind: CertKind): San[] {
  return kind === 'client' ? clientSans(topology, credential, host) : serverSans(topology, credential, host);
}

/** Certificate kinds named by EKU OIDs (clientAuth, serverAuth). */
export function kindsOfUsages(usages: readonly string[]): CertKind[] {
  const kinds: CertKind[] = [];
  if (usages.includes(OID.clientAuth)) kinds.push('client');
  if (usages.includes(OID.serverAuth)) kinds.push('server');
  return kinds;
}

/** The kinds of certificate a credential has (enable_client / enable_server). */
export function kindsOf(credential: TopologyCredential): CertKind[] {
  return CERT_KINDS.filter((kind) => (kind === 'client' ? credential.enable_client : credential.enable_server));
}
