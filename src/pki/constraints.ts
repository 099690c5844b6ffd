/**
 * The CA's critical Name Constraints: which names and addresses any
 * certificate under it may carry. Derived from the Topology: the mesh domain,
 * `localhost`, the single-label names the mesh uses (service, `svc-master`
 * and credential names, which are not under the domain), `extra_san` names,
 * and the address ranges: loopback, every overlay network, `--permit-ip`
 * ranges, and any host address left uncovered as a single-address range.
 *
 * The same matching rules as OpenSSL's verifier are applied when signing, so
 * the controller refuses what a peer would refuse.
 */
import { MeshplaneError } from '../errors.js';
import { networkContains, parseIp, parseNetwork } from '../lib/ip.js';
import type { IpNetwork } from '../lib/ip.js';
import type { Topology } from '../topology/index.js';
import { masterNames } from '../topology/index.js';
import type { San } from './sans.js';
import { toSan } from './sans.js';
import { DerReader, TAG, certificateExtensions } from './der.js';
import { OID } from './oids.js';
import type { X509 } from './x509.js';
import { peculiar } from './x509.js';

export interface NameConstraintSet {
  /** Permitted DNS subtrees, lowercase, sorted. */
  readonly dns: readonly string[];
  /** Permitted address ranges as canonical CIDR text, sorted. */
  readonly ip: readonly string[];
}

const LOOPBACK_RANGES = ['127.0.0.0/8', '::1/128'];

/** True when `name` is `base` or below it (OpenSSL `nc_dns` semantics). */
function dnsWithin(name: string, base: string): boolean {
  const n = name.toLowerCase();
  const b = base.toLowerCase();
  if (b === '') return true;
  if (b.startsWith('.')) return n.endsWith(b);
  return n === b || n.endsWith(`.${b}`);
}

function parseRange(text: string, what: string): IpNetwork {
  const network = parseNetwork(text.includes('/') ? text : `${text}/${parseIp(text)?.family === 6 ? 128 : 32}`);
  if (network === undefined) throw new MeshplaneError('PKI_ERR_NAME_CONSTRAINTS', `${what} "${text}" is not an address range (expected CIDR such as 10.0.0.0/16)`);
  return network;
}

/** The constraints a CA for `topology` needs; `permitIps`/`permitDns` widen them. */
export function wantedConstraints(topology: Topology, permitIps: readonly string[] = [], permitDns: readonly string[] = []): NameConstraintSet {
  const dns = new Set<string>([topology.domain, 'localhost', ...permitDns.map((d) => d.toLowerCase())]);
  const addresses: string[] = [];
  for (const credential of Object.values(topology.credentials)) {
    dns.add(credential.name);
    for (const serviceName of credential.services) {
      dns.add(serviceName);
      const master = topology.services[serviceName]?.master;
      if (master !== undefined && master !== null) dns.add(masterNames(topology, serviceName).short);
    }
    for (const extra of credential.extra_san) {
      const san = toSan(extra);
      if (san.type === 'dns') dns.add(san.value);
      else addresses.push(san.value);
    }
  }
  for (const host of Object.values(topology.hosts)) addresses.push(...host.ips, ...host.public_ips, ...Object.values(host.overlays));

  const ranges: IpNetwork[] = [
    ...LOOPBACK_RANGES.map((r) => parseRange(r, 'range')),
    ...topology.overlays.map((o) => parseRange(o.network, `overlay ${o.name} network`)),
    ...permitIps.map((r) => parseRange(r, '--permit-ip')),
  ];
  for (const text of addresses) {
    const address = parseIp(text);
    if (address !== undefined && !ranges.some((r) => networkContains(r, address))) ranges.push(parseRange(address.text, 'address'));
  }
  return normalize([...dns], ranges.map((r) => r.text));
}

/**
 * Drops entries covered by another entry, dedupes and sorts: one canonical
 * form to compare. Linear in practice: a DNS name is checked against the set
 * of its own parent names, an address range against the (few) wider ranges.
 */
function normalize(dns: readonly string[], ip: readonly string[]): NameConstraintSet {
  const dnsSet = new Set(dns.map((d) => d.toLowerCase()));
  const names = [...dnsSet].filter((name) => {
    const labels = name.split('.');
    for (let i = 1; i < labels.length; i++) if (dnsSet.has(labels.slice(i).join('.'))) return false;
    return true;
  });
  const networks = new Map<string, IpNetwork>();
  for (const text of ip) {
    const network = parseRange(text, 'range');
    networks.set(network.text, network);
  }
  const wide = [...networks.values()].filter((n) => n.prefix < (n.family === 4 ? 32 : 128));
  const kept = [...networks.values()].filter(
    (n) => !wide.some((o) => o !== n && o.family === n.family && o.prefix < n.prefix && networkContains(o, { family: n.family, value: n.base, text: '' })),
  );
  return { dns: names.sort(), ip: kept.map((n) => n.text).sort() };
}

