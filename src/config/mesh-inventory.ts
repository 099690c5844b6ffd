/**
 * Reads the mesh out of an Ansible inventory: `domain` and `net_overlays`
 * from `all.vars`, and per host its addresses (`ip`, `ip6`, `ips`,
 * `public_ip(s)`), overlay addresses (`ip_<overlay>`) and `shard_id`.
 * Every other variable belongs to Ansible and is left alone.
 */
import type { Diagnostics, Loc } from './diagnostics.js';
import type { Inventory } from './inventory.js';
import { groupVars, hostGroups, hostVars, hostVarsResolver } from './inventory.js';
import type { LEntry, LNode } from './located.js';
import { describeNode } from './located.js';
import { checkKeys, checkName, expectMap, joinPath, oneOrMany, readEnum, readInt, readString } from './schema.js';
import type { HostConfig, MeshInventory, OverlayConfig, OverlayDriver } from './types.js';
import { OVERLAY_DRIVERS, TINC_CIPHERS, TINC_DIGESTS } from '../topology/index.js';
import { networkContains, parseIp, parseNetwork } from '../lib/ip.js';

const DEFAULT_DOMAIN = 'mesh.internal';
export const OVERLAY_KEYS = ['name', 'network', 'port', 'driver', 'mtu', 'cipher', 'digest', 'compression', 'persistent_keepalive'] as const;
const DEFAULT_OVERLAY_PORT: Record<OverlayDriver, number> = { tinc: 655, wireguard: 51820 };
/**
 * tinc 1.0's UDP packet protection. The defaults are tinc 1.0.36's own, written
 * out so every host file says what is in force. Only CBC ciphers: the tinc
 * manual advises them, and its legacy protocol is built around them.
 */
const TINC_DEFAULTS = { cipher: 'aes-256-cbc', digest: 'sha256', compression: 0 } as const;
/** Keys that only one driver understands. */
const DRIVER_ONLY_KEYS: Record<string, OverlayDriver> = { cipher: 'tinc', digest: 'tinc', compression: 'tinc', persistent_keepalive: 'wireguard' };
/** Overlay names become Ansible variable suffixes and interface names (at most 15 bytes). */
const OVERLAY_NAME = /^[a-z][a-z0-9_]{0,14}$/;
const DOMAIN_PATTERN = /^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function readMeshInventory(inventory: Inventory, diags: Diagnostics): MeshInventory {
  const all = inventory.groups.get('all');
  const allVars = all === undefined ? new Map<string, LEntry>() : groupVars(all);
  const domain = readDomain(allVars.get('domain'), diags);
  const overlays = readOverlays(allVars.get('net_overlays'), diags);
  const overlayByName = new Map(overlays.map((o) => [o.name, o]));

  const hosts = new Map<string, HostConfig>();
  const varsOf = hostVarsResolver(inventory);
  for (const name of [...inventory.hosts.keys()].sort()) {
    const host = readHost(inventory, name, varsOf(name), overlayByName, diags);
    if (host !== undefined) hosts.set(name, host);
  }
  checkUniqueAddresses(hosts, inventory, diags);
  return { file: inventory.file, domain, overlays, hosts, inventory };
}

function readDomain(entry: LEntry | undefined, diags: Diagnostics): string {
  if (entry === undefined) return DEFAULT_DOMAIN;
  const value = readString(entry.value, 'all.vars.domain', diags);
  if (value === undefined) return DEFAULT_DOMAIN;
  const domain = value.replace(/\.$/, '');
  if (!DOMAIN_PATTERN.test(domain)) {
    diags.error('CONFIG_ERR_VALUE', entry.value.loc, 'all.vars.domain', 'invalid domain', {
      found: JSON.stringify(value),
      expected: 'a lowercase DNS name such as mesh.internal',
    });
    return DEFAULT_DOMAIN;
  }
  return domain;
}

