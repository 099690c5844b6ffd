/**
 * `meshplane compile --host`: the Topology one host needs. Everything that
 * host's daemons produce must be the same from its own Topology as from the whole
 * Topology: its DNS answers, its certificates' SANs, its overlay and
 * firewall files.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateHostKeys, renderHost } from '../src/overlay/index.js';
import { entitledSans } from '../src/pki/index.js';
import { kindsOf } from '../src/pki/testing.js';
import { addressesSeenBy, topologyForHost } from '../src/topology/index.js';
import { parseTopology } from '../src/topology/testing.js';
import type { Topology } from '../src/topology/index.js';
import { meshplane, REPO_ROOT, tempDir } from './support/run.js';

const example = ['-s', join(REPO_ROOT, 'services.yml.example'), '-i', join(REPO_ROOT, 'hosts.yml.example')];
const whole: Topology = parseTopology(meshplane(['compile', ...example]).stdout, 'example');
const keys = tempDir('for-host');
afterAll(() => keys.remove());

describe('the topology as one host needs it', () => {
  it('leaves out the overlays the host is not on, and other hosts addresses there', () => {
    const mine = topologyForHost(whole, 'host3'); // on wg0 only
    expect(mine.overlays.map((o) => o.name)).toEqual(['wg0']);
    expect(mine.hosts.host2?.overlays).toEqual({ wg0: '100.64.1.2' });
    expect(mine.hosts.gw1?.overlays).toEqual({});
    expect(mine.services.db?.instances.find((i) => i.host === 'host2')?.overlays).toEqual({ wg0: '100.64.1.2' });
    expect(topologyForHost(whole, 'host4').overlays).toEqual([]);
  });

  it('gives every host the same DNS answers, SANs and overlay files as the whole topology', () => {
    const keysDir = join(keys.path, 'keys');
    for (const host of Object.keys(whole.hosts)) generateHostKeys(whole, host, { root: join(keys.path, host), keysDir });
    for (const name of Object.keys(whole.hosts)) {
      const mine = topologyForHost(whole, name);
      for (const target of Object.keys(whole.hosts)) {
        expect(addressesSeenBy(mine.hosts[name]!, mine.hosts[target]!), `${name} -> ${target}`).toEqual(addressesSeenBy(whole.hosts[name]!, whole.hosts[target]!));
      }
      for (const service of Object.values(whole.services)) {
        const fromMine = mine.services[service.name]!.instances.map((i) => addressesSeenBy(mine.hosts[name]!, i));
        expect(fromMine, `${name} resolving ${service.name}`).toEqual(service.instances.map((i) => addressesSeenBy(whole.hosts[name]!, i)));
      }
      for (const credential of whole.hosts[name]!.credentials) {
        for (const kind of kindsOf(whole.credentials[credential]!)) {
          expect(entitledSans(mine, mine.credentials[credential]!, mine.hosts[name]!, kind)).toEqual(entitledSans(whole, whole.credentials[credential]!, whole.hosts[name]!, kind));
        }
      }
      expect(renderHost(mine, name, { keysDir }), `${name} overlay files`).toEqual(renderHost(whole, name, { keysDir }));
    }
  });

  it('is what compile --host prints, and names an unknown host with its code', () => {
    const printed = meshplane(['compile', ...example, '--host', 'host1']);
    expect(printed.status).toBe(0);
    expect(JSON.parse(printed.stdout)).toEqual(JSON.parse(JSON.stringify(topologyForHost(whole, 'host1'))));
    const unknown = meshplane(['compile', ...example, '--host', 'host9']);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('TOPOLOGY_ERR_UNKNOWN_HOST');
  });
});
