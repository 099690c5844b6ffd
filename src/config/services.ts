/**
 * Reads services.yml: a map of service name -> spec, split over files with
 * `include:` (a path or a list of paths, relative to the including file; a
 * `*` in the file name matches several files, read in name order). Included
 * files are merged first, in the order listed, and the including file's own
 * entries go on top: maps merge key by key, lists and scalars are replaced.
 */
import { readdirSync } from 'node:fs';
import { basename, dirname, join, normalize, resolve } from 'node:path';
import type { Diagnostics, Loc } from './diagnostics.js';
import type { LMap, LNode } from './located.js';
import { deepMerge, describeNode, readYamlFile } from './located.js';
import {
  checkKeys,
  checkName,
  expectMap,
  joinPath,
  oneOrMany,
  readBool,
  readDuration,
  readEnum,
  readInt,
  readName,
  readString,
} from './schema.js';
import type { CredentialConfig, GatewayEndpointConfig, GatewayMode, HealthCheckConfig, OutlierConfig, ServiceConfig, ServicesConfig } from './types.js';
import { BALANCE_POLICIES, GATEWAY_MODES, PKI_POLICY_BOUNDS, PKI_POLICY_DEFAULTS, PROXY_PROTOCOLS, formatPolicyDuration, maxCrlRefreshMs, parsePolicyDuration } from '../topology/index.js';
import type { TopologyPkiPolicy } from '../topology/index.js';
import { parseIp } from '../lib/ip.js';

export const SERVICE_KEYS = [
  'enabled',
  'scheduling_group',
  'scheduling_groups',
  'num_instances',
  'master_election',
  'master_scheduling_group',
  'schedule_with',
  'ports',
  'dns_max_answers',
  'service_credentials',
  'gateway_endpoints',
] as const;
export const CREDENTIAL_KEYS = ['name', 'enable_client', 'enable_server', 'extra_san', 'lifetime'] as const;
/** `pki_policy:` (a reserved top-level key: the underscore keeps it from ever being a service name). */
export const PKI_POLICY_KEYS = ['leaf_lifetime', 'crl_lifetime', 'crl_refresh'] as const;
export const ENDPOINT_KEYS = ['name', 'hostnames', 'port', 'mode', 'proxy_protocol', 'health', 'balance', 'max_connections', 'outlier'] as const;
export const HEALTH_KEYS = ['enabled', 'path', 'interval', 'timeout', 'rise', 'fall'] as const;
export const OUTLIER_KEYS = ['enabled', 'consecutive_errors', 'ejection_time'] as const;
const DEFAULT_ENDPOINT_PORT: Record<Exclude<GatewayMode, 'tcp'>, number> = { tls: 443, http: 80, connect: 3128 };
const DEFAULT_HEALTH: HealthCheckConfig = { enabled: true, path: '/health', interval_ms: 5000, timeout_ms: 2000, rise: 2, fall: 3 };
const DEFAULT_OUTLIER: OutlierConfig = { enabled: true, consecutive_errors: 5, ejection_ms: 30_000 };
/** A host name in a route or SAN: DNS labels, optionally a leading `*.`. */
const HOSTNAME_PATTERN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Loads the file and its includes into one merged located tree; `read` is false when the main file could not be read as a map. */
function loadServicesTree(file: string, diags: Diagnostics): { tree: LMap; read: boolean; files: string[]; watch: ServicesConfig['watch'] } {
  const files: string[] = [];
  const watch = { files: [] as string[], directories: [] as string[] };
  const tree = loadWithIncludes(normalize(file), [], diags, files, watch, undefined);
  return { tree: tree ?? { kind: 'map', loc: { file, line: 1, col: 1 }, entries: new Map() }, read: tree !== undefined, files, watch };
}

interface WatchList {
  files: string[];
  directories: string[];
}