function readOverlays(entry: LEntry | undefined, diags: Diagnostics): OverlayConfig[] {
  if (entry === undefined || (entry.value.kind === 'scalar' && entry.value.value === null)) return [];
  const path = 'all.vars.net_overlays';
  if (entry.value.kind !== 'seq') {
    diags.error('CONFIG_ERR_TYPE', entry.value.loc, path, 'wrong type', { found: describeNode(entry.value), expected: 'a list of {name, network, port, driver}' });
    return [];
  }
  const overlays: OverlayConfig[] = [];
  const byName = new Map<string, OverlayConfig>();
  const byPort = new Map<number, OverlayConfig>();
  entry.value.items.forEach((item, index) => {
    const itemPath = joinPath(path, index);
    const map = expectMap(item, itemPath, diags);
    if (map === undefined) return;
    checkKeys(map, OVERLAY_KEYS, itemPath, diags);
    const field = (key: string): LNode | undefined => map.entries.get(key)?.value;
    const nameNode = field('name');
    const networkNode = field('network');
    if (nameNode === undefined || networkNode === undefined) {
      diags.error('CONFIG_ERR_MISSING_KEY', map.loc, itemPath, `an overlay needs ${nameNode === undefined ? '"name"' : '"network"'}`, {
        expected: '{name, network} and optionally port, driver, mtu',
      });
      return;
    }
    const name = readString(nameNode, joinPath(itemPath, 'name'), diags);
    if (name !== undefined && !OVERLAY_NAME.test(name)) {
      diags.error('CONFIG_ERR_INVALID_NAME', nameNode.loc, joinPath(itemPath, 'name'), 'invalid overlay name', {
        found: JSON.stringify(name),
        expected: 'a lowercase letter, then letters, digits or "_", at most 15 characters (it names the interface and the ip_<overlay> variable)',
      });
      return;
    }
    const networkText = readString(networkNode, joinPath(itemPath, 'network'), diags);
    const network = networkText === undefined ? undefined : parseNetwork(networkText);
    if (networkText !== undefined && network === undefined) {
      diags.error('CONFIG_ERR_INVALID_NETWORK', networkNode.loc, joinPath(itemPath, 'network'), 'invalid network', {
        found: JSON.stringify(networkText),
        expected: 'a CIDR network such as 100.64.0.0/24',
      });
    }
    const driverNode = field('driver');
    const driver: OverlayDriver | undefined =
      driverNode === undefined ? 'tinc' : readEnum(driverNode, joinPath(itemPath, 'driver'), diags, OVERLAY_DRIVERS);
    const portNode = field('port');
    const port = portNode === undefined ? DEFAULT_OVERLAY_PORT[driver ?? 'tinc'] : readInt(portNode, joinPath(itemPath, 'port'), diags, 1, 65535);
    const mtuNode = field('mtu');
    const mtu = mtuNode === undefined ? null : readInt(mtuNode, joinPath(itemPath, 'mtu'), diags, 576, 65535);
    const options = driver === undefined ? undefined : readDriverOptions(driver, field, itemPath, map.entries, diags);
    if (name === undefined || network === undefined || driver === undefined || port === undefined || mtu === undefined || options === undefined) return;

    const overlay: OverlayConfig = { name, network: network.text, port, driver, mtu, ...options, loc: map.loc };
    const sameName = byName.get(name);
    if (sameName !== undefined) {
      diags.error('CONFIG_ERR_DUPLICATE_OVERLAY', nameNode.loc, joinPath(itemPath, 'name'), `overlay "${name}" is defined twice`, {
        expected: `a name not used by the overlay at line ${sameName.loc.line}`,
      });
      return;
    }
    const samePort = byPort.get(port);
    if (samePort !== undefined) {
      diags.error('CONFIG_ERR_OVERLAY_PORT_CONFLICT', (portNode ?? map).loc, joinPath(itemPath, 'port'), `overlays "${samePort.name}" and "${name}" both use port ${port}`, {
        expected: 'a distinct port per overlay',
      });
    }
    byName.set(name, overlay);
    byPort.set(port, overlay);
    overlays.push(overlay);
  });
  return overlays.sort((a, b) => (a.name < b.name ? -1 : 1));
}

type DriverOptions = Pick<OverlayConfig, 'cipher' | 'digest' | 'compression' | 'persistent_keepalive'>;

