/**
 * The Topology contract, checked when a Topology is read. `meshplane
 * compile` only writes topologies that pass, but daemons read a file that
 * may have been edited, truncated or mixed up with another mesh's, and every
 * consumer (DNS, PKI, overlays, gateway, agent) trusts what it reads. So
 * every field's type and range is checked here, then every fact that two
 * parts of the file state twice (a host's services and a service's
 * instances, a credential's hosts, overlay members...), once, for all of
 * them.
 *
 * Two passes: the shape (types, ranges, canonical forms, sort order), then,
 * only when the shape is right, the cross-references. Problems name the JSON
 * path; at most MAX_PROBLEMS are collected so a wrong file of 10,000 hosts
 * is not reported 10,000 times.
 */
import { networkContains, parseIp, parseNetwork } from '../lib/ip.js';
import type { IpAddress, IpNetwork } from '../lib/ip.js';
import { hostFqdn } from './names.js';
import { PKI_POLICY_BOUNDS, formatPolicyDuration, maxCrlRefreshMs } from './pki-policy.js';
import { BALANCE_POLICIES, GATEWAY_MODES, OVERLAY_DRIVERS, PROXY_PROTOCOLS, TINC_CIPHERS, TINC_DIGESTS, TOPOLOGY_FORMAT_VERSION } from './types.js';
import type { Topology, TopologyOverlay, TopologyService } from './types.js';

const MAX_PROBLEMS = 20;

interface TopologyProblem {
  /** TOPOLOGY_ERR_FORMAT: a field's type or range; TOPOLOGY_ERR_INCONSISTENT: two fields disagree. */
  readonly code: 'TOPOLOGY_ERR_FORMAT' | 'TOPOLOGY_ERR_INCONSISTENT';
  /** JSON path, e.g. `services.web.instances[1].host`. */
  readonly path: string;
  readonly message: string;
}

/** A DNS label: service, host, credential, endpoint and shard names. */
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const OVERLAY_NAME = /^[a-z][a-z0-9_]{0,14}$/;
const DOMAIN = /^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
/** A route hostname or DNS SAN: DNS labels, optionally a leading `*.`. */
const HOSTNAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

const INDEX_KEY = /^(0|[1-9][0-9]{0,8})$/;

const TOP_KEYS = ['format_version', 'domain', 'overlays', 'hosts', 'services', 'credentials', 'allow_no_services', 'pki'];
const PKI_KEYS = ['leaf_lifetime_ms', 'crl_lifetime_ms', 'crl_refresh_ms'] as const;
const OVERLAY_KEYS = ['name', 'network', 'port', 'driver', 'mtu', 'cipher', 'digest', 'compression', 'persistent_keepalive', 'hosts'];
const HOST_KEYS = ['name', 'fqdn', 'ips', 'public_ips', 'overlays', 'shard', 'groups', 'services', 'masters', 'credentials'];
const INSTANCE_KEYS = ['host', 'shard', 'ips', 'public_ips', 'overlays'];
const SERVICE_KEYS = ['name', 'instances', 'master', 'master_election', 'scheduling_groups', 'num_instances', 'schedule_with', 'ports', 'udp_ports', 'dns_max_answers', 'credentials', 'gateway_endpoints'];
const CREDENTIAL_KEYS = ['name', 'enable_client', 'enable_server', 'extra_san', 'lifetime_ms', 'services', 'hosts'];
const ENDPOINT_KEYS = ['name', 'hostnames', 'port', 'mode', 'proxy_protocol', 'balance', 'max_connections', 'health', 'outlier'];
const HEALTH_KEYS = ['enabled', 'path', 'interval_ms', 'timeout_ms', 'rise', 'fall'];
const OUTLIER_KEYS = ['enabled', 'consecutive_errors', 'ejection_ms'];

/** Thrown to stop early once enough problems are collected. */
class Full extends Error {}

type Obj = Record<string, unknown>;

class Problems {
  readonly list: TopologyProblem[] = [];
  truncated = false;
  /** Parsed addresses by text: instances repeat their hosts' addresses, so most are seen many times. */
  readonly ips = new Map<string, IpAddress | undefined>();

  ip(text: string): IpAddress | undefined {
    if (this.ips.has(text)) return this.ips.get(text);
    const ip = parseIp(text);
    this.ips.set(text, ip);
    return ip;
  }

