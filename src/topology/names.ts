/**
 * The DNS names the mesh gives services and hosts, in one place: the DNS
 * zone answers them, certificates carry them as SANs, the CA's name
 * constraints permit them, and the gateway and agent dial them. Each form
 * comes short (relative to the domain, as search domains resolve it) and
 * fully qualified.
 *
 *   svc            every instance          svc.<domain>
 *   host.svc       one instance            host.svc.<domain>
 *   shard.svc      the shard's instances   shard.svc.<domain>
 *   svc-master     the elected master      svc-master.<domain>
 *   host           the host                host.<domain>
 *   _svc._tcp      instances and ports     _svc._tcp.<domain> (SRV, RFC 2782)
 */

/** Anything that carries the mesh domain: a Topology, or config's mesh inventory. */
interface HasDomain {
  readonly domain: string;
}

interface NameForms {
  /** Relative to the domain, e.g. `web`. */
  readonly short: string;
  /** `<short>.<domain>` */
  readonly fqdn: string;
}

/** `<name>.<domain>`: any mesh name, fully qualified. */
function qualify(mesh: HasDomain, name: string): string {
  return `${name}.${mesh.domain}`;
}

function forms(mesh: HasDomain, short: string): NameForms {
  return { short, fqdn: qualify(mesh, short) };
}

/** A service's (or a credential's) own name: every instance. */
export function serviceNames(mesh: HasDomain, service: string): NameForms {
  return forms(mesh, service);
}

/** `host.svc`: one instance. */
export function instanceNames(mesh: HasDomain, service: string, host: string): NameForms {
  return forms(mesh, `${host}.${service}`);
}

/** `shard.svc`: the service's instances in one shard. */
export function shardNames(mesh: HasDomain, service: string, shard: string): NameForms {
  return forms(mesh, `${shard}.${service}`);
}

/** `svc-master`: the elected master (its Ansible group is `ansibleGroupName` of it: `svc_master`). */
export function masterNames(mesh: HasDomain, service: string): NameForms {
  return forms(mesh, `${service}-master`);
}

/**
 * A mesh name as an Ansible group: dashes become underscores (`db-backup`
 * -> `db_backup`), the only characters Ansible accepts in group names
 * without its "Invalid characters" warning, and usable in Jinja dot
 * notation (`groups.db_master`). Mesh names have no underscores, so no
 * two names meet in one group.
 */
export function ansibleGroupName(name: string): string {
  return name.replaceAll('-', '_');
}

/** `_svc._tcp` / `_svc._udp` (RFC 2782): the service's instances and ports, as SRV records. */
export function srvNames(mesh: HasDomain, service: string, protocol: 'tcp' | 'udp'): NameForms {
  return forms(mesh, `_${service}._${protocol}`);
}

/** `_tcp` / `_udp`: the empty non-terminal above every SRV name (it exists, with no records). */
export function srvProtocolName(protocol: 'tcp' | 'udp'): string {
  return `_${protocol}`;
}

/** `host.<domain>` */
export function hostFqdn(mesh: HasDomain, host: string): string {
  return qualify(mesh, host);
}