/** The per-driver keys of one overlay, with tinc's defaults filled in; undefined after an error. */
function readDriverOptions(
  driver: OverlayDriver,
  field: (key: string) => LNode | undefined,
  itemPath: string,
  entries: ReadonlyMap<string, LEntry>,
  diags: Diagnostics,
): DriverOptions | undefined {
  let ok = true;
  for (const [key, owner] of Object.entries(DRIVER_ONLY_KEYS)) {
    const entry = entries.get(key);
    if (entry === undefined || owner === driver) continue;
    diags.error('CONFIG_ERR_OVERLAY_DRIVER_OPTION', entry.keyLoc, joinPath(itemPath, key), `"${key}" applies to ${owner} overlays only, and this overlay's driver is ${driver}`, {
      expected: `remove "${key}", or set driver: ${owner}`,
    });
    ok = false;
  }
  if (driver === 'wireguard') {
    const keepaliveNode = field('persistent_keepalive');
    const keepalive = keepaliveNode === undefined ? null : readInt(keepaliveNode, joinPath(itemPath, 'persistent_keepalive'), diags, 1, 65535);
    if (!ok || keepalive === undefined) return undefined;
    return { cipher: null, digest: null, compression: null, persistent_keepalive: keepalive };
  }
  const cipherNode = field('cipher');
  const cipher = cipherNode === undefined ? TINC_DEFAULTS.cipher : readEnum(cipherNode, joinPath(itemPath, 'cipher'), diags, TINC_CIPHERS);
  const digestNode = field('digest');
  const digest = digestNode === undefined ? TINC_DEFAULTS.digest : readEnum(digestNode, joinPath(itemPath, 'digest'), diags, TINC_DIGESTS);
  const compressionNode = field('compression');
  const compression = compressionNode === undefined ? TINC_DEFAULTS.compression : readInt(compressionNode, joinPath(itemPath, 'compression'), diags, 0, 11);
  if (!ok || cipher === undefined || digest === undefined || compression === undefined) return undefined;
  return { cipher, digest, compression, persistent_keepalive: null };
}

/** Reads one address variable (a string or a list of strings). */
function readAddresses(entry: LEntry | undefined, path: string, diags: Diagnostics, list: boolean): { text: string; loc: Loc }[] {
  if (entry === undefined || (entry.value.kind === 'scalar' && entry.value.value === null)) return [];
  const nodes = list ? oneOrMany(entry.value) : [entry.value];
  const out: { text: string; loc: Loc }[] = [];
  nodes.forEach((node, index) => {
    const itemPath = list && entry.value.kind === 'seq' ? joinPath(path, index) : path;
    const ip = node.kind === 'scalar' && typeof node.value === 'string' ? parseIp(node.value) : undefined;
    if (ip === undefined) {
      diags.error('CONFIG_ERR_INVALID_ADDRESS', node.loc, itemPath, 'not an IP address', {
        found: describeNode(node),
        expected: list ? 'IPv4 or IPv6 addresses, one or a list' : 'an IPv4 or IPv6 address',
      });
      return;
    }
    out.push({ text: ip.text, loc: node.loc });
  });
  return out;
}

