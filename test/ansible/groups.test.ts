/**
 * The groups meshplane adds to an Ansible inventory are names Ansible takes
 * without a word: `ansible-inventory --graph` over the static inventory and
 * the script inventory (ansible/inventory/meshplane, running the built CLI)
 * prints no warning, for the examples and the test fleet; dashed service
 * names appear as `db_backup`, masters as `db_master`, and Jinja reaches
 * them in dot notation.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT, run, tempDir } from '../support/run.js';
import { ANSIBLE_DIR, ansibleEnv } from './support.js';

const work = tempDir('ansible-groups');
afterAll(() => work.remove());
// As the README's first run does: Ansible reads a YAML inventory by its extension.
copyFileSync(join(REPO_ROOT, 'hosts.yml.example'), join(work.path, 'hosts.yml'));

const CASES = [
  { name: 'the examples', services: join(REPO_ROOT, 'services.yml.example'), inventory: join(work.path, 'hosts.yml'), master: 'db_master', dashed: 'db_backup' },
  { name: 'the test fleet', services: join(REPO_ROOT, 'test/ansible/fixtures/services.yml'), inventory: join(REPO_ROOT, 'test/ansible/fixtures/hosts.yml'), master: 'db_master', dashed: 'db_backup' },
] as const;

function ansible(command: string, args: readonly string[], c: (typeof CASES)[number]): ReturnType<typeof run> {
  return run(command, ['-i', c.inventory, '-i', join(ANSIBLE_DIR, 'inventory/meshplane'), ...args], {
    cwd: work.path,
    env: { ...ansibleEnv(work.path), MESHPLANE_BIN: `${process.execPath} ${CLI}`, MESHPLANE_SERVICES: c.services, MESHPLANE_INVENTORY: c.inventory },
  });
}

describe.each(CASES)('meshplane groups in $name', (c) => {
  it('ansible-inventory --graph warns about nothing, and lists the underscore groups only', () => {
    const graph = ansible('ansible-inventory', ['--graph'], c);
    expect(graph.status, graph.stderr).toBe(0);
    expect(graph.stderr).not.toMatch(/Invalid characters/);
    expect(graph.stderr).toBe('');
    expect(graph.stdout).toMatch(new RegExp(`^\\s*\\|--@${c.master}:$`, 'm'));
    expect(graph.stdout).toMatch(new RegExp(`^\\s*\\|--@${c.dashed}:$`, 'm'));
    expect(graph.stdout).not.toMatch(/@[a-z0-9_]*-/);
  });

  it('Jinja reaches the master group in dot notation', () => {
    const result = ansible('ansible', ['localhost', '-c', 'local', '-m', 'debug', '-a', `msg={{ groups.${c.master} | join(',') }}/{{ groups.${c.dashed} | length }}`], c);
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/"msg": "[a-z0-9]+\/[1-9]\d*"/);
  });
});