  add(code: TopologyProblem['code'], path: Path, message: string): void {
    if (this.list.length >= MAX_PROBLEMS) {
      this.truncated = true;
      throw new Full();
    }
    this.list.push({ code, path: text(path), message });
  }

  format(path: Path, message: string): void {
    this.add('TOPOLOGY_ERR_FORMAT', path, message);
  }

  inconsistent(path: Path, message: string): void {
    this.add('TOPOLOGY_ERR_INCONSISTENT', path, message);
  }
}

/** Every problem of `value` as a Topology (up to MAX_PROBLEMS); none means it can be trusted. */
export function validateTopology(value: unknown): { problems: readonly TopologyProblem[]; truncated: boolean } {
  const problems = new Problems();
  try {
    if (checkShape(value, problems)) checkReferences(value as Topology, problems);
  } catch (err) {
    if (!(err instanceof Full)) throw err;
  }
  return { problems: problems.list, truncated: problems.truncated };
}

// ---------------------------------------------------------------------------
// Shape

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * A JSON path, built only when a problem is reported: the checks walk every
 * field of a 10,000-host topology, and almost always find nothing.
 */
type Path = string | (() => string);

function text(path: Path): string {
  return typeof path === 'string' ? path : path();
}

function join(path: Path, key: string | number): Path {
  return () => {
    const base = text(path);
    if (typeof key === 'number') return `${base}[${key}]`;
    const safe = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
    return base === '' ? safe : `${base}.${safe}`;
  };
}

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks `value` is an object with exactly `keys` (missing and unknown keys reported). */
function object(value: unknown, path: Path, keys: readonly string[], p: Problems, optional: readonly string[] = []): value is Obj {
  if (!isObject(value)) {
    p.format(text(path) || '(top level)', `expected an object, found ${show(value)}`);
    return false;
  }
  const before = p.list.length;
  for (const key of keys) if (!(key in value) && !optional.includes(key)) p.format(join(path, key), 'missing');
  for (const key in value) if (!keys.includes(key)) p.format(join(path, key), 'not a field of the topology format');
  return p.list.length === before;
}

function string(value: unknown, path: Path, p: Problems, pattern?: RegExp, what = 'a string'): value is string {
  if (typeof value === 'string' && (pattern === undefined || pattern.test(value))) return true;
  p.format(path, `expected ${what}, found ${show(value)}`);
  return false;
}

function integer(value: unknown, path: Path, p: Problems, min: number, max: number): value is number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return true;
  p.format(path, `expected an integer ${min}..${max}, found ${show(value)}`);
  return false;
}

function positive(value: unknown, path: Path, p: Problems): value is number {
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return true;
  p.format(path, `expected a positive number, found ${show(value)}`);
  return false;
}

function boolean(value: unknown, path: Path, p: Problems): value is boolean {
  if (typeof value === 'boolean') return true;
  p.format(path, `expected true or false, found ${show(value)}`);
  return false;
}

function oneOf(value: unknown, path: Path, p: Problems, allowed: readonly string[]): boolean {
  if (typeof value === 'string' && allowed.includes(value)) return true;
  p.format(path, `expected one of ${allowed.join(', ')}, found ${show(value)}`);
  return false;
}

/** Optional value: null, or what `check` accepts. */
function nullable(value: unknown, check: () => boolean): boolean {
  return value === null || check();
}

/** An array whose items pass `item`; `sorted` also demands ascending, unique items (by `key`). */
/**
 * A check of a plain value (string, number) that returns what is wrong, or
 * null: lists and records of such values build an item's path only for a
 * problem, which keeps reading a large topology cheap.
 */
interface Leaf {
  readonly leaf: (v: unknown) => string | null;
}
type Item = ((v: unknown, at: Path) => boolean) | Leaf;

function checkItem(item: Item, v: unknown, path: Path, key: string | number, p: Problems): boolean {
  if (typeof item === 'function') return item(v, join(path, key));
  const problem = item.leaf(v);
  if (problem === null) return true;
  p.format(join(path, key), problem);
  return false;
}

