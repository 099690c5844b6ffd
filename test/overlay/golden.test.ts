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
import { compileTopology, loadConfig } from '../../src/config/index.js';
import { renderHost } from '../../src/overlay/index.js';
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
    // Regenerating also drops the golden files of hosts the fixture no longer has.
    if (UPDATE) for (const dir of readdirSync(GOLDEN)) if (!hosts.includes(dir)) rmSync(join(GOLDEN, dir), { recursive: true, force: true });
    expect(readdirSync(GOLDEN).sort()).toEqual(hosts);
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

  it('an overlay that sets nothing but its name and network gets the defaults the README documents', () => {
    // vpn1 (fixture) is the all-defaults tinc overlay, wg0 a WireGuard one without port,
    // wg6 one without MTU or keepalive.
    const options = readFileSync(join(REPO_ROOT, 'src/overlay/README.md'), 'utf8').split('## Options')[1]?.split('\n## ')[0] ?? '';
    const documented = (key: string): string => new RegExp(`^\\| \`${key}\` \\| ([^|]+) \\|`, 'm').exec(options)?.[1]?.trim() ?? `no README row for ${key}`;
    expect(documented('driver')).toBe('`tinc`');
    expect(documented('port')).toBe('655 (tinc), 51820 (wireguard)');
    expect(documented('cipher')).toBe('`aes-256-cbc`');
    expect(documented('digest')).toBe('`sha256`');
    expect(documented('compression')).toBe('`0`');
    expect(documented('mtu')).toMatch(/^none /);
    expect(documented('persistent_keepalive')).toBe('off');

    const golden = (host: string, path: string): string => readFileSync(join(GOLDEN, host, path), 'utf8');
    const vpn1Host = golden('db-1', 'etc/tinc/vpn1/hosts/gw_1');
    expect(vpn1Host).toContain('\nPort = 655\nSubnet = 100.64.33.10/32\nCipher = aes-256-cbc\nDigest = sha256\nCompression = 0\n');
    expect(golden('db-1', 'etc/tinc/vpn1/tinc.conf')).toContain('\nPort = 655\n');
    expect(golden('db-1', 'etc/tinc/vpn1/tinc-up')).not.toContain('mtu');
    expect(golden('app-1', 'etc/wireguard/wg0.conf')).toContain('\nListenPort = 51820\n');
    expect(golden('app-1', 'etc/wireguard/wg0.conf')).toContain('\nEndpoint = 198.18.4.10:51820\n');
    const wg6 = golden('app-2', 'etc/wireguard/wg6.conf');
    expect(wg6).not.toMatch(/^MTU|^PersistentKeepalive/m);
    // ...and the options that are set show up as set.
    expect(golden('app-1', 'etc/tinc/vpn0/hosts/app_1')).toContain('\nPort = 656\nSubnet = 100.64.30.1/32\nCipher = aes-128-cbc\nDigest = sha512\nCompression = 9\n');
    expect(golden('app-1', 'etc/tinc/vpn0/tinc-up')).toContain('ip link set dev "$INTERFACE" mtu 1400\n');
    expect(golden('gw-1', 'etc/wireguard/wg0.conf')).toContain('\nPersistentKeepalive = 25\n');
  });

  it('the golden rulesets pass "nft -c -f" (checked in a throwaway network namespace)', () => {
    for (const host of hosts) {
      const file = join(GOLDEN, host, 'etc/nftables.d/meshplane.nft');
      const result = run('unshare', ['--net', 'nft', '-c', '-f', file]);
      expect(result.status, `${host}: ${result.stderr}`).toBe(0);
    }
  });
});
