/**
 * A native reader for Ansible YAML inventories (the format of Ansible's
 * `yaml` inventory plugin): groups with `hosts`, `children` and `vars`,
 * nested groups, host ranges such as `web[01:20]`, and variable precedence
 * as `ansible-inventory --list` computes it. A test runs the real
 * `ansible-inventory` on the same files and compares.
 */
import type { Diagnostics, Loc } from './diagnostics.js';
import type { LEntry, LMap, LNode } from './located.js';
import { toPlain } from './located.js';
import { checkKeys, joinPath } from './schema.js';

interface InventoryGroup {
  readonly name: string;
  readonly loc: Loc;
  /** Hosts listed directly in this group, in file order. */
  readonly hosts: string[];
  /** Child groups, in file order. */
  readonly children: string[];
  readonly parents: Set<string>;
  readonly vars: Map<string, LEntry>;
  /** Variables from `group_vars/<group>` beside the inventory file. */
  readonly fileVars: Map<string, LEntry>;
  /** Distance from `all` (the longest path), as Ansible computes it. */
  depth: number;
  /** `ansible_group_priority`: orders same-depth groups; not a variable. */
  priority: number;
}

interface InventoryHost {
  readonly name: string;
  /** Where the host first appears. */
  readonly loc: Loc;
  /** The host's own variables; a later definition of a key wins. */
  readonly vars: Map<string, LEntry>;
  /** Variables from `host_vars/<host>` beside the inventory file. */
  readonly fileVars: Map<string, LEntry>;
  /** Groups that list the host directly, in file order. */
  readonly groups: string[];
}

export interface Inventory {
  readonly file: string;
  readonly groups: Map<string, InventoryGroup>;
  readonly hosts: Map<string, InventoryHost>;
}

const GROUP_KEYS = ['hosts', 'children', 'vars'] as const;

export function parseInventory(root: LNode, file: string, diags: Diagnostics): Inventory {
  const inventory: Inventory = { file, groups: new Map(), hosts: new Map() };
  addGroup(inventory, 'all', root.loc);
  if (root.kind !== 'map') {
    diags.error('CONFIG_ERR_TYPE', root.loc, '', 'an inventory must be a map of groups', { expected: 'a map such as "all: {hosts: ..., children: ..., vars: ...}"' });
    return inventory;
  }
  if (root.entries.has('plugin')) {
    const entry = root.entries.get('plugin') as LEntry;
    diags.error('CONFIG_ERR_VALUE', entry.keyLoc, 'plugin', 'inventory plugin configurations are not supported; give a static YAML inventory', {
      expected: `a YAML inventory with groups at the top level: export one with "ansible-inventory -i ${file} --list --yaml --export > hosts.yml"`,
    });
    return inventory;
  }
  for (const [name, entry] of root.entries) parseGroup(inventory, name, entry, name, diags);

  // Groups without a parent hang under `all`; hosts in no group but `all` form `ungrouped`.
  const ungrouped = addGroup(inventory, 'ungrouped', root.loc);
  for (const group of inventory.groups.values()) {
    if (group.name !== 'all' && group.parents.size === 0) link(inventory, 'all', group.name, group.loc, '', diags);
  }
  const all = inventory.groups.get('all') as InventoryGroup;
  // `ungrouped` is listed first under `all`, like ansible-inventory does.
  const withoutUngrouped = all.children.filter((c) => c !== 'ungrouped');
  all.children.splice(0, all.children.length, 'ungrouped', ...withoutUngrouped);
  for (const host of inventory.hosts.values()) {
    if (host.groups.every((g) => g === 'all') && !ungrouped.hosts.includes(host.name)) {
      ungrouped.hosts.push(host.name);
    }
  }
  return inventory;
}

function addGroup(inventory: Inventory, name: string, loc: Loc): InventoryGroup {
  let group = inventory.groups.get(name);
  if (group === undefined) {
    group = { name, loc, hosts: [], children: [], parents: new Set(), vars: new Map(), fileVars: new Map(), depth: 0, priority: 1 };
    inventory.groups.set(name, group);
  }
  return group;
}

