/**
 * The shipped examples are documentation and the input of `npm start`: they
 * must be valid and show every key meshplane reads.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.js';
import { CREDENTIAL_KEYS, ENDPOINT_KEYS, HEALTH_KEYS, OUTLIER_KEYS, OVERLAY_KEYS, PKI_POLICY_KEYS, SERVICE_KEYS } from '../src/config/testing.js';
import { REPO_ROOT } from './support/run.js';

const servicesExample = join(REPO_ROOT, 'services.yml.example');
const inventoryExample = join(REPO_ROOT, 'hosts.yml.example');

/** Keys written as `key:` in the file, commented-out ones included. */
function keysIn(file: string): Set<string> {
  const keys = new Set<string>();
  for (const match of readFileSync(file, 'utf8').matchAll(/(?:^|[\s{,#-])([a-z_][a-z0-9_]*):/gm)) keys.add(match[1] as string);
  return keys;
}

describe('shipped examples', () => {
  it('validate without errors or warnings', () => {
    const config = loadConfig({ services: servicesExample, inventory: inventoryExample });
    expect(config.diagnostics.items).toEqual([]);
  });

  it('show every services.yml key', () => {
    const keys = keysIn(servicesExample);
    const missing = ['include', 'allow_no_services', 'pki_policy', ...PKI_POLICY_KEYS, ...SERVICE_KEYS, ...CREDENTIAL_KEYS, ...ENDPOINT_KEYS, ...HEALTH_KEYS.filter((k) => k !== 'enabled'), ...OUTLIER_KEYS.filter((k) => k !== 'enabled')].filter(
      (key) => !keys.has(key),
    );
    expect(missing).toEqual([]);
  });

  it('show every inventory variable meshplane reads', () => {
    const keys = keysIn(inventoryExample);
    const missing = ['domain', 'net_overlays', ...OVERLAY_KEYS, 'ip', 'ip6', 'ips', 'public_ip', 'shard_id', 'ip_vpn0'].filter((key) => !keys.has(key));
    expect(missing).toEqual([]);
    expect(readFileSync(inventoryExample, 'utf8')).toContain('public_ips');
  });
});