function loadWithIncludes(file: string, stack: string[], diags: Diagnostics, files: string[], watch: WatchList, from: Loc | undefined): LMap | undefined {
  if (!watch.files.includes(file)) watch.files.push(file);
  const root = readYamlFile(file, diags, from);
  if (root === undefined) return undefined;
  if (!files.includes(file)) files.push(file);
  const self = resolve(file);
  const map = expectMap(root, '', diags, true);
  if (map === undefined) return undefined;
  const own: LMap = { kind: 'map', loc: map.loc, entries: new Map(map.entries) };
  const includeEntry = own.entries.get('include');
  own.entries.delete('include');
  let merged: LNode | undefined;
  if (includeEntry !== undefined) {
    oneOrMany(includeEntry.value).forEach((node, index) => {
      const path = includeEntry.value.kind === 'seq' ? joinPath('include', index) : 'include';
      const relative = readString(node, path, diags);
      if (relative === undefined) return;
      for (const target of expandInclude(join(dirname(file), relative), node.loc, path, diags, watch)) {
        if (resolve(target) === self || stack.includes(resolve(target))) {
          const chain = [...stack, file, target].map((f) => basename(f)).join(' -> ');
          diags.error('CONFIG_ERR_INCLUDE_CYCLE', node.loc, path, `include cycle: ${chain}`, { expected: 'includes that do not lead back to an including file' });
          continue;
        }
        const included = loadWithIncludes(target, [...stack, self], diags, files, watch, node.loc);
        if (included !== undefined) merged = merged === undefined ? included : deepMerge(merged, included);
      }
    });
  }
  return (merged === undefined ? own : deepMerge(merged, own)) as LMap;
}