function parseGroup(inventory: Inventory, name: string, entry: LEntry, path: string, diags: Diagnostics): void {
  const group = addGroup(inventory, name, entry.keyLoc);
  const node = entry.value;
  if (node.kind === 'scalar' && node.value === null) return;
  if (node.kind !== 'map') {
    diags.error('CONFIG_ERR_TYPE', node.loc, path, `group "${name}" must be a map`, { expected: 'a map with hosts, children and/or vars' });
    return;
  }
  checkKeys(node, GROUP_KEYS, path, diags);
  for (const [section, sectionEntry] of node.entries) {
    const sectionPath = joinPath(path, section);
    const items = sectionItems(sectionEntry.value, sectionPath, diags);
    if (items === undefined) continue;
    if (section === 'vars') {
      for (const [key, varEntry] of items) {
        // Like Ansible: the priority orders groups and is not kept as a variable.
        if (key === 'ansible_group_priority' && varEntry.value.kind === 'scalar' && Number.isInteger(Number(varEntry.value.value))) {
          group.priority = Number(varEntry.value.value);
        } else group.vars.set(key, varEntry);
      }
    } else if (section === 'children') {
      for (const [child, childEntry] of items) {
        parseGroup(inventory, child, childEntry, joinPath(sectionPath, child), diags);
        link(inventory, group.name, child, childEntry.keyLoc, joinPath(sectionPath, child), diags);
      }
    } else if (section === 'hosts') {
      for (const [pattern, hostEntry] of items) {
        addHosts(inventory, group, pattern, hostEntry, joinPath(sectionPath, pattern), diags);
      }
    }
  }
}

/** A `hosts`/`children`/`vars` section: a map, null, or a single name. */
function sectionItems(node: LNode, path: string, diags: Diagnostics): Map<string, LEntry> | undefined {
  if (node.kind === 'map') return node.entries;
  if (node.kind === 'scalar' && node.value === null) return undefined;
  if (node.kind === 'scalar' && typeof node.value === 'string') {
    const nil: LNode = { kind: 'scalar', loc: node.loc, value: null };
    return new Map([[node.value, { key: node.value, keyLoc: node.loc, value: nil }]]);
  }
  diags.error('CONFIG_ERR_TYPE', node.loc, path, 'wrong type', { expected: 'a map' });
  return undefined;
}

function link(inventory: Inventory, parentName: string, childName: string, loc: Loc, path: string, diags: Diagnostics): void {
  const parent = inventory.groups.get(parentName) as InventoryGroup;
  const child = inventory.groups.get(childName) as InventoryGroup;
  if (childName === 'all' || isAncestor(inventory, childName, parentName)) {
    diags.error('CONFIG_ERR_GROUP_CYCLE', loc, path, `group "${childName}" cannot be a child of "${parentName}": that makes a cycle`);
    return;
  }
  if (!parent.children.includes(childName)) parent.children.push(childName);
  child.parents.add(parentName);
  raiseDepth(inventory, child, parent.depth + 1);
}

function isAncestor(inventory: Inventory, candidate: string, of: string): boolean {
  if (candidate === of) return true;
  const group = inventory.groups.get(of);
  if (group === undefined) return false;
  for (const parent of group.parents) if (isAncestor(inventory, candidate, parent)) return true;
  return false;
}

function raiseDepth(inventory: Inventory, group: InventoryGroup, depth: number): void {
  if (group.depth >= depth) return;
  group.depth = depth;
  for (const child of group.children) raiseDepth(inventory, inventory.groups.get(child) as InventoryGroup, depth + 1);
}

