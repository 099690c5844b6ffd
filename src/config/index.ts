/**
 * Config: the front door for reading and validating the two inputs (the
 * Ansible inventory and services.yml). Everything past this point trusts
 * the values it gets.
 */
import { crossCheck } from './cross-check.js';
import type { Candidates } from './cross-check.js';
import { Diagnostics } from './diagnostics.js';
import { parseInventory } from './inventory.js';
import type { Inventory } from './inventory.js';
import { parseYaml, readSourceFile } from './located.js';
import type { LNode } from './located.js';
import { readMeshInventory } from './mesh-inventory.js';
import { loadVarsDirectories } from './vars-dirs.js';
import { readServices } from './services.js';
import type { MeshInventory, ServicesConfig } from './types.js';

export { ConfigError, Diagnostics, formatDiagnostic } from './diagnostics.js';
export type { Diagnostic, Loc, Severity } from './diagnostics.js';
export { parseInventory, toAnsibleList, hostVars, groupVars, groupMembers, hostGroups, expandHostPattern } from './inventory.js';
export type { Inventory, InventoryGroup, InventoryHost } from './inventory.js';
export { parseYaml, readYamlFile, toPlain } from './located.js';
export { DEFAULT_DOMAIN } from './mesh-inventory.js';
export { didYouMean } from '../lib/did-you-mean.js';
export type { Candidates } from './cross-check.js';
export type * from './types.js';

export const DEFAULT_SERVICES_FILE = 'services.yml';
export const DEFAULT_INVENTORY_FILE = 'hosts.yml';

export interface ConfigPaths {
  readonly services: string;
  readonly inventory: string;
}

/** Both inputs validated together; `ok` is false when any error was found. */
export interface LoadedConfig {
  readonly ok: boolean;
  readonly diagnostics: Diagnostics;
  readonly mesh: MeshInventory;
  readonly services: ServicesConfig;
  readonly candidates: Candidates;
}

/** Reads an inventory file into Ansible's model (groups, hosts, vars). */
export function readInventory(file: string, diags: Diagnostics): Inventory {
  const empty: LNode = { kind: 'map', loc: { file, line: 1, col: 1 }, entries: new Map() };
  const source = readSourceFile(file, diags);
  if (source === undefined) return parseInventory(empty, file, diags);
  const iniLine = iniSectionLine(source);
  if (iniLine !== undefined) {
    diags.error('CONFIG_ERR_INVENTORY_FORMAT', { file, line: iniLine, col: 1 }, '', 'this looks like an INI inventory; meshplane reads YAML inventories', {
      expected: `a YAML inventory: convert this one with "ansible-inventory -i ${file} --list --yaml --export > hosts.yml"`,
    });
    return parseInventory(empty, file, diags);
  }
  const inventory = parseInventory(parseYaml(source, file, diags) ?? empty, file, diags);
  loadVarsDirectories(inventory, diags);
  return inventory;
}

/** Reads and validates both inputs, collecting every problem found. */
export function loadConfig(paths: ConfigPaths): LoadedConfig {
  const diagnostics = new Diagnostics();
  const inventory = readInventory(paths.inventory, diagnostics);
  const mesh = readMeshInventory(inventory, diagnostics);
  const services = readServices(paths.services, diagnostics);
  const candidates = crossCheck(mesh, services, diagnostics);
  return {
    ok: !diagnostics.hasErrors(),
    diagnostics,
    mesh,
    services,
    candidates,
  };
}

/** The line of an INI `[group]` header when that is the file's first statement. */
function iniSectionLine(source: string): number | undefined {
  const lines = source.split('\n', 1000);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    return /^\[[A-Za-z0-9_:.-]+\]$/.test(line) ? i + 1 : undefined;
  }
  return undefined;
}