const nameLeaf = (pattern: RegExp, what: string): Leaf => ({ leaf: (v) => (typeof v === 'string' && pattern.test(v) ? null : `expected ${what}, found ${show(v)}`) });
const HOST_NAMES = nameLeaf(NAME, 'a host name');
const SERVICE_NAMES = nameLeaf(NAME, 'a service name');
const CREDENTIAL_NAMES = nameLeaf(NAME, 'a credential name');
const HOSTNAMES = nameLeaf(HOSTNAME, 'a lowercase DNS name (optionally *.name)');
const STRINGS: Leaf = { leaf: (v) => (typeof v === 'string' ? null : `expected a string, found ${show(v)}`) };
const PORTS: Leaf = { leaf: (v) => (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535 ? null : `expected an integer 1..65535, found ${show(v)}`) };
const ADDRESSES: Leaf = { leaf: addressProblem };
const SANS: Leaf = {
  leaf: (v) => {
    if (typeof v === 'string' && parseIp(v) !== undefined) return addressProblem(v);
    return typeof v === 'string' && HOSTNAME.test(v) ? null : `expected a lowercase DNS name (optionally *.name) or an IP address, found ${show(v)}`;
  },
};

function array(value: unknown, path: Path, p: Problems, item: Item, order: 'sorted' | 'unique' | 'any', key: (v: unknown) => string = (v) => v as string): value is unknown[] {
  if (!Array.isArray(value)) {
    p.format(path, `expected a list, found ${show(value)}`);
    return false;
  }
  let ok = true;
  let previous: string | undefined;
  const seen = order === 'unique' ? new Set<string>() : undefined;
  for (let i = 0; i < value.length; i++) {
    if (!checkItem(item, value[i], path, i, p)) {
      ok = false;
      continue;
    }
    if (order === 'any') continue;
    const k = key(value[i]);
    if (seen !== undefined) {
      if (seen.has(k)) {
        p.format(join(path, i), `${show(k)} is listed twice`);
        ok = false;
      }
      seen.add(k);
    } else if (previous !== undefined && !(previous < k)) {
      p.format(join(path, i), previous === k ? `${show(k)} is listed twice` : `not sorted: ${show(k)} comes after ${show(previous)}`);
      ok = false;
    }
    previous = k;
  }
  return ok;
}

/** A record keyed by name whose values have `name` equal to their key, in ascending key order. */
function record(value: unknown, path: Path, p: Problems, keyPattern: RegExp, item: Item, sortedKeys: boolean): value is Obj {
  if (!isObject(value)) {
    p.format(path, `expected an object, found ${show(value)}`);
    return false;
  }
  let ok = true;
  let previous: string | undefined;
  for (const key in value) {
    const entry = value[key];
    if (!keyPattern.test(key)) {
      p.format(join(path, key), `${show(key)} is not a valid name`);
      ok = false;
      continue;
    }
    // JSON objects keep integer-like keys first, in numeric order, whatever the writer did.
    if (!INDEX_KEY.test(key)) {
      if (sortedKeys && previous !== undefined && !(previous < key)) {
        p.format(join(path, key), `not sorted: comes after ${show(previous)}`);
        ok = false;
      }
      previous = key;
    }
    if (!checkItem(item, entry, path, key, p)) ok = false;
    else if (typeof item === 'function' && (entry as { name?: unknown }).name !== key) {
      p.format(join(join(path, key), 'name'), `${show((entry as { name: unknown }).name)} differs from its key ${show(key)}`);
      ok = false;
    }
  }
  return ok;
}

/** Canonical address text (dotted quad, RFC 5952), the form every consumer compares. */
/** Canonical dotted quad (no leading zeros): most addresses, checked without parsing. */
const IPV4_CANONICAL = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

const IPV6_GROUP = /^(?:0|[1-9a-f][0-9a-f]{0,3})$/;

/**
 * RFC 5952 text without parsing to a number, for the common forms: lowercase,
 * no leading zeros, `::` only for a run of two or more zero groups, taking
 * every zero group next to it, and no other such run (so it is the longest). Anything else (embedded IPv4,
 * odd forms) is left to parseIp.
 */
