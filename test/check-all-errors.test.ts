/**
 * `meshplane check` promises every error of inputs that parse in one run:
 * scheduling errors (too many instances, master groups, schedule_with) come
 * with the key and value errors, not after them. And the gateway's port
 * clashes, which used to pass check and fail at start with EADDRINUSE, are
 * each refused at the endpoint's `port`. The built CLI, real files.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { codes, load, removeTempInputs, where } from './support/inputs.js';
import { meshplane, tempDir } from './support/run.js';
import { DEFAULT_REGISTRATION_PORT, frontFamily, gatewayPortConflicts, registrationPort } from '../src/topology/index.js';
import { agentSettings } from '../src/agent/index.js';
import type { Topology } from '../src/topology/index.js';

afterAll(removeTempInputs);

/** A gateway group of one host that also runs `extra`, a tinc and a wireguard overlay it joins. */
const INVENTORY = `all:
  vars:
    net_overlays:
      - {name: vpn0, network: 100.64.0.0/24, port: 655}
      - {name: wg0, network: 100.64.1.0/24, driver: wireguard, port: 51820}
  children:
    gateway:
      hosts:
        gw1: {ip: 198.18.0.1, ip_vpn0: 100.64.0.1, ip_wg0: 100.64.1.1}
    extra:
      hosts:
        gw1: {}
        e1: {ip: 198.18.0.2}
    web:
      hosts:
        w1: {ip: 198.18.0.3}
        w2: {ip: 198.18.0.4}
`;

/** services.yml lines: a gateway service (ports 9443, 9444) and `web` with the given endpoint lines. */
function services(endpoints: string[], more: string[] = []): string {
  return [
    'gateway:',
    '  scheduling_group: gateway',
    '  ports: [9443, 9444]',
    'web:',
    '  scheduling_group: web',
    '  ports: [8080]',
    '  service_credentials: [{name: web}]',
    '  gateway_endpoints:',
    ...endpoints.map((e) => `    - ${e}`),
    ...more,
    '',
  ].join('\n');
}

const clash = (endpoints: string[], more: string[] = []) => load({ 'hosts.yml': INVENTORY, 'services.yml': services(endpoints, more) });

describe('meshplane check reports every error at once', () => {
  it('a wrong key, too many instances and an endpoint on the registration port, in one run with file:line:col and code', () => {
    const dir = tempDir('all-errors');
    try {
      writeFileSync(join(dir.path, 'hosts.yml'), INVENTORY);
      writeFileSync(
        join(dir.path, 'services.yml'),
        [
          'gateway:',
          '  scheduling_group: gateway',
          '  ports: [9443]',
          'web:',
          '  scheduling_group: web',
          '  num_instances: 5',
          '  dns_max_answer: 2',
          '  service_credentials: [{name: web}]',
          '  gateway_endpoints:',
          '    - {name: site, hostnames: [www.example.com], port: 9443}',
          '',
        ].join('\n'),
      );
      const result = meshplane(['check', '-s', join(dir.path, 'services.yml'), '-i', join(dir.path, 'hosts.yml')]);
      expect(result.status).toBe(1);
      expect(result.stdout).toBe('');
      const lines = result.stderr.trim().split('\n');
      const file = join(dir.path, 'services.yml');
      expect(lines.map((l) => l.split(' ').slice(0, 4).join(' '))).toEqual([
        `${file}:6:18: error CONFIG_ERR_TOO_MANY_INSTANCES web.num_instances:`,
        `${file}:7:3: error CONFIG_ERR_UNKNOWN_KEY web.dns_max_answer:`,
        `${file}:10:56: error CONFIG_ERR_GATEWAY_PORT_CLASH web.gateway_endpoints[0].port:`,
        '3 error(s), 0 warning(s)',
      ]);
      expect(lines[2]).toContain("front port 9443, which on the gateway hosts is already the gateway's registration port");
    } finally {
      dir.remove();
    }
  });

  it('a service with a bad name is still checked: its unknown key and its instance count come with the name error', () => {
    const config = load({ 'services.yml': 'Web:\n  scheduling_group: web\n  num_instances: 3\n  colour: blue\n' });
    expect(codes(config)).toEqual(['CONFIG_ERR_INVALID_NAME', 'CONFIG_ERR_TOO_MANY_INSTANCES', 'CONFIG_ERR_UNKNOWN_KEY']);
    expect(where(config, 'CONFIG_ERR_TOO_MANY_INSTANCES')).toEqual(['services.yml:3:18 Web.num_instances']);
  });

  it('an unknown scheduling group does not hide an unknown master group', () => {
    const config = load({ 'services.yml': 'db:\n  scheduling_groups: [dbb]\n  master_election: true\n  master_scheduling_group: nosuch\n' });
    expect(where(config, 'CONFIG_ERR_UNKNOWN_GROUP')).toEqual(['services.yml:2:23 db.scheduling_groups', 'services.yml:4:28 db.master_scheduling_group']);
  });

  it('checks the master group of a schedule_with service against where its target runs', () => {
    const config = load({
      'services.yml': [
        'db:',
        '  scheduling_group: db',
        'backup:',
        '  schedule_with: db',
        '  master_election: true',
        '  master_scheduling_group: web',
        'other:',
        '  schedule_with: db',
        '  master_election: true',
        '  master_scheduling_group: wbe',
        'fine:',
        '  schedule_with: db',
        '  master_election: true',
        '  master_scheduling_group: db',
        '',
      ].join('\n'),
    });
    expect(where(config, 'CONFIG_ERR_MASTER_GROUP_NO_OVERLAP')).toEqual(['services.yml:6:28 backup.master_scheduling_group']);
    expect(config.diagnostics.errors.find((d) => d.code === 'CONFIG_ERR_MASTER_GROUP_NO_OVERLAP')?.message).toBe('no host of group "web" can run "backup" (it runs where "db" runs)');
    expect(where(config, 'CONFIG_ERR_UNKNOWN_GROUP')).toEqual(['services.yml:10:28 other.master_scheduling_group']);
  });
});