function readHost(
  inventory: Inventory,
  name: string,
  vars: Map<string, LEntry>,
  overlays: Map<string, OverlayConfig>,
  diags: Diagnostics,
): HostConfig | undefined {
  const host = inventory.hosts.get(name);
  if (host === undefined) return undefined;
  if (!checkName(name, host, `hosts.${name}`, diags, 'host')) return undefined;
  const at = (key: string): string => `${name}.${key}`;

  const ips = [
    ...readAddresses(vars.get('ip'), at('ip'), diags, false),
    ...readAddresses(vars.get('ip6'), at('ip6'), diags, false),
    ...readAddresses(vars.get('ips'), at('ips'), diags, true),
  ];
  const publicIps = [
    ...readAddresses(vars.get('public_ip'), at('public_ip'), diags, false),
    ...readAddresses(vars.get('public_ips'), at('public_ips'), diags, true),
  ];
  const overlayAddresses = new Map<string, string>();
  for (const [key, entry] of vars) {
    if (!key.startsWith('ip_')) continue;
    const overlayName = key.slice(3);
    const overlay = overlays.get(overlayName);
    if (overlay === undefined) {
      // Only a value that looks like an address is likely meant for an overlay.
      if (entry.value.kind === 'scalar' && typeof entry.value.value === 'string' && parseIp(entry.value.value)) {
        diags.warning('CONFIG_WARN_UNKNOWN_OVERLAY', entry.keyLoc, at(key), `"${key}" looks like an overlay address but no overlay "${overlayName}" is defined in all.vars.net_overlays`, {
          expected: overlays.size > 0 ? `one of ${[...overlays.keys()].map((o) => `ip_${o}`).join(', ')}` : 'an overlay defined in net_overlays',
        });
      }
      continue;
    }
    const [address] = readAddresses(entry, at(key), diags, false);
    if (address === undefined) continue;
    const network = parseNetwork(overlay.network);
    const ip = parseIp(address.text);
    if (network !== undefined && ip !== undefined && !networkContains(network, ip)) {
      diags.error('CONFIG_ERR_OVERLAY_ADDRESS_OUTSIDE', address.loc, at(key), `address is outside overlay "${overlayName}"`, {
        found: address.text,
        expected: `an address in ${overlay.network}`,
      });
      continue;
    }
    overlayAddresses.set(overlayName, address.text);
  }

  if (ips.length === 0 && publicIps.length === 0) {
    diags.error('CONFIG_ERR_HOST_NO_ADDRESS', host.loc, `hosts.${name}`, `host "${name}" has no address`, {
      expected: 'ip, ip6 or ips (and optionally public_ip or public_ips)',
    });
    return undefined;
  }
  const shard = readShard(vars.get('shard_id'), at('shard_id'), diags);
  const dedupe = (list: { text: string }[]): string[] => [...new Set(list.map((a) => a.text))];
  const sortedOverlays = new Map([...overlayAddresses].sort(([a], [b]) => (a < b ? -1 : 1)));
  return {
    name,
    loc: host.loc,
    ips: dedupe(ips.length > 0 ? ips : publicIps),
    publicIps: dedupe(publicIps.length > 0 ? publicIps : ips),
    overlays: sortedOverlays,
    shard: shard ?? null,
    groups: [...hostGroups(inventory, name)].sort(),
  };
}

function readShard(entry: LEntry | undefined, path: string, diags: Diagnostics): string | undefined {
  if (entry === undefined || (entry.value.kind === 'scalar' && entry.value.value === null)) return undefined;
  const node = entry.value;
  if (node.kind === 'scalar' && (typeof node.value === 'string' || (typeof node.value === 'number' && Number.isInteger(node.value)))) {
    const text = String(node.value);
    return checkName(text, node, path, diags, 'shard') ? text : undefined;
  }
  diags.error('CONFIG_ERR_TYPE', node.loc, path, 'wrong type', { found: describeNode(node), expected: 'a shard name (string or integer)' });
  return undefined;
}

/** No two hosts may share an address, public or overlay. */
function checkUniqueAddresses(hosts: Map<string, HostConfig>, inventory: Inventory, diags: Diagnostics): void {
  const owner = new Map<string, string>();
  for (const host of hosts.values()) {
    const mine = new Set([...host.ips, ...host.publicIps, ...host.overlays.values()]);
    // An overlay address is named by its variable and overlay, so the error says which network clashes.
    const overlayOf = new Map([...host.overlays].map(([overlay, address]) => [address, overlay]));
    for (const address of mine) {
      const other = owner.get(address);
      if (other === undefined) {
        owner.set(address, host.name);
        continue;
      }
      const loc = findAddressLoc(inventory, host.name, address) ?? host.loc;
      const overlay = overlayOf.get(address);
      const key = overlay === undefined ? host.name : `${host.name}.ip_${overlay}`;
      const what = overlay === undefined ? `address ${address}` : `address ${address} on overlay ${overlay}`;
      diags.error('CONFIG_ERR_DUPLICATE_ADDRESS', loc, key, `${what} is also used by host "${other}"`, {
        expected: 'every address owned by one host only',
      });
    }
  }
}

/** Finds the line where the host's variable holding `address` was written. */
function findAddressLoc(inventory: Inventory, hostName: string, address: string): Loc | undefined {
  for (const [key, entry] of hostVars(inventory, hostName)) {
    if (!(key === 'ip' || key === 'ip6' || key === 'ips' || key.startsWith('public_ip') || key.startsWith('ip_'))) continue;
    for (const node of oneOrMany(entry.value)) {
      if (node.kind === 'scalar' && typeof node.value === 'string' && parseIp(node.value)?.text === address) return node.loc;
    }
  }
  return undefined;
}