function isCanonicalIpv6(text: string): boolean {
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const left = halves[0] === '' ? [] : (halves[0] as string).split(':');
  const right = halves.length === 1 || halves[1] === '' ? [] : (halves[1] as string).split(':');
  const count = left.length + right.length;
  if (halves.length === 1 ? count !== 8 : count > 6) return false;
  // A zero group next to `::` belongs in it.
  if (halves.length === 2 && (left[left.length - 1] === '0' || right[0] === '0')) return false;
  for (const groups of [left, right]) {
    for (let i = 0; i < groups.length; i++) {
      if (!IPV6_GROUP.test(groups[i] as string)) return false;
      if (i > 0 && groups[i] === '0' && groups[i - 1] === '0') return false;
    }
  }
  return true;
}

/** What is wrong with `value` as canonical address text, or null. */
function addressProblem(value: unknown): string | null {
  if (typeof value === 'string') {
    if (IPV4_CANONICAL.test(value) || (value.includes(':') && isCanonicalIpv6(value))) return null;
    const ip = parseIp(value);
    if (ip !== undefined) return ip.text === value ? null : `address ${show(value)} is not in canonical form (expected ${show(ip.text)})`;
  }
  return `expected an IP address, found ${show(value)}`;
}

function addresses(value: Obj, path: Path, p: Problems): boolean {
  const { ips, public_ips: publicIps } = value;
  const ipsOk = array(ips, join(path, 'ips'), p, ADDRESSES, 'unique');
  const publicOk = array(publicIps, join(path, 'public_ips'), p, ADDRESSES, 'unique');
  // Config fills one list from the other: a host always has an address to be reached at.
  if (ipsOk && ips.length === 0) p.format(join(path, 'ips'), 'empty (a host has at least one address)');
  if (publicOk && publicIps.length === 0) p.format(join(path, 'public_ips'), 'empty (peers need an address to reach the host at)');
  const overlays = record(value.overlays, join(path, 'overlays'), p, OVERLAY_NAME, ADDRESSES, true);
  return ipsOk && publicOk && overlays;
}

function checkShape(value: unknown, p: Problems): boolean {
  if (!object(value, '', TOP_KEYS, p, ['allow_no_services', 'pki'])) return false;
  let ok = integer(value.format_version, 'format_version', p, TOPOLOGY_FORMAT_VERSION, TOPOLOGY_FORMAT_VERSION);
  ok = string(value.domain, 'domain', p, DOMAIN, 'a lowercase DNS domain') && ok;
  if ('allow_no_services' in value && value.allow_no_services !== true) {
    p.format('allow_no_services', `expected true (or no key at all), found ${show(value.allow_no_services)}`);
    ok = false;
  }
  // Optional (topologies of inputs without pki_policy have none), complete when present.
  if ('pki' in value) ok = pkiShape(value.pki, p) && ok;
  ok = array(value.overlays, 'overlays', p, (v, at) => overlayShape(v, at, p), 'sorted', (v) => (v as TopologyOverlay).name) && ok;
  ok = record(value.hosts, 'hosts', p, NAME, (v, at) => hostShape(v, at, p), true) && ok;
  ok = record(value.services, 'services', p, NAME, (v, at) => serviceShape(v, at, p), true) && ok;
  ok = record(value.credentials, 'credentials', p, NAME, (v, at) => credentialShape(v, at, p), true) && ok;
  return ok;
}

function pkiShape(value: unknown, p: Problems): boolean {
  if (!object(value, 'pki', PKI_KEYS, p)) return false;
  let ok = true;
  for (const key of PKI_KEYS) ok = integer(value[key], join('pki', key), p, PKI_POLICY_BOUNDS[key].min, PKI_POLICY_BOUNDS[key].max) && ok;
  return ok;
}