/** Everything either set permits. */
export function mergeConstraints(a: NameConstraintSet, b: NameConstraintSet): NameConstraintSet {
  return normalize([...a.dns, ...b.dns], [...a.ip, ...b.ip]);
}

/** True when every name and range of `inner` is allowed by `outer`. */
export function constraintsCover(outer: NameConstraintSet, inner: NameConstraintSet): boolean {
  const dnsOk = inner.dns.every((name) => outer.dns.some((base) => dnsWithin(name, base)));
  const ipOk = inner.ip.every((range) => {
    const network = parseRange(range, 'range');
    return outer.ip.map((r) => parseRange(r, 'range')).some((o) => o.family === network.family && o.prefix <= network.prefix && networkContains(o, { family: network.family, value: network.base, text: '' }));
  });
  return dnsOk && ipOk;
}

/**
 * The critical nameConstraints extension for the CA certificate, built with
 * @peculiar/asn1-x509 (@peculiar/x509 has no class for it).
 */
export async function nameConstraintsExtension(set: NameConstraintSet): Promise<InstanceType<X509['Extension']>> {
  const x509 = await peculiar();
  const { AsnConvert } = await import('@peculiar/asn1-schema');
  const { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints } = await import('@peculiar/asn1-x509');
  const subtrees = [
    ...set.dns.map((name) => new GeneralSubtree({ base: new GeneralName({ dNSName: name }) })),
    ...set.ip.map((range) => new GeneralSubtree({ base: new GeneralName({ iPAddress: range }) })),
  ];
  const der = AsnConvert.serialize(new NameConstraints({ permittedSubtrees: new GeneralSubtrees(subtrees) }));
  return new x509.Extension(OID.nameConstraints, true, der);
}

/**
 * Reads the permitted subtrees back from a CA certificate (DER); undefined
 * when it has none. Uses the DER reader: @peculiar's object model takes
 * about a second for a CA with thousands of single-address constraints.
 */
export function readConstraints(certDer: Uint8Array): NameConstraintSet | undefined {
  const r = new DerReader(certDer, 'CA certificate');
  for (const { id, value } of certificateExtensions(r)) {
    if (id !== OID.nameConstraints) continue;
    const dns: string[] = [];
    const ip: string[] = [];
    for (const part of r.children(r.expect(value, TAG.sequence, 'NameConstraints'))) {
      if (part.tag !== 0xa0) continue; // excluded subtrees: we never write them
      for (const subtree of r.children(part)) {
        const [base] = r.children(r.expect(subtree, TAG.sequence, 'GeneralSubtree'));
        if (base?.tag === 0x82) dns.push(Buffer.from(r.content(base)).toString('latin1'));
        else if (base?.tag === 0x87) ip.push(cidrText(r.content(base)));
      }
    }
    return normalize(dns, ip);
  }
  return undefined;
}

/** iPAddress name constraint bytes (address then mask) as CIDR text. */
function cidrText(bytes: Uint8Array): string {
  const half = bytes.length / 2;
  const address = bytes.subarray(0, half);
  let prefix = 0;
  for (const byte of bytes.subarray(half)) for (let bit = 7; bit >= 0; bit--) if (byte & (1 << bit)) prefix++;
  let text: string;
  if (half === 4) text = Array.from(address).join('.');
  else {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push((((address[i] ?? 0) << 8) | (address[i + 1] ?? 0)).toString(16));
    text = groups.join(':');
  }
  return parseRange(`${text}/${prefix}`, 'constraint').text;
}

export interface CompiledConstraints {
  /** The SANs the constraints do not permit (empty when all are fine). */
  outside(sans: readonly San[]): San[];
}

/**
 * Constraints prepared for checking many certificates: single addresses (a
 * large fleet without --permit-ip has one per host) go in a set, ranges are
 * parsed once.
 */
export function compileConstraints(set: NameConstraintSet): CompiledConstraints {
  const exact = new Set<string>();
  const ranges: IpNetwork[] = [];
  for (const text of set.ip) {
    const range = parseRange(text, 'range');
    if (range.prefix === (range.family === 4 ? 32 : 128)) exact.add(text.slice(0, text.indexOf('/')));
    else ranges.push(range);
  }
  return {
    outside: (sans) =>
      sans.filter((san) => {
        if (san.type === 'dns') return !set.dns.some((base) => dnsWithin(san.value, base));
        // The CA permits no URI subtrees, so (RFC 5280 4.2.1.10, and OpenSSL) URIs are unconstrained:
        // the identity URI is checked exactly by the signer instead (authorize.ts).
        if (san.type === 'uri') return false;
        if (exact.has(san.value)) return false;
        const address = parseIp(san.value);
        return address === undefined || !ranges.some((range) => networkContains(range, address));
      }),
  };
}
