/**
 * The Topology contract (src/topology/validate.ts), checked when a topology
 * is read: every class of problem is shown on a compiled example changed in
 * one place, named by file and JSON path with a stable code, and every
 * topology compile writes (the example, the test fixtures, each host's own
 * Topology) passes.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileTopology, loadConfig } from '../src/config/index.js';
import { MeshplaneError } from '../src/errors.js';
import { serializeTopology, topologyForHost } from '../src/topology/index.js';
import { parseTopology } from '../src/topology/testing.js';
import type { Topology } from '../src/topology/index.js';
import { FIXTURES, REPO_ROOT, tempDir } from './support/run.js';

const compile = (services: string, inventory: string): Topology => compileTopology(loadConfig({ services, inventory }));
const example = compile(join(REPO_ROOT, 'services.yml.example'), join(REPO_ROOT, 'hosts.yml.example'));
const scratch = tempDir('topology-validate');
afterAll(() => scratch.remove());

type Json = Record<string, unknown>;

/** The example as plain JSON, changed by `edit`. */
function edited(edit: (t: Json) => void): Json {
  const copy = JSON.parse(serializeTopology(example)) as Json;
  edit(copy);
  return copy;
}

/** The object at a dotted path (`services.web.instances.1`). */
function at(root: Json, path: string): Json {
  let node: unknown = root;
  for (const key of path.split('.')) node = (node as Json)[key];
  return node as Json;
}

/** The error parseTopology throws for `value`: its code and message lines. */
function refusal(value: Json): { code: string; lines: string[] } {
  try {
    parseTopology(JSON.stringify(value), 'topology.json');
  } catch (err) {
    expect(err).toBeInstanceOf(MeshplaneError);
    return { code: (err as MeshplaneError).code, lines: (err as Error).message.split('\n') };
  }
  throw new Error('the topology was accepted');
}

/** Changing one thing yields exactly the expected problem lines (besides the closing hint). */
function expectProblems(edit: (t: Json) => void, code: string, lines: string[]): void {
  const result = refusal(edited(edit));
  expect(result.lines.slice(0, -1)).toEqual(lines.map((line) => `topology.json: ${line}`));
  expect(result.lines.at(-1)).toContain('compile it again');
  expect(result.code).toBe(code);
}