function overlayShape(value: unknown, path: Path, p: Problems): boolean {
  if (!object(value, path, OVERLAY_KEYS, p)) return false;
  const at = (key: string): Path => join(path, key);
  let ok = string(value.name, at('name'), p, OVERLAY_NAME, 'an overlay name (a-z, 0-9, _; at most 15)');
  if (typeof value.network === 'string' && parseNetwork(value.network)?.text === value.network) {
    // canonical CIDR
  } else {
    const network = typeof value.network === 'string' ? parseNetwork(value.network) : undefined;
    p.format(at('network'), network === undefined ? `expected a CIDR network, found ${show(value.network)}` : `network ${show(value.network)} is not in canonical form (expected ${show(network.text)})`);
    ok = false;
  }
  ok = integer(value.port, at('port'), p, 1, 65535) && ok;
  ok = oneOf(value.driver, at('driver'), p, OVERLAY_DRIVERS) && ok;
  ok = nullable(value.mtu, () => integer(value.mtu, at('mtu'), p, 576, 65535)) && ok;
  if (value.driver === 'tinc') {
    ok = oneOf(value.cipher, at('cipher'), p, TINC_CIPHERS) && ok;
    ok = oneOf(value.digest, at('digest'), p, TINC_DIGESTS) && ok;
    ok = integer(value.compression, at('compression'), p, 0, 11) && ok;
    if (value.persistent_keepalive !== null) {
      p.format(at('persistent_keepalive'), `expected null (a tinc overlay), found ${show(value.persistent_keepalive)}`);
      ok = false;
    }
  } else if (value.driver === 'wireguard') {
    for (const key of ['cipher', 'digest', 'compression']) {
      if (value[key] !== null) {
        p.format(at(key), `expected null (a wireguard overlay), found ${show(value[key])}`);
        ok = false;
      }
    }
    ok = nullable(value.persistent_keepalive, () => integer(value.persistent_keepalive, at('persistent_keepalive'), p, 1, 65535)) && ok;
  }
  return array(value.hosts, at('hosts'), p, HOST_NAMES, 'sorted') && ok;
}

function hostShape(value: unknown, path: Path, p: Problems): boolean {
  if (!object(value, path, HOST_KEYS, p)) return false;
  const at = (key: string): Path => join(path, key);
  const names = (key: string, leaf: Leaf): boolean => array(value[key], at(key), p, leaf, 'sorted');
  let ok = string(value.name, at('name'), p, NAME, 'a host name');
  ok = string(value.fqdn, at('fqdn'), p) && ok;
  ok = addresses(value, path, p) && ok;
  ok = nullable(value.shard, () => string(value.shard, at('shard'), p, NAME, 'a shard name')) && ok;
  ok = array(value.groups, at('groups'), p, STRINGS, 'sorted') && ok;
  ok = names('services', SERVICE_NAMES) && ok;
  ok = names('masters', SERVICE_NAMES) && ok;
  return names('credentials', CREDENTIAL_NAMES) && ok;
}

function serviceShape(value: unknown, path: Path, p: Problems): boolean {
  if (!object(value, path, SERVICE_KEYS, p, ['udp_ports'])) return false;
  const at = (key: string): Path => join(path, key);
  let ok = string(value.name, at('name'), p, NAME, 'a service name');
  ok = array(value.instances, at('instances'), p, (v, a) => instanceShape(v, a, p), 'sorted', (v) => (v as { host: string }).host) && ok;
  ok = nullable(value.master, () => string(value.master, at('master'), p, NAME, 'a host name')) && ok;
  ok = boolean(value.master_election, at('master_election'), p) && ok;
  ok = array(value.scheduling_groups, at('scheduling_groups'), p, STRINGS, 'unique') && ok;
  if (value.num_instances !== 'all') ok = integer(value.num_instances, at('num_instances'), p, 1, Number.MAX_SAFE_INTEGER) && ok;
  ok = nullable(value.schedule_with, () => string(value.schedule_with, at('schedule_with'), p, NAME, 'a service name')) && ok;
  ok = array(value.ports, at('ports'), p, PORTS, 'unique', String) && ok;
  if (value.udp_ports !== undefined) ok = udpPorts(value.udp_ports, value.ports, at('udp_ports'), p) && ok;
  ok = nullable(value.dns_max_answers, () => integer(value.dns_max_answers, at('dns_max_answers'), p, 1, Number.MAX_SAFE_INTEGER)) && ok;
  ok = array(value.credentials, at('credentials'), p, CREDENTIAL_NAMES, 'unique') && ok;
  return array(value.gateway_endpoints, at('gateway_endpoints'), p, (v, a) => endpointShape(v, a, p), 'unique', (v) => (v as { name: string }).name) && ok;
}

/** udp_ports: a non-empty subset of ports (absent rather than empty, so old topologies read the same). */
function udpPorts(value: unknown, ports: unknown, path: Path, p: Problems): boolean {
  if (!array(value, path, p, PORTS, 'unique', String)) return false;
  if (value.length === 0) {
    p.format(path, 'expected a non-empty list (leave udp_ports out when no port is UDP)');
    return false;
  }
  let ok = true;
  value.forEach((port, i) => {
    if (Array.isArray(ports) && !ports.includes(port)) {
      p.format(join(path, i), `${show(port)} is not one of the service's ports`);
      ok = false;
    }
  });
  return ok;
}