/** `dir/*.yml` style includes: a `*` in the last path segment matches files. */
function expandInclude(target: string, loc: Loc, path: string, diags: Diagnostics, watch: WatchList): string[] {
  const name = basename(target);
  if (!name.includes('*')) return [target];
  const dir = dirname(target);
  if (!watch.directories.includes(dir)) watch.directories.push(dir);
  const pattern = new RegExp(`^${name.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    diags.error('CONFIG_ERR_INCLUDE_NOT_FOUND', loc, path, `cannot read directory ${dir}`, { expected: 'an existing directory' });
    return [];
  }
  return entries.filter((entry) => pattern.test(entry)).sort().map((entry) => join(dir, entry));
}

export function readServices(file: string, diags: Diagnostics): ServicesConfig {
  const { tree, read, files, watch } = loadServicesTree(file, diags);
  const services = new Map<string, ServiceConfig>();
  let allowNoServices = false;
  let pkiPolicy: TopologyPkiPolicy | undefined;
  let declared = 0;
  let badNames = 0;
  for (const [name, entry] of tree.entries) {
    // `.name:` keys are not services: they hold YAML anchors to reuse (`<<: *defaults`).
    if (name.startsWith('.')) continue;
    if (name === 'allow_no_services') {
      allowNoServices = readBool(entry.value, name, diags) ?? false;
      continue;
    }
    if (name === 'pki_policy') {
      pkiPolicy = readPkiPolicy(entry.value, diags);
      continue;
    }
    declared++;
    // A bad name is reported, and the service is still read and cross-checked
    // under it, so its other errors come in the same run, not after the rename.
    if (!checkName(name, { loc: entry.keyLoc }, name, diags, 'service')) badNames++;
    const service = readService(name, entry.value, entry.keyLoc, diags);
    if (service !== undefined) services.set(name, service);
  }
  if (read && !allowNoServices && badNames === 0) checkSomethingServed(normalize(file), tree, declared, services, diags);
  return { file: normalize(file), files, watch, services, allowNoServices, pkiPolicy };
}

/**
 * An empty, all-comment or all-disabled services.yml compiles to a mesh
 * with no service: every service name turns NXDOMAIN fleet-wide. That is
 * far more often a truncated write or a failed copy than a wish, so it is
 * an error unless `allow_no_services: true` says it is intended.
 */
function checkSomethingServed(file: string, tree: LMap, declared: number, services: ReadonlyMap<string, ServiceConfig>, diags: Diagnostics): void {
  const expected = 'at least one enabled service, or "allow_no_services: true" at the top of services.yml if an empty mesh is intended';
  if (declared === 0) {
    diags.error('CONFIG_ERR_NO_SERVICES', { file, line: 1, col: 1 }, '', `${file} defines no service (it is empty, all comments, or only includes that matched nothing): nothing would be served`, { expected });
    return;
  }
  // Services that failed to read are reported already; only a complete set of disabled ones is this error.
  if (services.size < declared || [...services.values()].some((s) => s.enabled)) return;
  const first = [...tree.entries].find(([name]) => services.has(name));
  const loc = first?.[1].keyLoc ?? { file, line: 1, col: 1 };
  diags.error('CONFIG_ERR_NO_SERVICES', loc, '', `every service is disabled (enabled: false): nothing would be served`, { found: `${services.size} service(s), none enabled`, expected });
}

function readService(name: string, node: LNode, loc: Loc, diags: Diagnostics): ServiceConfig | undefined {
  const map = expectMap(node, name, diags, true);
  if (map === undefined) return undefined;
  checkKeys(map, SERVICE_KEYS, name, diags);
  const keyLocs = new Map<string, Loc>();
  const field = (key: string): LNode | undefined => {
    const entry = map.entries.get(key);
    if (entry !== undefined) keyLocs.set(key, entry.value.loc);
    return entry?.value;
  };
  const at = (key: string): string => joinPath(name, key);

  const enabledNode = field('enabled');
  const enabled = enabledNode === undefined ? true : (readBool(enabledNode, at('enabled'), diags) ?? true);

  const groupNode = field('scheduling_group');
  const groupsNode = field('scheduling_groups');
  const scheduleWithNode = field('schedule_with');
  const numNode = field('num_instances');
  if (groupNode !== undefined && groupsNode !== undefined) {
    diags.error('CONFIG_ERR_CONFLICTING_KEYS', groupsNode.loc, at('scheduling_groups'), 'give scheduling_group or scheduling_groups, not both', {
      expected: 'scheduling_group: NAME, or scheduling_groups: [NAME, ...]',
    });
  }
  if (scheduleWithNode !== undefined) {
    for (const [key, other] of [['scheduling_group', groupNode], ['scheduling_groups', groupsNode], ['num_instances', numNode]] as const) {
      if (other === undefined) continue;
      diags.error('CONFIG_ERR_CONFLICTING_KEYS', other.loc, at(key), `${key} cannot be combined with schedule_with`, {
        expected: 'schedule_with alone: the service runs exactly where its target runs',
      });
    }
  }
  const schedulingGroups: string[] = [];
  for (const [key, groupField] of [['scheduling_group', groupNode], ['scheduling_groups', groupsNode]] as const) {
    if (groupField === undefined) continue;
    const nodes = key === 'scheduling_group' ? [groupField] : groupField.kind === 'seq' ? groupField.items : [groupField];
    nodes.forEach((groupItem, index) => {
      const path = key === 'scheduling_groups' && groupField.kind === 'seq' ? joinPath(at(key), index) : at(key);
      const group = readString(groupItem, path, diags);
      if (group === undefined) return;
      keyLocs.set(`group:${group}`, groupItem.loc);
      if (!schedulingGroups.includes(group)) schedulingGroups.push(group);
    });
  }
  if (schedulingGroups.length === 0 && scheduleWithNode === undefined) {
    schedulingGroups.push('all');
    keyLocs.set('group:all', loc);
  }

  let numInstances: number | null = null;
  if (numNode !== undefined && !(numNode.kind === 'scalar' && numNode.value === 'all')) {
    if (numNode.kind === 'scalar' && typeof numNode.value === 'number') {
      numInstances = readInt(numNode, at('num_instances'), diags, 1, 1_000_000) ?? null;
    } else {
      diags.error('CONFIG_ERR_TYPE', numNode.loc, at('num_instances'), 'wrong type', { found: describeNode(numNode), expected: 'a positive integer or "all"' });
    }
  }

  const masterNode = field('master_election');
  const masterElection = masterNode === undefined ? false : (readBool(masterNode, at('master_election'), diags) ?? false);
  const masterGroupNode = field('master_scheduling_group');
  const masterSchedulingGroup = masterGroupNode === undefined ? null : (readString(masterGroupNode, at('master_scheduling_group'), diags) ?? null);
  if (masterGroupNode !== undefined && !masterElection) {
    diags.error('CONFIG_ERR_REQUIRES_KEY', masterGroupNode.loc, at('master_scheduling_group'), 'master_scheduling_group needs master_election: true', {
      expected: 'master_election: true beside it, or no master_scheduling_group',
    });
  }
  const scheduleWith = scheduleWithNode === undefined ? null : (readName(scheduleWithNode, at('schedule_with'), diags, 'service') ?? null);

  const portsNode = field('ports');
  const ports: number[] = [];
  const udpPorts: number[] = [];
  if (portsNode !== undefined) {
    oneOrMany(portsNode).forEach((portNode, index) => {
      const path = portsNode.kind === 'seq' ? joinPath(at('ports'), index) : at('ports');
      const entry = readPort(portNode, path, diags);
      if (entry === undefined) return;
      const { port, udp } = entry;
      if (ports.includes(port)) {
        diags.error('CONFIG_ERR_DUPLICATE_ENTRY', portNode.loc, path, `port ${port} is listed twice`, { expected: 'each port once' });
        return;
      }
      keyLocs.set(`ports:${port}`, portNode.loc);
      ports.push(port);
      if (udp) udpPorts.push(port);
    });
  }

  const maxAnswersNode = field('dns_max_answers');
  const dnsMaxAnswers = maxAnswersNode === undefined ? null : (readInt(maxAnswersNode, at('dns_max_answers'), diags, 1, 1000) ?? null);

  const credentialsNode = field('service_credentials');
  const credentials = credentialsNode === undefined ? [] : readCredentials(credentialsNode, at('service_credentials'), diags);
  const endpointsNode = field('gateway_endpoints');
  const gatewayEndpoints = endpointsNode === undefined ? [] : readEndpoints(endpointsNode, at('gateway_endpoints'), diags);
  if (endpointsNode?.kind === 'seq' && endpointsNode.items.length > 0 && !credentials.some((c) => c.enable_client)) {
    diags.error('CONFIG_ERR_REQUIRES_KEY', endpointsNode.loc, at('gateway_endpoints'), 'gateway endpoints need a client credential: the agent registers with it', {
      expected: 'an entry in service_credentials with enable_client: true',
    });
  }

  return {
    name,
    loc,
    enabled,
    schedulingGroups,
    numInstances,
    masterElection,
    masterSchedulingGroup,
    scheduleWith,
    ports,
    udpPorts,
    dnsMaxAnswers,
    credentials,
    gatewayEndpoints,
    keyLocs,
  };
}

/** A port: `5432` or `5432/tcp` (TCP), `53/udp` (UDP, which DNS SRV answers under `_svc._udp`). */
function readPort(node: LNode, path: string, diags: Diagnostics): { port: number; udp: boolean } | undefined {
  // A string without "/" ("80") stays a type error: a port is a number.
  if (node.kind === 'scalar' && typeof node.value === 'string' && node.value.includes('/')) {
    const match = /^(\d+)\/(tcp|udp)$/.exec(node.value);
    if (match === null) {
      diags.error('CONFIG_ERR_VALUE', node.loc, path, 'invalid port', { found: describeNode(node), expected: 'a port number from 1 to 65535, optionally with /tcp or /udp (e.g. 53/udp)' });
      return undefined;
    }
    const port = Number(match[1]);
    if (port < 1 || port > 65535) {
      diags.error('CONFIG_ERR_VALUE', node.loc, path, 'out of range', { found: node.value, expected: 'a port number from 1 to 65535' });
      return undefined;
    }
    return { port, udp: match[2] === 'udp' };
  }
  const port = readInt(node, path, diags, 1, 65535);
  return port === undefined ? undefined : { port, udp: false };
}

function listOfMaps(node: LNode, path: string, diags: Diagnostics): { map: LMap; path: string }[] {
  if (node.kind === 'scalar' && node.value === null) return [];
  if (node.kind !== 'seq') {
    diags.error('CONFIG_ERR_TYPE', node.loc, path, 'wrong type', { found: describeNode(node), expected: 'a list of maps' });
    return [];
  }
  const out: { map: LMap; path: string }[] = [];
  node.items.forEach((item, index) => {
    const itemPath = joinPath(path, index);
    const map = expectMap(item, itemPath, diags);
    if (map !== undefined) out.push({ map, path: itemPath });
  });
  return out;
}

function readCredentials(node: LNode, path: string, diags: Diagnostics): CredentialConfig[] {
  const credentials: CredentialConfig[] = [];
  for (const { map, path: itemPath } of listOfMaps(node, path, diags)) {
    checkKeys(map, CREDENTIAL_KEYS, itemPath, diags);
    const get = (key: string): LNode | undefined => map.entries.get(key)?.value;
    const nameNode = get('name');
    if (nameNode === undefined) {
      diags.error('CONFIG_ERR_MISSING_KEY', map.loc, itemPath, 'a credential needs a name', { expected: '{name: NAME, ...}' });
      continue;
    }
    const name = readName(nameNode, joinPath(itemPath, 'name'), diags, 'credential');
    const clientNode = get('enable_client');
    const serverNode = get('enable_server');
    const enableClient = clientNode === undefined ? true : readBool(clientNode, joinPath(itemPath, 'enable_client'), diags);
    const enableServer = serverNode === undefined ? true : readBool(serverNode, joinPath(itemPath, 'enable_server'), diags);
    const extraSan: string[] = [];
    const sanNode = get('extra_san');
    if (sanNode !== undefined) {
      oneOrMany(sanNode).forEach((sanItem, index) => {
        const sanPath = sanNode.kind === 'seq' ? joinPath(joinPath(itemPath, 'extra_san'), index) : joinPath(itemPath, 'extra_san');
        const san = readString(sanItem, sanPath, diags);
        if (san === undefined) return;
        const ip = parseIp(san);
        if (ip === undefined && !HOSTNAME_PATTERN.test(san)) {
          diags.error('CONFIG_ERR_VALUE', sanItem.loc, sanPath, 'invalid subject alternative name', {
            found: JSON.stringify(san),
            expected: 'a lowercase DNS name (optionally *.name) or an IP address',
          });
          return;
        }
        extraSan.push(ip?.text ?? san);
      });
    }
    const lifetimeNode = get('lifetime');
    const lifetimeMs = lifetimeNode === undefined ? undefined : readLifetime(lifetimeNode, joinPath(itemPath, 'lifetime'), diags, 'leaf_lifetime_ms', 'certificate lifetime');
    if (name === undefined || enableClient === undefined || enableServer === undefined) continue;
    if (credentials.some((c) => c.name === name)) {
      diags.error('CONFIG_ERR_DUPLICATE_ENTRY', nameNode.loc, joinPath(itemPath, 'name'), `credential "${name}" is listed twice in this service`, { expected: 'each credential once' });
      continue;
    }
    credentials.push({ name, enable_client: enableClient, enable_server: enableServer, extra_san: extraSan, ...(lifetimeMs === undefined ? {} : { lifetime_ms: lifetimeMs }), loc: map.loc });
  }
  return credentials;
}

/**
 * A lifetime written 24h, 30d, 90m or 45s, within the bounds of the policy
 * field it sets (a credential's `lifetime` has the leaf bounds).
 */
function readLifetime(node: LNode, path: string, diags: Diagnostics, field: keyof TopologyPkiPolicy, what: string): number | undefined {
  const { min, max } = PKI_POLICY_BOUNDS[field];
  const expected = `a duration such as 24h, 30d, 90m or 45s, from ${formatPolicyDuration(min)} to ${formatPolicyDuration(max)}`;
  const text = node.kind === 'scalar' && typeof node.value === 'string' ? node.value : undefined;
  const ms = text === undefined ? undefined : parsePolicyDuration(text);
  if (ms === undefined) {
    diags.error('CONFIG_ERR_VALUE', node.loc, path, `invalid ${what}`, { found: describeNode(node), expected });
    return undefined;
  }
  if (ms < min || ms > max) {
    diags.error('CONFIG_ERR_VALUE', node.loc, path, `${what} out of range`, { found: JSON.stringify(text), expected });
    return undefined;
  }
  return ms;
}

/**
 * `pki_policy:` -> the Topology's `pki`, complete: keys not given take the
 * defaults, so the Topology states the whole policy. The refresh is checked
 * against the lifetime in force (given or default): see pki-policy.ts.
 */
function readPkiPolicy(node: LNode, diags: Diagnostics): TopologyPkiPolicy | undefined {
  const map = expectMap(node, 'pki_policy', diags, true);
  if (map === undefined) return undefined;
  checkKeys(map, PKI_POLICY_KEYS, 'pki_policy', diags);
  const read = (key: (typeof PKI_POLICY_KEYS)[number], field: keyof TopologyPkiPolicy, what: string): number | undefined | null => {
    const value = map.entries.get(key)?.value;
    return value === undefined ? PKI_POLICY_DEFAULTS[field] : (readLifetime(value, joinPath('pki_policy', key), diags, field, what) ?? null);
  };
  const leaf = read('leaf_lifetime', 'leaf_lifetime_ms', 'leaf certificate lifetime');
  const crlLifetime = read('crl_lifetime', 'crl_lifetime_ms', 'CRL lifetime');
  const crlRefresh = read('crl_refresh', 'crl_refresh_ms', 'CRL refresh interval');
  if (leaf == null || crlLifetime == null || crlRefresh == null) return undefined;
  if (crlRefresh > maxCrlRefreshMs(crlLifetime)) {
    diags.error(
      'CONFIG_ERR_VALUE',
      map.entries.get('crl_refresh')?.value.loc ?? map.loc,
      'pki_policy.crl_refresh',
      `crl_refresh ${formatPolicyDuration(crlRefresh)} is more than a sixth of crl_lifetime ${formatPolicyDuration(crlLifetime)}${map.entries.has('crl_lifetime') ? '' : ' (the default)'}: hosts must be able to miss two CRL fetches and still hold a valid CRL`,
      { expected: `a crl_refresh of at most ${formatPolicyDuration(maxCrlRefreshMs(crlLifetime))}, or a longer crl_lifetime` },
    );
    return undefined;
  }
  return { leaf_lifetime_ms: leaf, crl_lifetime_ms: crlLifetime, crl_refresh_ms: crlRefresh };
}

function readEndpoints(node: LNode, path: string, diags: Diagnostics): GatewayEndpointConfig[] {
  const endpoints: GatewayEndpointConfig[] = [];
  for (const { map, path: itemPath } of listOfMaps(node, path, diags)) {
    checkKeys(map, ENDPOINT_KEYS, itemPath, diags);
    const get = (key: string): LNode | undefined => map.entries.get(key)?.value;
    const at = (key: string): string => joinPath(itemPath, key);
    const nameNode = get('name');
    const modeNode = get('mode');
    const isTcp = modeNode?.kind === 'scalar' && modeNode.value === 'tcp';
    // A tcp endpoint owns its whole port: it routes by port alone, so hostnames are optional.
    const noHostnames: LNode = { kind: 'seq', items: [], loc: map.loc };
    const hostnamesNode = get('hostnames') ?? (isTcp ? noHostnames : undefined);
    if (nameNode === undefined || hostnamesNode === undefined) {
      diags.error('CONFIG_ERR_MISSING_KEY', map.loc, itemPath, `a gateway endpoint needs ${nameNode === undefined ? '"name"' : '"hostnames"'}`, {
        expected: '{name, hostnames, port, mode, ...}',
      });
      continue;
    }
    const name = readName(nameNode, at('name'), diags, 'endpoint');
    const hostnames: string[] = [];
    oneOrMany(hostnamesNode).forEach((hostNode, index) => {
      const hostPath = hostnamesNode.kind === 'seq' ? joinPath(at('hostnames'), index) : at('hostnames');
      const hostname = readString(hostNode, hostPath, diags);
      if (hostname === undefined) return;
      if (!HOSTNAME_PATTERN.test(hostname)) {
        diags.error('CONFIG_ERR_VALUE', hostNode.loc, hostPath, 'invalid hostname', { found: JSON.stringify(hostname), expected: 'a lowercase DNS name, optionally *.name' });
        return;
      }
      if (hostnames.includes(hostname)) {
        diags.error('CONFIG_ERR_DUPLICATE_ENTRY', hostNode.loc, hostPath, `hostname ${hostname} is listed twice`, { expected: 'each hostname once' });
        return;
      }
      hostnames.push(hostname);
    });
    const mode = modeNode === undefined ? 'tls' : readEnum(modeNode, at('mode'), diags, GATEWAY_MODES);
    const portNode = get('port');
    if (portNode === undefined && mode === 'tcp') {
      diags.error('CONFIG_ERR_MISSING_KEY', map.loc, at('port'), 'a tcp endpoint needs a port (it has no standard one)', { expected: 'port: <the gateway port that carries this service alone>' });
      continue;
    }
    const port = portNode === undefined ? DEFAULT_ENDPOINT_PORT[mode === 'tcp' || mode === undefined ? 'tls' : mode] : readInt(portNode, at('port'), diags, 1, 65535);
    const proxyNode = get('proxy_protocol');
    const proxyProtocol = proxyNode === undefined ? 'none' : readEnum(proxyNode, at('proxy_protocol'), diags, PROXY_PROTOCOLS);
    const balanceNode = get('balance');
    // `source` (haproxy's name for it) is accepted for client_affinity.
    const balance = balanceNode === undefined ? 'least_load' : balanceNode.kind === 'scalar' && balanceNode.value === 'source' ? 'client_affinity' : readEnum(balanceNode, at('balance'), diags, BALANCE_POLICIES);
    const maxNode = get('max_connections');
    const maxConnections = maxNode === undefined || (maxNode.kind === 'scalar' && maxNode.value === null) ? null : readInt(maxNode, at('max_connections'), diags, 1, 10_000_000);
    const healthNode = get('health');
    const health = healthNode === undefined ? DEFAULT_HEALTH : readHealth(healthNode, at('health'), diags);
    const outlierNode = get('outlier');
    const outlier = outlierNode === undefined ? DEFAULT_OUTLIER : readOutlier(outlierNode, at('outlier'), diags);
    if (name === undefined || mode === undefined || port === undefined || proxyProtocol === undefined || balance === undefined) continue;
    if (hostnames.length === 0 && mode !== 'tcp') {
      if (hostnamesNode.kind === 'seq' && hostnamesNode.items.length === 0) {
        diags.error('CONFIG_ERR_VALUE', hostnamesNode.loc, at('hostnames'), 'an empty hostnames list routes nothing', { expected: 'at least one hostname (only mode: tcp routes by port alone)' });
      }
      continue;
    }
    if (maxConnections === undefined || health === undefined || outlier === undefined) continue;
    if (endpoints.some((e) => e.name === name)) {
      diags.error('CONFIG_ERR_DUPLICATE_ENTRY', nameNode.loc, at('name'), `endpoint "${name}" is defined twice in this service`, { expected: 'a distinct name per endpoint' });
      continue;
    }
    endpoints.push({ name, hostnames, port, mode, proxy_protocol: proxyProtocol, balance, max_connections: maxConnections, health, outlier, loc: map.loc, path: itemPath, ...(portNode === undefined ? {} : { portLoc: portNode.loc }) });
  }
  return endpoints;
}

/** `health: false` turns checks off; a map overrides the defaults. */
function readHealth(node: LNode, path: string, diags: Diagnostics): HealthCheckConfig | undefined {
  if (node.kind === 'scalar' && typeof node.value === 'boolean') return { ...DEFAULT_HEALTH, enabled: node.value };
  const map = expectMap(node, path, diags);
  if (map === undefined) return undefined;
  checkKeys(map, HEALTH_KEYS, path, diags);
  const get = (key: string): LNode | undefined => map.entries.get(key)?.value;
  const enabledNode = get('enabled');
  const pathNode = get('path');
  const intervalNode = get('interval');
  const timeoutNode = get('timeout');
  const riseNode = get('rise');
  const fallNode = get('fall');
  const enabled = enabledNode === undefined ? true : readBool(enabledNode, joinPath(path, 'enabled'), diags);
  let checkPath: string | undefined = DEFAULT_HEALTH.path;
  if (pathNode !== undefined) {
    checkPath = readString(pathNode, joinPath(path, 'path'), diags);
    if (checkPath !== undefined && !checkPath.startsWith('/')) {
      diags.error('CONFIG_ERR_VALUE', pathNode.loc, joinPath(path, 'path'), 'health check path must start with "/"', { found: JSON.stringify(checkPath), expected: 'a path such as /health' });
      checkPath = undefined;
    }
  }
  const intervalMs = intervalNode === undefined ? DEFAULT_HEALTH.interval_ms : readDuration(intervalNode, joinPath(path, 'interval'), diags);
  const timeoutMs = timeoutNode === undefined ? DEFAULT_HEALTH.timeout_ms : readDuration(timeoutNode, joinPath(path, 'timeout'), diags);
  const rise = riseNode === undefined ? DEFAULT_HEALTH.rise : readInt(riseNode, joinPath(path, 'rise'), diags, 1, 100);
  const fall = fallNode === undefined ? DEFAULT_HEALTH.fall : readInt(fallNode, joinPath(path, 'fall'), diags, 1, 100);
  if (enabled === undefined || checkPath === undefined || intervalMs === undefined || timeoutMs === undefined || rise === undefined || fall === undefined) return undefined;
  if (timeoutMs > intervalMs) {
    diags.error('CONFIG_ERR_VALUE', (timeoutNode ?? map).loc, joinPath(path, 'timeout'), 'health check timeout is longer than its interval', {
      expected: `a timeout of at most the interval (${intervalMs} ms)`,
    });
    return undefined;
  }
  return { enabled, path: checkPath, interval_ms: intervalMs, timeout_ms: timeoutMs, rise, fall };
}

/** `outlier: false` turns ejection off; a map overrides the defaults. */
function readOutlier(node: LNode, path: string, diags: Diagnostics): OutlierConfig | undefined {
  if (node.kind === 'scalar' && typeof node.value === 'boolean') return { ...DEFAULT_OUTLIER, enabled: node.value };
  const map = expectMap(node, path, diags);
  if (map === undefined) return undefined;
  checkKeys(map, OUTLIER_KEYS, path, diags);
  const get = (key: string): LNode | undefined => map.entries.get(key)?.value;
  const enabledNode = get('enabled');
  const errorsNode = get('consecutive_errors');
  const ejectionNode = get('ejection_time');
  const enabled = enabledNode === undefined ? true : readBool(enabledNode, joinPath(path, 'enabled'), diags);
  const consecutiveErrors = errorsNode === undefined ? DEFAULT_OUTLIER.consecutive_errors : readInt(errorsNode, joinPath(path, 'consecutive_errors'), diags, 1, 1000);
  const ejectionMs = ejectionNode === undefined ? DEFAULT_OUTLIER.ejection_ms : readDuration(ejectionNode, joinPath(path, 'ejection_time'), diags);
  if (enabled === undefined || consecutiveErrors === undefined || ejectionMs === undefined) return undefined;
  return { enabled, consecutive_errors: consecutiveErrors, ejection_ms: ejectionMs };
}
