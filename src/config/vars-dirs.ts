/**
 * `group_vars/` and `host_vars/` beside the inventory file, read the way
 * Ansible's host_group_vars plugin reads them: for a group or host NAME,
 * the files NAME, NAME.yml, NAME.yaml, NAME.json, and every such file
 * under a directory NAME/ (recursively, in name order, hidden files
 * skipped). Later files replace earlier keys.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Diagnostics } from './diagnostics.js';
import type { Inventory } from './inventory.js';
import type { LEntry } from './located.js';
import { readYamlFile } from './located.js';
import { expectMap } from './schema.js';

const EXTENSIONS = ['', '.yml', '.yaml', '.json'];

export function loadVarsDirectories(inventory: Inventory, diags: Diagnostics): void {
  const base = dirname(inventory.file);
  const groupDir = join(base, 'group_vars');
  const hostDir = join(base, 'host_vars');
  if (existsSync(groupDir)) {
    for (const group of inventory.groups.values()) readInto(group.fileVars, groupDir, group.name, diags);
  }
  if (existsSync(hostDir)) {
    for (const host of inventory.hosts.values()) readInto(host.fileVars, hostDir, host.name, diags);
  }
}

function readInto(target: Map<string, LEntry>, dir: string, name: string, diags: Diagnostics): void {
  for (const file of varsFiles(dir, name)) {
    const root = readYamlFile(file, diags);
    if (root === undefined || (root.kind === 'scalar' && root.value === null)) continue;
    const map = expectMap(root, '', diags);
    if (map === undefined) continue;
    for (const [key, entry] of map.entries) target.set(key, entry);
  }
}

function varsFiles(dir: string, name: string): string[] {
  const found: string[] = [];
  for (const extension of EXTENSIONS) {
    const path = join(dir, `${name}${extension}`);
    if (!existsSync(path)) continue;
    if (statSync(path).isDirectory()) found.push(...filesUnder(path));
    else found.push(path);
  }
  return found;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    if (entry.startsWith('.')) continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else if (EXTENSIONS.some((ext) => ext !== '' && entry.endsWith(ext)) || !entry.includes('.')) out.push(path);
  }
  return out;
}
