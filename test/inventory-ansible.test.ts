/**
 * The native inventory reader must agree with Ansible itself: for each
 * fixture, run the real `ansible-inventory --list` (and `--export`) and
 * compare groups, members and variables with what meshplane parsed.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.js';
import { Diagnostics, groupVars, readInventory, toAnsibleList, toPlain } from '../src/config/testing.js';
import type { Inventory } from '../src/config/testing.js';
import { FIXTURES, ansibleInventory, tempDir } from './support/run.js';

const INVENTORIES = join(FIXTURES, 'inventories');
// Single-file inventories, and directories holding hosts.yml with group_vars/ and host_vars/.
const files = readdirSync(INVENTORIES, { withFileTypes: true })
  .map((entry) => (entry.isDirectory() ? `${entry.name}/hosts.yml` : entry.name))
  .filter((f) => f.endsWith('.yml'))
  .sort();

type AnsibleList = Record<string, { hosts?: string[]; children?: string[]; vars?: Record<string, unknown> }> & {
  _meta: { hostvars: Record<string, Record<string, unknown>> };
};

/** Groups as sorted member lists; empty groups omitted (ansible-inventory drops them). */
function membership(list: Record<string, unknown>): Record<string, { hosts: string[]; children: string[] }> {
  const out: Record<string, { hosts: string[]; children: string[] }> = {};
  for (const [name, value] of Object.entries(list)) {
    if (name === '_meta') continue;
    const group = value as { hosts?: string[]; children?: string[] };
    const hosts = [...(group.hosts ?? [])].sort();
    const children = [...(group.children ?? [])].sort();
    if (hosts.length + children.length > 0) out[name] = { hosts, children };
  }
  return out;
}

/** Ansible prints `!unsafe` values as {__ansible_unsafe: text}; meshplane keeps the text. */
function plainVars(vars: Map<string, { value: Parameters<typeof toPlain>[0] }>): Record<string, unknown> {
  return Object.fromEntries([...vars].map(([key, entry]) => [key, toPlain(entry.value)]));
}

describe('inventory reader matches ansible-inventory', () => {
  const work = tempDir('ansible');
  beforeAll(() => {
    const probe = ansibleInventory(['--version'], work.path);
    if (probe.status !== 0) throw new Error(`ansible-inventory is required (apt-get install ansible-core): ${probe.stderr}`);
  });
  afterAll(() => work.remove());

  it('has several fixtures to compare', () => {
    expect(files.length).toBeGreaterThanOrEqual(6);
  });

  for (const file of files) {
    describe(file, () => {
      const path = join(INVENTORIES, file);
      let ours: Inventory;
      let theirs: AnsibleList;
      let theirsExport: AnsibleList;
      beforeAll(() => {
        const diags = new Diagnostics();
        ours = readInventory(path, diags);
        expect(diags.errors).toEqual([]);
        const list = ansibleInventory(['-i', path, '--list'], work.path);
        expect(list.status, list.stderr).toBe(0);
        theirs = JSON.parse(list.stdout) as AnsibleList;
        const exported = ansibleInventory(['-i', path, '--list', '--export'], work.path);
        expect(exported.status, exported.stderr).toBe(0);
        theirsExport = JSON.parse(exported.stdout) as AnsibleList;
      });

      it('finds the same hosts', () => {
        expect([...ours.hosts.keys()].sort()).toEqual(Object.keys(theirs._meta.hostvars).sort());
      });

      it('finds the same groups with the same hosts and children', () => {
        expect(membership(toAnsibleList(ours))).toEqual(membership(theirs));
      });

      it('gives every host the same variables after precedence', () => {
        const mine = (toAnsibleList(ours) as AnsibleList)._meta.hostvars;
        expect(mine).toEqual(theirs._meta.hostvars);
      });

      it('reads the same variables at each group and host', () => {
        for (const [name, group] of ours.groups) {
          const expected = theirsExport[name]?.vars ?? {};
          // --export shows a non-default priority among the group's vars.
          const priority = group.priority === 1 ? {} : { ansible_group_priority: group.priority };
          expect({ ...plainVars(groupVars(group)), ...priority }, `vars of group ${name}`).toEqual(expected);
        }
        for (const [name, host] of ours.hosts) {
          const expected = theirsExport._meta.hostvars[name] ?? {};
          expect(plainVars(new Map([...host.vars, ...host.fileVars])), `vars of host ${name}`).toEqual(expected);
        }
      });
    });
  }

  it('reads an INI inventory after the conversion its error message suggests', () => {
    const ini = join(FIXTURES, 'fleet.ini');
    const diags = new Diagnostics();
    readInventory(ini, diags);
    expect(diags.errors.map((d) => d.code)).toEqual(['CONFIG_ERR_INVENTORY_FORMAT']);
    const suggested = /"ansible-inventory -i (\S+) --list --yaml --export > hosts\.yml"/.exec(diags.errors[0]?.expected ?? '');
    expect(suggested?.[1]).toBe(ini);
    const converted = ansibleInventory(['-i', ini, '--list', '--yaml', '--export', '--output', join(work.path, 'hosts.yml')], work.path);
    expect(converted.status, converted.stderr).toBe(0);
    writeFileSync(join(work.path, 'services.yml'), 'web:\n  scheduling_group: web\n');
    const config = loadConfig({ inventory: join(work.path, 'hosts.yml'), services: join(work.path, 'services.yml') });
    expect(config.diagnostics.items).toEqual([]);
    expect(config.mesh.domain).toBe('ini.mesh');
    expect(config.mesh.overlays.map((o) => o.name)).toEqual(['vpn0']);
    expect(config.mesh.hosts.get('h1')?.overlays.get('vpn0')).toBe('100.64.0.1');
    expect(config.mesh.hosts.get('h3')?.groups).toEqual(['all', 'backend', 'db']);
  });
});