function addHosts(inventory: Inventory, group: InventoryGroup, pattern: string, entry: LEntry, path: string, diags: Diagnostics): void {
  let names: string[];
  let port: number | undefined;
  try {
    ({ names, port } = expandHostPattern(pattern));
  } catch (err) {
    diags.error('CONFIG_ERR_VALUE', entry.keyLoc, path, (err as Error).message, { found: JSON.stringify(pattern), expected: 'a host name or a range such as web[01:20]' });
    return;
  }
  let vars: LMap | undefined;
  if (entry.value.kind === 'map') vars = entry.value;
  else if (!(entry.value.kind === 'scalar' && entry.value.value === null)) {
    diags.error('CONFIG_ERR_TYPE', entry.value.loc, path, 'host variables must be a map', { expected: 'a map of variables, or nothing' });
  }
  for (const name of names) {
    let host = inventory.hosts.get(name);
    if (host === undefined) {
      host = { name, loc: entry.keyLoc, vars: new Map(), fileVars: new Map(), groups: [] };
      inventory.hosts.set(name, host);
    }
    if (!host.groups.includes(group.name)) host.groups.push(group.name);
    if (!group.hosts.includes(name)) group.hosts.push(name);
    if (port !== undefined) {
      const portNode: LNode = { kind: 'scalar', loc: entry.keyLoc, value: port };
      host.vars.set('ansible_port', { key: 'ansible_port', keyLoc: entry.keyLoc, value: portNode });
    }
    if (vars !== undefined) for (const [key, varEntry] of vars.entries) host.vars.set(key, varEntry);
  }
}

/**
 * Expands Ansible host patterns: `name`, `name:port`, and ranges such as
 * `web[01:20]`, `web[1:9:2]`, `db-[a:f]` (several ranges multiply out).
 */
function expandHostPattern(pattern: string): { names: string[]; port?: number } {
  let base = pattern;
  let port: number | undefined;
  const portMatch = /^([^:[\]]+|[^:]*\[[^\]]*\][^:]*):(\d+)$/.exec(pattern);
  if (portMatch && !pattern.includes('::')) {
    base = portMatch[1] ?? pattern;
    port = Number(portMatch[2]);
  }
  const names = expandRanges(base);
  return port === undefined ? { names } : { names, port };
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

function expandRanges(name: string): string[] {
  const match = /^(.*?)\[([^\]]*)\](.*)$/.exec(name);
  if (match === null) return [name];
  const [, head = '', range = '', tail = ''] = match;
  const bounds = range.split(':');
  if (bounds.length < 2 || bounds.length > 3) throw new Error(`host range "[${range}]" must be [begin:end] or [begin:end:step]`);
  const begin = bounds[0] === '' ? '0' : (bounds[0] ?? '0');
  const end = bounds[1] ?? '';
  const step = bounds[2] === undefined || bounds[2] === '' ? 1 : Number(bounds[2]);
  if (end === '') throw new Error(`host range "[${range}]" has no end`);
  if (!Number.isInteger(step) || step < 1) throw new Error(`host range "[${range}]" has an invalid step`);
  let items: string[];
  const beginLetter = LETTERS.indexOf(begin);
  const endLetter = LETTERS.indexOf(end);
  if (begin.length === 1 && end.length === 1 && beginLetter >= 0 && endLetter >= 0) {
    if (beginLetter > endLetter) throw new Error(`host range "[${range}]" runs backwards`);
    items = [];
    for (let i = beginLetter; i <= endLetter; i += step) items.push(LETTERS[i] ?? '');
  } else {
    if (!/^\d+$/.test(begin) || !/^\d+$/.test(end)) throw new Error(`host range "[${range}]" must be numbers or single letters`);
    const padded = begin.length > 1 && begin.startsWith('0');
    if (padded && begin.length !== end.length) throw new Error(`host range "[${range}]" must give begin and end with equal widths`);
    // Ansible silently yields no hosts here; an empty range is always a mistake.
    if (Number(begin) > Number(end)) throw new Error(`host range "[${range}]" runs backwards`);
    items = [];
    for (let i = Number(begin); i <= Number(end); i += step) items.push(padded ? String(i).padStart(begin.length, '0') : String(i));
  }
  return items.flatMap((item) => expandRanges(`${head}${item}${tail}`));
}