describe('a master the placement cannot reach (CONFIG_ERR_MASTER_NOT_PLACED)', () => {
  const inventory = 'all:\n  children:\n    web:\n      hosts:\n        h1: {ip: 198.18.0.1}\n        h2: {ip: 198.18.0.2}\n    left:\n      hosts:\n        h1:\n    right:\n      hosts:\n        h2:\n';
  const withMasterGroup = (group: string, count: string) =>
    load({ 'hosts.yml': inventory, 'services.yml': ['db:', '  scheduling_group: web', `  num_instances: ${count}`, 'backup:', '  schedule_with: db', '  master_election: true', `  master_scheduling_group: ${group}`, ''].join('\n') });

  it('refuses the master group that misses the one host db is placed on, and accepts the other', async () => {
    const [left, right] = [withMasterGroup('left', '1'), withMasterGroup('right', '1')];
    // db runs on exactly one of h1 (left) and h2 (right): exactly one of the two groups misses it.
    const refused = [left, right].filter((c) => !c.ok);
    expect(refused).toHaveLength(1);
    expect(where(refused[0]!, 'CONFIG_ERR_MASTER_NOT_PLACED')).toEqual(['services.yml:7:28 backup.master_scheduling_group']);
    expect(refused[0]!.diagnostics.errors[0]?.message).toMatch(/^"backup" runs where "db" is placed \(h[12]\), and none of those hosts is in group "(left|right)": no master could be elected$/);
    const { compileTopology } = await import('../src/config/index.js');
    const accepted = [left, right].find((c) => c.ok)!;
    const topology = compileTopology(accepted);
    expect(topology.services['backup']?.master).toBe(topology.services['db']?.instances[0]?.host);
  });

  it('accepts either group when db runs on every candidate', () => {
    expect(withMasterGroup('left', 'all').diagnostics.items).toEqual([]);
    expect(withMasterGroup('right', 'all').diagnostics.items).toEqual([]);
  });
});

