/**
 * Golden files: what `meshplane compile` prints (the Topology JSON) and what
 * `meshplane compile --format ansible` prints (the dynamic inventory), byte
 * for byte, for the shipped example and every inventory/services pair of the
 * test fixtures that compiles, under test/golden/compile/<name>/. A change
 * to validation, scheduling or layout shows up here as a diff to review.
 * Regenerate with `npm run golden:compile` (UPDATE_GOLDEN=1, builds first),
 * then read the diff before committing it.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, meshplane } from './support/run.js';

const GOLDEN = join(REPO_ROOT, 'test/golden/compile');
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const EVERY_HOST = 'test/fixtures/services-every-host.yml';

/** name -> [services, inventory], relative to the repository (the CLI prints no paths, but keep them stable anyway). */
const PAIRS: Record<string, readonly [string, string]> = {
  example: ['services.yml.example', 'hosts.yml.example'],
  'ansible-fixture': ['test/ansible/fixtures/services.yml', 'test/ansible/fixtures/hosts.yml'],
  'overlay-golden': ['test/overlay/fixtures/golden/services.yml', 'test/overlay/fixtures/golden/hosts.yml'],
  'overlay-lab': ['test/overlay/fixtures/lab/services.yml', 'test/overlay/fixtures/lab/hosts.yml'],
  'inventory-flat': [EVERY_HOST, 'test/fixtures/inventories/flat.yml'],
  'inventory-mesh': [EVERY_HOST, 'test/fixtures/inventories/mesh.yml'],
  'inventory-nested': [EVERY_HOST, 'test/fixtures/inventories/nested.yml'],
  'inventory-priority': [EVERY_HOST, 'test/fixtures/inventories/priority.yml'],
  'inventory-with-vars-dirs': [EVERY_HOST, 'test/fixtures/inventories/with-vars-dirs/hosts.yml'],
};
/** Fixture inventories that are meant not to compile (they exercise errors). */
const REFUSED = ['test/fixtures/inventories/ranges.yml'];

const OUTPUTS = { 'topology.json': [], 'ansible.json': ['--format', 'ansible'] } as const;

describe('compile golden files (npm run golden:compile regenerates them)', () => {
  it('cover every fixture inventory: compiled here, or known to be refused', () => {
    const inventories = readdirSync(join(REPO_ROOT, 'test/fixtures/inventories'), { withFileTypes: true }).map((e) =>
      e.isDirectory() ? `test/fixtures/inventories/${e.name}/hosts.yml` : `test/fixtures/inventories/${e.name}`,
    );
    const covered = Object.values(PAIRS).map(([, inventory]) => inventory);
    expect(inventories.filter((i) => !covered.includes(i)).sort()).toEqual(REFUSED);
    for (const inventory of REFUSED) expect(meshplane(['check', '-s', EVERY_HOST, '-i', inventory]).status, inventory).toBe(1);
    if (UPDATE) for (const dir of readdirSync(GOLDEN)) if (!(dir in PAIRS)) rmSync(join(GOLDEN, dir), { recursive: true, force: true });
    expect(readdirSync(GOLDEN).sort()).toEqual(Object.keys(PAIRS).sort());
  });

  for (const [name, [services, inventory]] of Object.entries(PAIRS)) {
    it(`${name}: compile and compile --format ansible match their golden copies`, () => {
      const dir = join(GOLDEN, name);
      for (const [file, flags] of Object.entries(OUTPUTS)) {
        const result = meshplane(['compile', '-s', services, '-i', inventory, ...flags]);
        expect(result.stderr, `${name}/${file}`).toBe('');
        expect(result.status, `${name}/${file}`).toBe(0);
        if (UPDATE) {
          mkdirSync(dir, { recursive: true });
          writeFileSync(join(dir, file), result.stdout);
        }
        expect(result.stdout, `${name}/${file}`).toBe(readFileSync(join(dir, file), 'utf8'));
      }
      expect(readdirSync(dir).sort()).toEqual(Object.keys(OUTPUTS).sort());
    });
  }
});
