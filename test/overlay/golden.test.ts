/**
 * Golden files: every file `meshplane overlay render` produces for every
 * host of test/overlay/fixtures/golden, byte for byte, under
 * test/overlay/golden/<host>/<path on the host>. A change to a generator
 * shows up here as a diff to review. Regenerate with `npm run golden:overlay`
 * (UPDATE_GOLDEN=1), then read the diff before committing it.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { renderHost } from '../../src/overlay/index.js';
import { compileTopology } from '../../src/topology/index.js';
import { REPO_ROOT, run } from '../support/run.js';

const FIXTURE = join(REPO_ROOT, 'test/overlay/fixtures/golden');
const GOLDEN = join(REPO_ROOT, 'test/overlay/golden');
const UPDATE = process.env.UPDATE_GOLDEN === '1';

const topology = compileTopology(loadConfig({ services: join(FIXTURE, 'services.yml'), inventory: join(FIXTURE, 'hosts.yml') }));
const hosts = Object.keys(topology.hosts);

function filesUnder(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

describe('golden files (npm run golden:overlay regenerates them)', () => {
  it('cover every host of the fixture', () => {
    expect(hosts).toEqual(['app-1', 'app-2', 'db-1', 'gw-1', 'lone']);
    if (!UPDATE) expect(readdirSync(GOLDEN).sort()).toEqual(hosts);
  });

  for (const host of hosts) {
    it(`${host}: every rendered file matches its golden copy, and no golden file is missing`, () => {
      const files = renderHost(topology, host, { keysDir: join(FIXTURE, 'keys') });
      const dir = join(GOLDEN, host);
      if (UPDATE) {
        rmSync(dir, { recursive: true, force: true });
        for (const file of files) {
          mkdirSync(dirname(join(dir, file.path)), { recursive: true });
          writeFileSync(join(dir, file.path), file.content);
        }
      }
      const golden = filesUnder(dir).map((path) => relative(dir, path)).sort();
      expect(files.map((f) => f.path).sort()).toEqual(golden);
      for (const file of files) expect(file.content, file.path).toBe(readFileSync(join(dir, file.path), 'utf8'));
    });
  }

  it('the golden rulesets pass "nft -c -f" (checked in a throwaway network namespace)', () => {
    for (const host of hosts) {
      const file = join(GOLDEN, host, 'etc/nftables.d/meshplane.nft');
      const result = run('unshare', ['--net', 'nft', '-c', '-f', file]);
      expect(result.status, `${host}: ${result.stderr}`).toBe(0);
    }
  });
});