describe('gateway port clashes (CONFIG_ERR_GATEWAY_PORT_CLASH / _MODE), at the endpoint port', () => {
  it('accepts fronts on free ports, http and connect sharing one, and a front on a wireguard (UDP-only) port', () => {
    const config = clash([
      '{name: a, hostnames: [a.example.com], port: 10443}',
      '{name: b, hostnames: [b.example.com], port: 10080, mode: http}',
      '{name: c, hostnames: [c.example.com], port: 10080, mode: connect}',
      '{name: d, hostnames: [d.example.com], port: 51820}',
    ]);
    expect(config.diagnostics.items).toEqual([]);
  });

  it('refuses a front on the registration port (the gateway service first port)', () => {
    const config = clash(['{name: a, hostnames: [a.example.com], port: 9443}']);
    expect(where(config, 'CONFIG_ERR_GATEWAY_PORT_CLASH')).toEqual(['services.yml:9:51 web.gateway_endpoints[0].port']);
  });

  it('refuses a front on the default registration port 8443 when there is no gateway service', () => {
    const config = load({
      'hosts.yml': INVENTORY,
      'services.yml': 'web:\n  scheduling_group: web\n  service_credentials: [{name: web}]\n  gateway_endpoints:\n    - {name: a, hostnames: [a.example.com], port: 8443}\n',
    });
    expect(where(config, 'CONFIG_ERR_GATEWAY_PORT_CLASH')).toEqual(['services.yml:5:51 web.gateway_endpoints[0].port']);
  });

  it('refuses a front on another port of the gateway service, and on the port of a service that can run on a gateway host', () => {
    const config = clash(['{name: a, hostnames: [a.example.com], port: 9444}', '{name: b, hostnames: [b.example.com], port: 7000}'], ['extra:', '  scheduling_group: extra', '  num_instances: 1', '  ports: [7000]']);
    expect(where(config, 'CONFIG_ERR_GATEWAY_PORT_CLASH')).toEqual(['services.yml:9:51 web.gateway_endpoints[0].port', 'services.yml:10:51 web.gateway_endpoints[1].port']);
    const messages = config.diagnostics.errors.map((d) => d.message);
    expect(messages[0]).toContain('service "gateway", which can run on a gateway host');
    expect(messages[1]).toContain('service "extra", which can run on a gateway host');
  });

  it('accepts a front on the port of a service that cannot run on a gateway host', () => {
    // web's own port 8080: web runs on w1/w2, never on gw1.
    expect(clash(['{name: a, hostnames: [a.example.com], port: 8080}']).diagnostics.items).toEqual([]);
  });

  it('refuses a front on the port of a tinc overlay a gateway host joins', () => {
    const config = clash(['{name: a, hostnames: [a.example.com], port: 655}']);
    expect(where(config, 'CONFIG_ERR_GATEWAY_PORT_CLASH')).toEqual(['services.yml:9:51 web.gateway_endpoints[0].port']);
    expect(config.diagnostics.errors[0]?.message).toContain('tinc overlay "vpn0"');
  });

  it('refuses tls and http fronts on one port, and a tcp endpoint that shares its port', () => {
    const config = clash([
      '{name: a, hostnames: [a.example.com], port: 10443}',
      '{name: b, hostnames: [b.example.com], port: 10443, mode: http}',
      '{name: c, port: 7001, mode: tcp}',
      '{name: d, hostnames: [d.example.com], port: 7001, mode: connect}',
    ]);
    expect(where(config, 'CONFIG_ERR_GATEWAY_PORT_MODE')).toEqual(['services.yml:10:51 web.gateway_endpoints[1].port', 'services.yml:12:51 web.gateway_endpoints[3].port']);
    expect(codes(config)).toEqual(['CONFIG_ERR_GATEWAY_PORT_MODE', 'CONFIG_ERR_GATEWAY_PORT_MODE']);
  });

  it('points at the endpoint when the mode default port clashes', () => {
    const config = load({
      'hosts.yml': INVENTORY,
      'services.yml': services(['{name: a, hostnames: [a.example.com]}'], ['extra:', '  scheduling_group: extra', '  ports: [443]']),
    });
    expect(where(config, 'CONFIG_ERR_GATEWAY_PORT_CLASH')).toEqual(['services.yml:9:7 web.gateway_endpoints[0].port']);
    expect(config.diagnostics.errors[0]?.message).toContain('front port 443 (the tls default)');
  });
});

describe('gateway-ports.ts, the one home of the rules', () => {
  const topology = (gatewayPorts: number[] | null): Pick<Topology, 'services'> =>
    ({ services: gatewayPorts === null ? {} : { gateway: { ports: gatewayPorts } } }) as unknown as Pick<Topology, 'services'>;

  it('registration port: the gateway service first port, else 8443; the agent uses the same rule', () => {
    expect(registrationPort(topology([9443, 9444]))).toBe(9443);
    expect(registrationPort(topology([]))).toBe(DEFAULT_REGISTRATION_PORT);
    expect(registrationPort(topology(null))).toBe(8443);
    const full = {
      domain: 'mesh.internal',
      hosts: { h1: { services: ['web'] } },
      services: { gateway: { ports: [9443] }, web: { ports: [80], instances: [{ host: 'h1' }], credentials: ['web'], gateway_endpoints: [{ name: 'a', proxy_protocol: 'none' }] } },
      credentials: { web: { enable_client: true } },
    } as unknown as Topology;
    expect(agentSettings(full, { host: 'h1', credentialsRoot: '/c', gatewayService: 'gateway' }).gatewayPort).toBe(9443);
  });

  it('front family: http and connect share one, tls and tcp are their own', () => {
    expect((['tls', 'http', 'connect', 'tcp'] as const).map(frontFamily)).toEqual(['tls', 'http', 'http', 'tcp']);
  });

  it('names both owners of each conflict', () => {
    const conflicts = gatewayPortConflicts({
      endpoints: [
        { service: 'a', endpoint: 'x', port: 443, mode: 'tls' },
        { service: 'b', endpoint: 'y', port: 443, mode: 'tcp' },
        { service: 'b', endpoint: 'z', port: 655, mode: 'http' },
        { service: 'b', endpoint: 'w', port: 51820, mode: 'http' },
      ],
      registrationPort: 8443,
      services: [],
      overlays: [
        { name: 'vpn0', port: 655, driver: 'tinc' },
        { name: 'wg0', port: 51820, driver: 'wireguard' },
      ],
    });
    expect(conflicts).toEqual([
      { port: 443, kind: 'tcp', endpoint: { service: 'b', endpoint: 'y', port: 443, mode: 'tcp' }, other: { kind: 'endpoint', service: 'a', endpoint: 'x', mode: 'tls' } },
      { port: 655, kind: 'overlay', endpoint: { service: 'b', endpoint: 'z', port: 655, mode: 'http' }, other: { kind: 'overlay', overlay: 'vpn0', driver: 'tinc' } },
    ]);
  });
});