describe('the topology contract: shapes', () => {
  it('passes the compiled example unchanged', () => {
    expect(parseTopology(serializeTopology(example), 'topology.json')).toEqual(example);
  });

  it('wrong types', () => {
    expectProblems((t) => (at(t, 'services.web').ports = ['8443']), 'TOPOLOGY_ERR_FORMAT', ['services.web.ports[0]: expected an integer 1..65535, found "8443"']);
    expectProblems((t) => (at(t, 'hosts.host1').groups = 'frontend'), 'TOPOLOGY_ERR_FORMAT', ['hosts.host1.groups: expected a list, found "frontend"']);
    expectProblems((t) => (at(t, 'credentials.db').enable_client = 'yes'), 'TOPOLOGY_ERR_FORMAT', ['credentials.db.enable_client: expected true or false, found "yes"']);
    expectProblems((t) => (t.hosts = []), 'TOPOLOGY_ERR_FORMAT', ['hosts: expected an object, found []']);
  });

  it('udp_ports: optional, a non-empty subset of ports', () => {
    const withUdp = edited((t) => (at(t, 'services.db').udp_ports = [(at(t, 'services.db').ports as number[])[0]]));
    expect(parseTopology(JSON.stringify(withUdp), 'topology.json').services.db?.udp_ports).toHaveLength(1);
    expectProblems((t) => (at(t, 'services.db').udp_ports = [1]), 'TOPOLOGY_ERR_FORMAT', ["services.db.udp_ports[0]: 1 is not one of the service's ports"]);
    expectProblems((t) => (at(t, 'services.db').udp_ports = []), 'TOPOLOGY_ERR_FORMAT', ['services.db.udp_ports: expected a non-empty list (leave udp_ports out when no port is UDP)']);
  });

  it('ranges', () => {
    expectProblems((t) => (at(t, 'overlays.0').port = 70000), 'TOPOLOGY_ERR_FORMAT', ['overlays[0].port: expected an integer 1..65535, found 70000']);
    expectProblems((t) => (at(t, 'services.web.gateway_endpoints.0').max_connections = 0), 'TOPOLOGY_ERR_FORMAT', [
      'services.web.gateway_endpoints[0].max_connections: expected an integer 1..10000000, found 0',
    ]);
    expectProblems((t) => (at(t, 'services.db').num_instances = 0), 'TOPOLOGY_ERR_FORMAT', ['services.db.num_instances: expected an integer 1..9007199254740991, found 0']);
  });

  it('addresses and networks in canonical form', () => {
    expectProblems((t) => (at(t, 'hosts.host3').ips = ['198.18.4.3', '2001:DB8:0::3']), 'TOPOLOGY_ERR_FORMAT', [
      'hosts.host3.ips[1]: address "2001:DB8:0::3" is not in canonical form (expected "2001:db8::3")',
    ]);
    for (const [written, canonical] of [
      ['2001:db8:0:0:0:0:0:3', '2001:db8::3'],
      ['2001:db8::0:3', '2001:db8::3'],
      ['2001:0db8::3', '2001:db8::3'],
      ['2001:db8:0:0:1::3', '2001:db8::1:0:0:3'],
      ['::ffff:198.18.4.3', '::ffff:c612:403'],
      ['fe80::1:2:3:4:5:6', 'fe80:0:1:2:3:4:5:6'],
      ['0::1', '::1'],
    ]) {
      const result = refusal(edited((t) => (at(t, 'credentials.db').extra_san = [written])));
      expect(result.lines[0], written).toBe(`topology.json: credentials.db.extra_san[0]: address ${JSON.stringify(written)} is not in canonical form (expected ${JSON.stringify(canonical)})`);
    }
    expect(() => parseTopology(serializeTopology({ ...example, credentials: { ...example.credentials, db: { ...example.credentials.db!, extra_san: ['2001:db8::1:0:0:3', '::', '1::', '::1', 'fe80:0:1:2:3:4:5:6', '2001:db8:0:1:0:1:0:1'] } } }), 'x')).not.toThrow();
    expectProblems((t) => (at(t, 'hosts.host1').public_ips = ['host1.example']), 'TOPOLOGY_ERR_FORMAT', ['hosts.host1.public_ips[0]: expected an IP address, found "host1.example"']);
    expectProblems((t) => (at(t, 'overlays.0').network = '100.64.0.9/24'), 'TOPOLOGY_ERR_FORMAT', ['overlays[0].network: network "100.64.0.9/24" is not in canonical form (expected "100.64.0.0/24")']);
    expectProblems((t) => (at(t, 'overlays.1').network = '100.64.1.0'), 'TOPOLOGY_ERR_FORMAT', ['overlays[1].network: expected a CIDR network, found "100.64.1.0"']);
  });

  it('enums and driver-specific fields', () => {
    expectProblems((t) => (at(t, 'services.web.gateway_endpoints.0').mode = 'udp'), 'TOPOLOGY_ERR_FORMAT', [
      'services.web.gateway_endpoints[0].mode: expected one of tls, http, connect, tcp, found "udp"',
    ]);
    expectProblems((t) => (at(t, 'overlays.0').driver = 'ipsec'), 'TOPOLOGY_ERR_FORMAT', ['overlays[0].driver: expected one of tinc, wireguard, found "ipsec"']);
    expectProblems((t) => (at(t, 'overlays.1').cipher = 'aes-256-cbc'), 'TOPOLOGY_ERR_FORMAT', ['overlays[1].cipher: expected null (a wireguard overlay), found "aes-256-cbc"']);
  });

  it('nullables', () => {
    expectProblems((t) => (at(t, 'overlays.0').mtu = '1400'), 'TOPOLOGY_ERR_FORMAT', ['overlays[0].mtu: expected an integer 576..65535, found "1400"']);
    expectProblems((t) => (at(t, 'hosts.host2').shard = 7), 'TOPOLOGY_ERR_FORMAT', ['hosts.host2.shard: expected a shard name, found 7']);
  });

  it('sorted and unique lists, keys matching names', () => {
    expectProblems((t) => (at(t, 'credentials.db').hosts as string[]).reverse(), 'TOPOLOGY_ERR_FORMAT', ['credentials.db.hosts[1]: not sorted: "host2" comes after "host3"']);
    expectProblems((t) => (at(t, 'services.db').ports = [5432, 5432]), 'TOPOLOGY_ERR_FORMAT', ['services.db.ports[1]: "5432" is listed twice']);
    expectProblems((t) => (at(t, 'hosts.host4').name = 'host5'), 'TOPOLOGY_ERR_FORMAT', ['hosts.host4.name: "host5" differs from its key "host4"']);
  });

  it('missing and unknown fields, and allow_no_services only true', () => {
    expectProblems((t) => delete at(t, 'services.web').master, 'TOPOLOGY_ERR_FORMAT', ['services.web.master: missing']);
    expectProblems((t) => (at(t, 'hosts.host1').ip = '198.18.4.1'), 'TOPOLOGY_ERR_FORMAT', ['hosts.host1.ip: not a field of the topology format']);
    expectProblems((t) => (t.allow_no_services = false), 'TOPOLOGY_ERR_FORMAT', ['allow_no_services: expected true (or no key at all), found false']);
    expectProblems((t) => delete t.domain, 'TOPOLOGY_ERR_FORMAT', ['domain: missing']);
  });

  it('pki: optional (older topologies have none), complete when present, within bounds', () => {
    expect(example.pki).toBeDefined();
    expect(parseTopology(JSON.stringify(edited((t) => delete t.pki)), 'topology.json').pki).toBeUndefined();
    expectProblems((t) => delete at(t, 'pki').crl_refresh_ms, 'TOPOLOGY_ERR_FORMAT', ['pki.crl_refresh_ms: missing']);
    expectProblems((t) => (at(t, 'pki').leaf_lifetime_ms = 1000), 'TOPOLOGY_ERR_FORMAT', ['pki.leaf_lifetime_ms: expected an integer 3600000..34300800000, found 1000']);
    expectProblems((t) => (at(t, 'pki').crl_lifetime = 1000), 'TOPOLOGY_ERR_FORMAT', ['pki.crl_lifetime: not a field of the topology format']);
    expectProblems((t) => (at(t, 'pki').crl_refresh_ms = 2 * 86_400_000), 'TOPOLOGY_ERR_INCONSISTENT', ['pki.crl_refresh_ms: 2d is more than a sixth of pki.crl_lifetime_ms (7d): a host that misses two fetches would hold an expired CRL']);
  });

  it('gateway endpoint fields', () => {
    expectProblems((t) => (at(t, 'services.web.gateway_endpoints.0').hostnames = []), 'TOPOLOGY_ERR_FORMAT', [
      'services.web.gateway_endpoints[0].hostnames: empty, but a "tls" endpoint routes by hostname (only mode tcp routes by port alone)',
    ]);
    expectProblems((t) => (at(t, 'services.web.gateway_endpoints.0.health').timeout_ms = 9000), 'TOPOLOGY_ERR_FORMAT', [
      'services.web.gateway_endpoints[0].health.timeout_ms: 9000 is longer than interval_ms 5000',
    ]);
    expectProblems((t) => (at(t, 'services.web.gateway_endpoints.0.health').path = 'health'), 'TOPOLOGY_ERR_FORMAT', [
      'services.web.gateway_endpoints[0].health.path: expected a path starting with "/", found "health"',
    ]);
  });
});