/** Every group the host belongs to, directly or through nesting, with `all`. */
export function hostGroups(inventory: Inventory, hostName: string): Set<string> {
  const found = new Set<string>(['all']);
  const visit = (group: string): void => {
    if (found.has(group) && group !== 'all') return;
    found.add(group);
    for (const parent of inventory.groups.get(group)?.parents ?? []) visit(parent);
  };
  for (const group of inventory.hosts.get(hostName)?.groups ?? []) visit(group);
  return found;
}

/**
 * The host's variables after Ansible's precedence (VARIABLE_PRECEDENCE's
 * default): inventory-file vars of `all`, then of the other groups from the
 * shallowest to the deepest (same depth: by `ansible_group_priority`, then
 * by name); then `group_vars/` files in the same order; then the host's
 * inventory vars and its `host_vars/` file. Values are replaced whole.
 */
export function hostVars(inventory: Inventory, hostName: string): Map<string, LEntry> {
  return hostVarsResolver(inventory)(hostName);
}

/**
 * `hostVars` for many hosts: hosts listed in the same groups share their
 * merged group variables, which are computed once per distinct group list.
 */
export function hostVarsResolver(inventory: Inventory): (hostName: string) => Map<string, LEntry> {
  const byGroupList = new Map<string, Map<string, LEntry>>();
  return (hostName) => {
    const host = inventory.hosts.get(hostName);
    const key = host?.groups.join('\0') ?? '';
    let fromGroups = byGroupList.get(key);
    if (fromGroups === undefined) {
      const groups = [...hostGroups(inventory, hostName)].map((name) => inventory.groups.get(name) as InventoryGroup);
      groups.sort((a, b) => a.depth - b.depth || a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      fromGroups = new Map<string, LEntry>();
      for (const group of groups) for (const [k, entry] of group.vars) fromGroups.set(k, entry);
      for (const group of groups) for (const [k, entry] of group.fileVars) fromGroups.set(k, entry);
      byGroupList.set(key, fromGroups);
    }
    const merged = new Map(fromGroups);
    for (const [k, entry] of host?.vars ?? []) merged.set(k, entry);
    for (const [k, entry] of host?.fileVars ?? []) merged.set(k, entry);
    return merged;
  };
}

/** A group's own variables: the inventory file's, then its group_vars file's. */
export function groupVars(group: InventoryGroup): Map<string, LEntry> {
  return new Map([...group.vars, ...group.fileVars]);
}

/** Every host in the group or any group nested in it, in inventory order. */
export function groupMembers(inventory: Inventory, groupName: string): string[] {
  if (groupName === 'all') return [...inventory.hosts.keys()];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    const group = inventory.groups.get(name);
    if (group === undefined) return;
    for (const host of group.hosts) seen.add(host);
    for (const child of group.children) visit(child);
  };
  visit(groupName);
  return [...seen];
}

/** The inventory in the shape `ansible-inventory --list` prints (merged host vars). */
export function toAnsibleList(inventory: Inventory): Record<string, unknown> {
  const hostvars: Record<string, unknown> = {};
  const varsOf = hostVarsResolver(inventory);
  for (const name of inventory.hosts.keys()) {
    const vars: Record<string, unknown> = {};
    for (const [key, entry] of varsOf(name)) vars[key] = toPlain(entry.value);
    hostvars[name] = vars;
  }
  const out: Record<string, unknown> = { _meta: { hostvars } };
  for (const group of inventory.groups.values()) {
    const body: Record<string, unknown> = {};
    if (group.children.length > 0) body.children = [...group.children];
    if (group.hosts.length > 0 && group.name !== 'all') body.hosts = [...group.hosts];
    if (Object.keys(body).length > 0) out[group.name] = body;
  }
  return out;
}
