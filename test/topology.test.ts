/**
 * The compiled Topology: what every later component reads. Built from the
 * shipped example, checked for content, determinism and the JSON round trip.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileTopology, loadConfig } from '../src/config/index.js';
import { addressesSeenBy, readTopology, serializeTopology, viewKey, writeTopology } from '../src/topology/index.js';
import { parseTopology } from '../src/topology/testing.js';
import type { Topology } from '../src/topology/index.js';
import { load, removeTempInputs } from './support/inputs.js';
import { REPO_ROOT, tempDir } from './support/run.js';

const example = (): Topology =>
  compileTopology(loadConfig({ services: join(REPO_ROOT, 'services.yml.example'), inventory: join(REPO_ROOT, 'hosts.yml.example') }));

afterAll(removeTempInputs);

describe('compiled topology', () => {
  const topology = example();

  it('describes every service: instances with addresses, master, ports, credentials, endpoints', () => {
    const db = topology.services.db;
    expect(db?.instances.map((i) => i.host)).toHaveLength(2);
    expect(db?.instances.map((i) => i.host)).toContain(db?.master);
    expect(db?.ports).toEqual([5432]);
    expect(db?.credentials).toEqual(['db']);
    const host2 = db?.instances.find((i) => i.host === 'host2');
    if (host2 !== undefined) expect(host2).toMatchObject({ shard: 'a', ips: ['127.0.1.2'], overlays: { vpn0: '100.64.0.2', wg0: '100.64.1.2' } });
    const web = topology.services.web;
    expect(web?.gateway_endpoints[0]).toMatchObject({ name: 'site', mode: 'tls', port: 10443, proxy_protocol: 'v2', balance: 'least_load' });
    expect(web?.gateway_endpoints[0]?.health).toEqual({ enabled: true, path: '/health', interval_ms: 5000, timeout_ms: 2000, rise: 2, fall: 3 });
  });

  it('leaves disabled services out', () => {
    expect(topology.services.cache).toBeUndefined();
  });

  it('places schedule_with services on their target hosts', () => {
    expect(topology.services['db-backup']?.instances.map((i) => i.host)).toEqual(topology.services.db?.instances.map((i) => i.host));
  });

  it('describes every host: addresses, overlays, groups, services, masters, credentials', () => {
    const gw1 = topology.hosts.gw1;
    expect(gw1).toMatchObject({ fqdn: 'gw1.mesh.internal', ips: ['127.0.1.10'], public_ips: ['127.0.2.10'], overlays: { vpn0: '100.64.0.10' } });
    expect(gw1?.services).toEqual(['gateway']);
    expect(gw1?.credentials).toEqual(['gateway']);
    expect(topology.hosts.host2?.groups).toEqual(['all', 'backend', 'datacenter1']);
    const master = topology.services.db?.master as string;
    expect(topology.hosts[master]?.masters).toContain('db');
  });

  it('lists credentials with the services and hosts that need them', () => {
    const db = topology.credentials.db;
    expect(db?.services).toEqual(['db', 'db-backup']);
    expect(db?.hosts).toEqual(topology.services.db?.instances.map((i) => i.host));
    expect(topology.credentials.web?.extra_san).toEqual(['www.example.com']);
  });

  it('lists overlays with their members', () => {
    expect(topology.overlays.map((o) => [o.name, o.driver, o.port, o.hosts])).toEqual([
      ['vpn0', 'tinc', 655, ['gw1', 'host1', 'host2']],
      ['wg0', 'wireguard', 51820, ['host2', 'host3']],
    ]);
  });

  it('answers each viewer with the shared overlay address, lowest overlay first, else the plain address', () => {
    const { host1, host2, host3, host4 } = topology.hosts;
    expect(addressesSeenBy(host1!, host2!)).toEqual(['100.64.0.2']);
    expect(addressesSeenBy(host3!, host2!)).toEqual(['100.64.1.2']);
    expect(addressesSeenBy(host2!, host2!)).toEqual(['100.64.0.2']);
    expect(addressesSeenBy(host4!, host2!)).toEqual(['127.0.1.2']);
    expect(addressesSeenBy(null, host2!)).toEqual(['127.0.1.2']);
    expect(viewKey(host2!)).toBe('vpn0,wg0');
  });

  it('compiles to the same bytes every time', () => {
    expect(serializeTopology(example())).toBe(serializeTopology(topology));
  });

  it('does not depend on the order of keys in the input files', () => {
    const inventoryA = 'all:\n  children:\n    g:\n      hosts:\n        a: {ip: 198.18.0.1}\n        b: {ip: 198.18.0.2}\n        c: {ip: 198.18.0.3}\n';
    const inventoryB = 'all:\n  children:\n    g:\n      hosts:\n        c: {ip: 198.18.0.3}\n        a: {ip: 198.18.0.1}\n        b: {ip: 198.18.0.2}\n';
    const servicesA = 'x:\n  scheduling_group: g\n  num_instances: 1\ny:\n  num_instances: 2\n  scheduling_group: g\n  master_election: true\n';
    const servicesB = 'y:\n  master_election: true\n  scheduling_group: g\n  num_instances: 2\nx:\n  num_instances: 1\n  scheduling_group: g\n';
    const a = compileTopology(load({ 'hosts.yml': inventoryA, 'services.yml': servicesA }));
    const b = compileTopology(load({ 'hosts.yml': inventoryB, 'services.yml': servicesB }));
    expect(serializeTopology(a)).toBe(serializeTopology(b));
  });

  it('refuses to compile invalid inputs, with the diagnostics attached', () => {
    const config = load({ 'services.yml': 'web:\n  portz: [1]\n' });
    expect(() => compileTopology(config)).toThrowError(expect.objectContaining({ code: 'CONFIG_ERR_UNKNOWN_KEY' }) as Error);
  });
});

describe('topology JSON', () => {
  const dir = tempDir('topology');
  afterAll(() => dir.remove());

  it('round-trips through a file and comes back frozen', () => {
    const topology = example();
    const file = join(dir.path, 'state', 'topology.json');
    writeTopology(file, topology);
    const read = readTopology(file);
    expect(read).toEqual(topology);
    expect(Object.isFrozen(read.hosts.host1)).toBe(true);
    expect(() => {
      (read.hosts.host1!.ips as string[]).push('1.2.3.4');
    }).toThrow(TypeError);
  });

  it('refuses files that are not a topology, or another format version', () => {
    expect(() => parseTopology('{"hosts": {}}', 'x.json')).toThrowError(expect.objectContaining({ code: 'TOPOLOGY_ERR_FORMAT' }) as Error);
    expect(() => parseTopology('not json', 'x.json')).toThrowError(expect.objectContaining({ code: 'TOPOLOGY_ERR_FORMAT' }) as Error);
    expect(() => parseTopology('{"format_version": 99}', 'x.json')).toThrowError(expect.objectContaining({ code: 'TOPOLOGY_ERR_VERSION' }) as Error);
    const missing = join(dir.path, 'missing.json');
    expect(() => readTopology(missing)).toThrowError(expect.objectContaining({ code: 'TOPOLOGY_ERR_READ' }) as Error);
    writeFileSync(join(dir.path, 'empty.json'), '');
    expect(() => readTopology(join(dir.path, 'empty.json'))).toThrowError(expect.objectContaining({ code: 'TOPOLOGY_ERR_FORMAT' }) as Error);
  });
});