describe('the topology contract: cross-references', () => {
  it('instance hosts exist', () => {
    const first = example.services.db!.instances[1]!.host;
    const result = refusal(edited((t) => (at(t, 'services.db.instances.1').host = 'zz9')));
    expect(result.code).toBe('TOPOLOGY_ERR_INCONSISTENT');
    expect(result.lines).toContain('topology.json: services.db.instances[1].host: "zz9" is not a host');
    // The host that lost its instance now lists a service it does not run.
    expect(result.lines).toContain(`topology.json: hosts.${first}.services: lists "db": it must be the services with an instance on this host`);
  });

  it("an instance repeats its host's addresses and shard", () => {
    expectProblems((t) => (at(t, 'services.db.instances.0').shard = 'b'), 'TOPOLOGY_ERR_INCONSISTENT', [
      `services.db.instances[0].shard: "b" differs from host ${example.services.db!.instances[0]!.host}'s shard ${JSON.stringify(example.services.db!.instances[0]!.shard)}`,
    ]);
  });

  it("host.services, masters and credentials agree with the services", () => {
    const busy = Object.values(example.hosts).find((h) => h.services.length > 0)!;
    expectProblems((t) => (at(t, `hosts.${busy.name}`).services = []), 'TOPOLOGY_ERR_INCONSISTENT', [
      `hosts.${busy.name}.services: lacks ${busy.services.map((s) => JSON.stringify(s)).join(', ')}: it must be the services with an instance on this host`,
    ]);
    const master = example.services.db!.master!;
    expectProblems((t) => (at(t, `hosts.${master}`).masters = []), 'TOPOLOGY_ERR_INCONSISTENT', [`hosts.${master}.masters: lacks "db": it must be the services whose master this host is`]);
    expectProblems((t) => (at(t, 'hosts.host4').credentials as string[]).push('zzz'), 'TOPOLOGY_ERR_INCONSISTENT', ['hosts.host4.credentials: lists "zzz": it must be the credentials of this host\'s services']);
  });

  it('credential.services and hosts agree with the services', () => {
    expectProblems((t) => (at(t, 'credentials.db').services = ['db']), 'TOPOLOGY_ERR_INCONSISTENT', ['credentials.db.services: lacks "db-backup": it must be the services that list this credential']);
    expectProblems((t) => (at(t, 'credentials.db').hosts = ['host2']), 'TOPOLOGY_ERR_INCONSISTENT', ['credentials.db.hosts: lacks "host3": it must be the hosts running those services']);
    expectProblems((t) => (at(t, 'services.web').credentials = ['web', 'nope']), 'TOPOLOGY_ERR_INCONSISTENT', ['services.web.credentials[1]: "nope" is not a credential']);
  });

  it('overlay members have an address on it, inside its network', () => {
    expectProblems((t) => (at(t, 'overlays.0').hosts as string[]).push('host4'), 'TOPOLOGY_ERR_INCONSISTENT', ['overlays[0].hosts[3]: host host4 has no address on overlay vpn0']);
    const outside = (t: Json): void => {
      at(t, 'hosts.host2.overlays').vpn0 = '100.64.9.2';
      for (const service of Object.values(at(t, 'services'))) for (const instance of (service as Json).instances as Json[]) if (instance.host === 'host2') (instance.overlays as Json).vpn0 = '100.64.9.2';
    };
    expectProblems(outside, 'TOPOLOGY_ERR_INCONSISTENT', ["hosts.host2.overlays.vpn0: address 100.64.9.2 is outside the overlay's network 100.64.0.0/24"]);
    const taken = example.hosts.host1!.ips[0]!;
    const duplicate = (t: Json): void => {
      for (const holder of [at(t, 'hosts.host3'), ...Object.values(at(t, 'services')).flatMap((s) => ((s as Json).instances as Json[]).filter((i) => i.host === 'host3'))]) {
        holder.ips = [taken];
        holder.public_ips = [taken];
      }
    };
    expectProblems(duplicate, 'TOPOLOGY_ERR_INCONSISTENT', [`hosts.host3.ips[0]: address ${taken} is also host host1's`, `hosts.host3.public_ips[0]: address ${taken} is also host host1's`]);
  });

  it('service.master is an instance host, schedule_with names a service', () => {
    expectProblems((t) => (at(t, 'services.db').master = 'host4'), 'TOPOLOGY_ERR_INCONSISTENT', [
      'services.db.master: "host4" is not a host with an instance of the service',
      `hosts.${example.services.db!.master!}.masters: lists "db": it must be the services whose master this host is`,
      'hosts.host4.masters: lacks "db": it must be the services whose master this host is',
    ].sort(byHostsLast));
    expectProblems((t) => (at(t, 'services.db-backup').schedule_with = 'dbx'), 'TOPOLOGY_ERR_INCONSISTENT', ['services.db-backup.schedule_with: "dbx" is not another service']);
  });

  it('reports up to 20 problems at once, then says there are more', () => {
    const result = refusal(edited((t) => (at(t, 'hosts.host1').groups = Array.from({ length: 30 }, (_, i) => i))));
    expect(result.lines).toHaveLength(22);
    expect(result.lines[19]).toBe('topology.json: hosts.host1.groups[19]: expected a string, found 19');
    expect(result.lines[20]).toBe('topology.json: ... more problems after these 20');
  });
});

