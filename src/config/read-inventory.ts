/** Reading an inventory file: YAML only, with a hint for INI inventories. */
import type { Diagnostics } from './diagnostics.js';
import { parseInventory } from './inventory.js';
import type { Inventory } from './inventory.js';
import { parseYaml, readSourceFile } from './located.js';
import type { LNode } from './located.js';
import { loadVarsDirectories } from './vars-dirs.js';

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