function instanceShape(value: unknown, path: Path, p: Problems): boolean {
  if (!object(value, path, INSTANCE_KEYS, p)) return false;
  let ok = string(value.host, join(path, 'host'), p, NAME, 'a host name');
  ok = nullable(value.shard, () => string(value.shard, join(path, 'shard'), p, NAME, 'a shard name')) && ok;
  // ips, public_ips and overlays are compared with the host's own (checked) ones in the
  // cross-references: checking each of the many instances' copies again would double the work.
  return ok;
}

function endpointShape(value: unknown, path: Path, p: Problems): boolean {
  if (!object(value, path, ENDPOINT_KEYS, p)) return false;
  const at = (key: string): Path => join(path, key);
  let ok = string(value.name, at('name'), p, NAME, 'an endpoint name');
  ok = array(value.hostnames, at('hostnames'), p, HOSTNAMES, 'unique') && ok;
  ok = integer(value.port, at('port'), p, 1, 65535) && ok;
  ok = oneOf(value.mode, at('mode'), p, GATEWAY_MODES) && ok;
  // Only a tcp endpoint routes by port alone; every other mode routes by name.
  if (Array.isArray(value.hostnames) && value.hostnames.length === 0 && value.mode !== 'tcp') {
    p.format(at('hostnames'), `empty, but a ${show(value.mode)} endpoint routes by hostname (only mode tcp routes by port alone)`);
    ok = false;
  }
  ok = oneOf(value.proxy_protocol, at('proxy_protocol'), p, PROXY_PROTOCOLS) && ok;
  ok = oneOf(value.balance, at('balance'), p, BALANCE_POLICIES) && ok;
  ok = nullable(value.max_connections, () => integer(value.max_connections, at('max_connections'), p, 1, 10_000_000)) && ok;
  const health = value.health;
  if (object(health, at('health'), HEALTH_KEYS, p)) {
    const h = (key: string): Path => join(at('health'), key);
    ok = boolean(health.enabled, h('enabled'), p) && ok;
    ok = string(health.path, h('path'), p, /^\//, 'a path starting with "/"') && ok;
    const interval = positive(health.interval_ms, h('interval_ms'), p);
    const timeout = positive(health.timeout_ms, h('timeout_ms'), p);
    if (interval && timeout && (health.timeout_ms as number) > (health.interval_ms as number)) {
      p.format(h('timeout_ms'), `${show(health.timeout_ms)} is longer than interval_ms ${show(health.interval_ms)}`);
      ok = false;
    }
    ok = interval && timeout && integer(health.rise, h('rise'), p, 1, 100) && integer(health.fall, h('fall'), p, 1, 100) && ok;
  } else ok = false;
  const outlier = value.outlier;
  if (object(outlier, at('outlier'), OUTLIER_KEYS, p)) {
    const o = (key: string): Path => join(at('outlier'), key);
    ok = boolean(outlier.enabled, o('enabled'), p) && integer(outlier.consecutive_errors, o('consecutive_errors'), p, 1, 1000) && positive(outlier.ejection_ms, o('ejection_ms'), p) && ok;
  } else ok = false;
  return ok;
}

function credentialShape(value: unknown, path: Path, p: Problems): boolean {
  if (!object(value, path, CREDENTIAL_KEYS, p, ['lifetime_ms'])) return false;
  const at = (key: string): Path => join(path, key);
  let ok = string(value.name, at('name'), p, NAME, 'a credential name');
  ok = boolean(value.enable_client, at('enable_client'), p) && ok;
  ok = boolean(value.enable_server, at('enable_server'), p) && ok;
  ok = array(value.extra_san, at('extra_san'), p, SANS, 'any') && ok;
  // Optional (absent in topologies that do not set it): the PKI's bounds, 1 hour .. 397 days.
  if (value.lifetime_ms !== undefined) ok = integer(value.lifetime_ms, at('lifetime_ms'), p, 3_600_000, 397 * 86_400_000) && ok;
  ok = array(value.services, at('services'), p, SERVICE_NAMES, 'sorted') && ok;
  return array(value.hosts, at('hosts'), p, HOST_NAMES, 'sorted') && ok;
}

// ---------------------------------------------------------------------------
// Cross-references (the shape is known to be right)

function checkReferences(topology: Topology, p: Problems): void {
  const { hosts, services, credentials } = topology;
  const networks = checkOverlays(topology, p);
  if (topology.pki !== undefined && topology.pki.crl_refresh_ms > maxCrlRefreshMs(topology.pki.crl_lifetime_ms)) {
    const { crl_refresh_ms: refresh, crl_lifetime_ms: lifetime } = topology.pki;
    p.inconsistent('pki.crl_refresh_ms', `${formatPolicyDuration(refresh)} is more than a sixth of pki.crl_lifetime_ms (${formatPolicyDuration(lifetime)}): a host that misses two fetches would hold an expired CRL`);
  }

  // Facts stated twice are derived once from the services, then compared.
  const servicesOf = new Map<string, string[]>();
  const mastersOf = new Map<string, string[]>();
  const credentialsOf = new Map<string, Set<string>>();
  const credentialServices = new Map<string, string[]>();
  for (const service of Object.values(services)) {
    const path = join('services', service.name);
    checkService(topology, service, path, p);
    for (const instance of service.instances) {
      if (!(instance.host in hosts)) continue;
      push(servicesOf, instance.host, service.name);
      const set = credentialsOf.get(instance.host) ?? new Set<string>();
      for (const credential of service.credentials) if (credential in credentials) set.add(credential);
      credentialsOf.set(instance.host, set);
    }
    if (service.master !== null) push(mastersOf, service.master, service.name);
    service.credentials.forEach((name, i) => {
      if (name in credentials) push(credentialServices, name, service.name);
      else p.inconsistent(join(join(path, 'credentials'), i), `${show(name)} is not a credential`);
    });
  }

  const owners = new Map<string, string>();
  for (const host of Object.values(hosts)) {
    const path = join('hosts', host.name);
    const fqdn = hostFqdn(topology, host.name);
    if (host.fqdn !== fqdn) p.inconsistent(join(path, 'fqdn'), `${show(host.fqdn)} is not ${show(fqdn)}`);
    // No two hosts share an address, public or overlay (config's rule): answers and SANs would be ambiguous.
    const own = (text: string, at: () => Path): void => {
      const other = owners.get(text);
      if (other === undefined) owners.set(text, host.name);
      else if (other !== host.name) p.inconsistent(at(), `address ${text} is also host ${other}'s`);
    };
    host.ips.forEach((text, i) => own(text, () => join(join(path, 'ips'), i)));
    host.public_ips.forEach((text, i) => own(text, () => join(join(path, 'public_ips'), i)));
    for (const overlay in host.overlays) {
      const text = host.overlays[overlay] as string;
      const network = networks.get(overlay);
      if (network === undefined) p.inconsistent(join(join(path, 'overlays'), overlay), `${show(overlay)} is not an overlay`);
      else if (!networkContains(network, p.ip(text)!)) p.inconsistent(join(join(path, 'overlays'), overlay), `address ${text} is outside the overlay's network ${network.text}`);
      own(text, () => join(join(path, 'overlays'), overlay));
    }
    sameList(host.services, servicesOf.get(host.name) ?? [], join(path, 'services'), 'the services with an instance on this host', p);
    sameList(host.masters, mastersOf.get(host.name) ?? [], join(path, 'masters'), 'the services whose master this host is', p);
    sameList(host.credentials, credentialsOf.get(host.name) ?? [], join(path, 'credentials'), "the credentials of this host's services", p);
  }

  for (const credential of Object.values(credentials)) {
    const path = join('credentials', credential.name);
    const owners = credentialServices.get(credential.name) ?? [];
    if (owners.length === 0) p.inconsistent(path, 'no service lists this credential');
    sameList(credential.services, owners, join(path, 'services'), 'the services that list this credential', p);
    const on = new Set<string>();
    for (const name of owners) for (const instance of services[name]?.instances ?? []) on.add(instance.host);
    sameList(credential.hosts, [...on], join(path, 'hosts'), 'the hosts running those services', p);
  }
}

function push(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

/** `listed` (sorted, unique by shape) must hold exactly the names in `derived`. */
function sameList(listed: readonly string[], derived: readonly string[] | ReadonlySet<string>, path: Path, what: string, p: Problems): void {
  // Fast path: derived in the same order (compile sorts both), no allocation.
  if (!(derived instanceof Set)) {
    const list = derived as readonly string[];
    if (listed.length === list.length && listed.every((name, i) => name === list[i])) return;
  }
  const want: ReadonlySet<string> = derived instanceof Set ? (derived as ReadonlySet<string>) : new Set(derived as readonly string[]);
  if (listed.length === want.size && listed.every((name) => want.has(name))) return;
  const have = new Set(listed);
  const extra = listed.filter((name) => !want.has(name));
  const missing = [...want].filter((name) => !have.has(name)).sort();
  const parts = [extra.length > 0 ? `lists ${extra.map(show).join(', ')}` : '', missing.length > 0 ? `lacks ${missing.map(show).join(', ')}` : ''].filter((s) => s !== '');
  p.inconsistent(path, `${parts.join(' and ')}: it must be ${what}`);
}

function checkOverlays(topology: Topology, p: Problems): Map<string, IpNetwork> {
  const networks = new Map<string, IpNetwork>();
  const members = new Map<string, Set<string>>();
  const ports = new Map<number, string>();
  topology.overlays.forEach((overlay, i) => {
    const path = join('overlays', i);
    networks.set(overlay.name, parseNetwork(overlay.network)!);
    const other = ports.get(overlay.port);
    if (other !== undefined) p.inconsistent(join(path, 'port'), `port ${overlay.port} is also overlay ${other}'s`);
    ports.set(overlay.port, overlay.name);
    const listed = new Set(overlay.hosts);
    overlay.hosts.forEach((name, j) => {
      const host = topology.hosts[name];
      if (host === undefined) p.inconsistent(join(join(path, 'hosts'), j), `${show(name)} is not a host`);
      else if (!(overlay.name in host.overlays)) p.inconsistent(join(join(path, 'hosts'), j), `host ${name} has no address on overlay ${overlay.name}`);
    });
    members.set(overlay.name, listed);
  });
  // One pass over the hosts, not one per overlay.
  for (const host of Object.values(topology.hosts)) {
    for (const name of Object.keys(host.overlays)) {
      if (members.get(name)?.has(host.name) === false) p.inconsistent(join(join('overlays', topology.overlays.findIndex((o) => o.name === name)), 'hosts'), `lacks ${show(host.name)}, which has an address on overlay ${name}`);
    }
  }
  return networks;
}

function checkService(topology: Topology, service: TopologyService, path: Path, p: Problems): void {
  const instanceHosts = new Set<string>();
  service.instances.forEach((instance, i) => {
    const at = join(join(path, 'instances'), i);
    instanceHosts.add(instance.host);
    const host = topology.hosts[instance.host];
    if (host === undefined) {
      p.inconsistent(join(at, 'host'), `${show(instance.host)} is not a host`);
      return;
    }
    // An instance repeats its host's addresses and shard: DNS answers from one, SANs from the other.
    if (instance.shard !== host.shard) p.inconsistent(join(at, 'shard'), `${show(instance.shard)} differs from host ${host.name}'s shard ${show(host.shard)}`);
    for (const key of ['ips', 'public_ips', 'overlays'] as const) {
      if (!sameJson(instance[key], host[key])) p.inconsistent(join(at, key), `${show(instance[key])} differs from host ${host.name}'s ${show(host[key])}`);
    }
  });
  if (service.master !== null) {
    if (!instanceHosts.has(service.master)) p.inconsistent(join(path, 'master'), `${show(service.master)} is not a host with an instance of the service`);
    if (!service.master_election) p.inconsistent(join(path, 'master'), 'a master without master_election');
  }
  if (service.schedule_with !== null && (service.schedule_with === service.name || !(service.schedule_with in topology.services))) {
    p.inconsistent(join(path, 'schedule_with'), `${show(service.schedule_with)} is not another service`);
  }
  // The agent registers its endpoints with a client certificate.
  if (service.gateway_endpoints.length > 0 && !service.credentials.some((name) => topology.credentials[name]?.enable_client === true)) {
    p.inconsistent(join(path, 'gateway_endpoints'), 'the service has gateway endpoints but no credential with enable_client: true for its agents to register with');
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => v === b[i]);
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
  }
  return false;
}