describe('the topology contract: what compile writes passes', () => {
  it("each host's own Topology", () => {
    for (const host of Object.keys(example.hosts)) {
      const mine = topologyForHost(example, host);
      expect(parseTopology(serializeTopology(mine), `${host}.json`)).toEqual(mine);
    }
  });

  it('the test fixtures', () => {
    const pairs = [
      ['test/overlay/fixtures/golden/services.yml', 'test/overlay/fixtures/golden/hosts.yml'],
      ['test/overlay/fixtures/lab/services.yml', 'test/overlay/fixtures/lab/hosts.yml'],
      ['test/overlay/fixtures/lab/services.yml', 'test/overlay/fixtures/lab/rogue-hosts.yml'],
      ['test/ansible/fixtures/services.yml', 'test/ansible/fixtures/hosts.yml'],
    ];
    for (const [services, inventory] of pairs) {
      const topology = compile(join(REPO_ROOT, services!), join(REPO_ROOT, inventory!));
      expect(parseTopology(serializeTopology(topology), inventory!)).toEqual(topology);
    }
    // The inventory fixtures, as a mesh without services.
    const empty = join(scratch.path, 'services.yml');
    writeFileSync(empty, 'allow_no_services: true\n');
    const inventories = join(FIXTURES, 'inventories');
    let read = 0;
    for (const name of [...readdirSync(inventories).filter((f) => f.endsWith('.yml')), 'with-vars-dirs/hosts.yml']) {
      const config = loadConfig({ services: empty, inventory: join(inventories, name) });
      if (!config.ok) continue; // some fixtures are inventories only (no addresses)
      const topology = compileTopology(config);
      expect(parseTopology(serializeTopology(topology), name)).toEqual(topology);
      read++;
    }
    expect(read).toBeGreaterThan(0);
  });
});

/** The service's own problem first, then the hosts' (the order the validator walks). */
function byHostsLast(a: string, b: string): number {
  const rank = (s: string): number => (s.startsWith('services.') ? 0 : 1);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}
