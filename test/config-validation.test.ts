/**
 * Validation is a product feature: every mistake an operator can make in
 * services.yml or the inventory gets a stable code, the file, line and
 * column, the key, and what would be valid, and all of them come at once.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileTopology as compiled } from '../src/config/index.js';
import { BASIC_INVENTORY, codes, load, removeTempInputs, where } from './support/inputs.js';
import { meshplane, tempDir } from './support/run.js';

afterAll(removeTempInputs);

describe('services.yml validation', () => {
  it('accepts a valid file without diagnostics', () => {
    const config = load({ 'services.yml': 'web:\n  scheduling_group: web\n  num_instances: 2\n  ports: [80]\n' });
    expect(config.diagnostics.items).toEqual([]);
    expect(config.ok).toBe(true);
  });

  it('names bad service and credential names with the rule they break', () => {
    const config = load({
      'services.yml': ['Web_1:', '  ports: [80]', 'ok:', '  service_credentials:', '    - name: "bad.name"', ''].join('\n'),
    });
    expect(where(config, 'CONFIG_ERR_INVALID_NAME')).toEqual(['services.yml:1:1 Web_1', 'services.yml:5:13 ok.service_credentials[0].name']);
    const first = config.diagnostics.items.find((d) => d.code === 'CONFIG_ERR_INVALID_NAME');
    expect(first?.expected).toMatch(/lowercase letters, digits and "-"/);
  });

  it('reports unknown keys with a did-you-mean suggestion', () => {
    const config = load({ 'services.yml': 'web:\n  scheduling_group: web\n  num_instance: 2\n' });
    expect(where(config, 'CONFIG_ERR_UNKNOWN_KEY')).toEqual(['services.yml:3:3 web.num_instance']);
    expect(config.diagnostics.items[0]?.message).toContain('did you mean "num_instances"?');
  });

  it('reports wrong types with what was found and what is expected', () => {
    const config = load({
      'services.yml': ['web:', '  enabled: maybe', '  num_instances: two', '  ports: ["80"]', '  master_election: 1', ''].join('\n'),
    });
    expect(where(config, 'CONFIG_ERR_TYPE')).toEqual([
      'services.yml:2:12 web.enabled',
      'services.yml:3:18 web.num_instances',
      'services.yml:4:11 web.ports[0]',
      'services.yml:5:20 web.master_election',
    ]);
    const ports = config.diagnostics.items.find((d) => d.key === 'web.ports[0]');
    expect(ports).toMatchObject({ found: '"80"', expected: 'an integer from 1 to 65535' });
  });

  it('reads ports written N/tcp and N/udp, and names a bad protocol or number with file, line and column', () => {
    const good = load({ 'services.yml': 'dns:\n  ports: [5353, 853/tcp, 53/udp]\n' });
    expect(good.diagnostics.items).toEqual([]);
    expect(good.services.services.get('dns')).toMatchObject({ ports: [5353, 853, 53], udpPorts: [53] });
    const bad = load({ 'services.yml': 'dns:\n  ports: [53/sctp, 70000/udp, 53/udp, 53]\n' });
    expect(where(bad, 'CONFIG_ERR_VALUE')).toEqual(['services.yml:2:11 dns.ports[0]', 'services.yml:2:20 dns.ports[1]']);
    const sctp = bad.diagnostics.items.find((d) => d.key === 'dns.ports[0]');
    expect(sctp?.found).toBe('"53/sctp"');
    expect(sctp?.expected).toContain('53/udp');
    // 53/udp and 53 are one port twice: ports stay global, whatever the protocol.
    expect(where(bad, 'CONFIG_ERR_DUPLICATE_ENTRY')).toEqual(['services.yml:2:39 dns.ports[3]']);
  });

  it('refuses a port used by two services, and an overlay port', () => {
    const config = load({
      'hosts.yml': 'all:\n  vars:\n    net_overlays: [{name: vpn0, network: 100.64.0.0/24, port: 655}]\n  hosts:\n    h1: {ip: 198.18.0.1}\n',
      'services.yml': 'a:\n  ports: [80, 443]\nb:\n  ports: [443]\nc:\n  ports: [655]\n',
    });
    expect(where(config, 'CONFIG_ERR_PORT_CONFLICT')).toEqual(['services.yml:4:11 b.ports', 'services.yml:6:11 c.ports']);
    expect(config.diagnostics.items.map((d) => d.message).join('\n')).toContain('already used by service "a"');
  });

  it('refuses more instances than candidate hosts', () => {
    const config = load({ 'services.yml': 'web:\n  scheduling_group: web\n  num_instances: 3\n' });
    expect(where(config, 'CONFIG_ERR_TOO_MANY_INSTANCES')).toEqual(['services.yml:3:18 web.num_instances']);
    expect(config.diagnostics.items[0]?.expected).toBe('at most 2, or more hosts in the scheduling groups');
  });

  it('refuses unknown groups and suggests the closest one', () => {
    const config = load({ 'services.yml': 'web:\n  scheduling_groups: [web, dbb]\n' });
    expect(where(config, 'CONFIG_ERR_UNKNOWN_GROUP')).toEqual(['services.yml:2:28 web.scheduling_groups']);
    expect(config.diagnostics.items[0]?.message).toBe('no inventory group "dbb" (did you mean "db"?)');
  });

  it('refuses schedule_with to an unknown service and schedule_with cycles', () => {
    const config = load({
      'services.yml': ['a:', '  schedule_with: b', 'b:', '  schedule_with: a', 'c:', '  schedule_with: nope', 'd:', '  schedule_with: c', ''].join('\n'),
    });
    expect(where(config, 'CONFIG_ERR_SCHEDULE_CYCLE')).toEqual(['services.yml:2:18 a.schedule_with']);
    expect(config.diagnostics.items.find((d) => d.code === 'CONFIG_ERR_SCHEDULE_CYCLE')?.message).toBe('schedule_with cycle: a -> b -> a');
    expect(where(config, 'CONFIG_ERR_UNKNOWN_SERVICE')).toEqual(['services.yml:6:18 c.schedule_with']);
  });

  it('refuses scheduling keys beside schedule_with', () => {
    const config = load({ 'services.yml': 'a:\n  scheduling_group: web\nb:\n  schedule_with: a\n  num_instances: 1\n' });
    expect(where(config, 'CONFIG_ERR_CONFLICTING_KEYS')).toEqual(['services.yml:5:18 b.num_instances']);
  });

  it('refuses a master group that shares no host with the scheduling groups', () => {
    const config = load({
      'services.yml': 'web:\n  scheduling_group: web\n  master_election: true\n  master_scheduling_group: db\n',
    });
    expect(where(config, 'CONFIG_ERR_MASTER_GROUP_NO_OVERLAP')).toEqual(['services.yml:4:28 web.master_scheduling_group']);
  });

  it('refuses a master group without master election', () => {
    const config = load({ 'services.yml': 'web:\n  master_scheduling_group: web\n' });
    expect(where(config, 'CONFIG_ERR_REQUIRES_KEY')).toEqual(['services.yml:2:28 web.master_scheduling_group']);
  });

  it('refuses a credential defined twice with different settings', () => {
    const config = load({
      'services.yml': [
        'a:',
        '  service_credentials: [{name: shared}]',
        'b:',
        '  service_credentials:',
        '    - {name: shared, enable_server: false}',
        'c:',
        '  service_credentials: [{name: shared}]',
        '',
      ].join('\n'),
    });
    expect(where(config, 'CONFIG_ERR_CREDENTIAL_CONFLICT')).toEqual(['services.yml:5:7 b.service_credentials']);
  });

  it('refuses service names that collide with host names in DNS', () => {
    const config = load({ 'services.yml': 'h1:\n  ports: [80]\nweb:\n  master_election: true\nweb-master:\n  ports: [81]\n' });
    expect(where(config, 'CONFIG_ERR_NAME_COLLISION')).toEqual(['services.yml:1:1 h1', 'services.yml:4:20 web.master_election']);
  });

  it('checks gateway endpoints: modes, ports, clashing routes', () => {
    const config = load({
      'services.yml': [
        'a:',
        '  service_credentials: [{name: a}]',
        '  gateway_endpoints:',
        '    - {name: site, hostnames: [www.example.com], port: 443, mode: tls}',
        'b:',
        '  service_credentials: [{name: b}]',
        '  gateway_endpoints:',
        '    - {name: site, hostnames: [www.example.com], port: 443}',
        '    - {name: plain, hostnames: [b.example.com], port: 443, mode: http}',
        'c:',
        '  gateway_endpoints:',
        '    - {name: x, hostnames: [Bad_Host], health: {interval: 1s, timeout: 5s}, balance: fastest}',
        '',
      ].join('\n'),
    });
    expect(where(config, 'CONFIG_ERR_VALUE')).toEqual([
      'services.yml:12:29 c.gateway_endpoints[0].hostnames[0]',
      'services.yml:12:72 c.gateway_endpoints[0].health.timeout',
      'services.yml:12:86 c.gateway_endpoints[0].balance',
    ]);
    expect(where(config, 'CONFIG_ERR_GATEWAY_ROUTE_CONFLICT')).toEqual(['services.yml:8:7 b.gateway_endpoints']);
    expect(where(config, 'CONFIG_ERR_GATEWAY_PORT_MODE')).toEqual(['services.yml:9:55 b.gateway_endpoints[1].port']);
    expect(where(config, 'CONFIG_ERR_REQUIRES_KEY')).toEqual(['services.yml:12:5 c.gateway_endpoints']);
  });

  it('accepts balance: source as client_affinity', () => {
    const config = load({
      'services.yml': ['a:', '  service_credentials: [{name: a}]', '  gateway_endpoints:', '    - {name: site, hostnames: [www.example.com], port: 443, balance: source}', ''].join('\n'),
    });
    expect(codes(config)).toEqual([]);
    expect(config.services?.services.get('a')?.gatewayEndpoints[0]?.balance).toBe('client_affinity');
  });

  it('gives a tcp endpoint its own port and needs no hostnames for it; others need some', () => {
    const config = load({
      'services.yml': [
        'a:',
        '  service_credentials: [{name: a}]',
        '  gateway_endpoints:',
        '    - {name: raw, port: 7000, mode: tcp}',
        '    - {name: noport, mode: tcp}',
        '    - {name: empty, hostnames: [], port: 80, mode: http}',
        'b:',
        '  service_credentials: [{name: b}]',
        '  gateway_endpoints:',
        '    - {name: raw2, port: 7000, mode: tcp}',
        '',
      ].join('\n'),
    });
    expect(where(config, 'CONFIG_ERR_MISSING_KEY')).toEqual(['services.yml:5:7 a.gateway_endpoints[1].port']);
    expect(where(config, 'CONFIG_ERR_VALUE')).toEqual(['services.yml:6:32 a.gateway_endpoints[2].hostnames']);
    expect(where(config, 'CONFIG_ERR_GATEWAY_PORT_MODE')).toEqual(['services.yml:10:26 b.gateway_endpoints[0].port']);
  });

  it('reports YAML syntax errors with their position', () => {
    const config = load({ 'services.yml': 'web:\n  ports: [80\n  enabled: true\n' });
    expect(codes(config)).toContain('CONFIG_ERR_YAML_SYNTAX');
    expect(config.ok).toBe(false);
    expect(where(config, 'CONFIG_ERR_YAML_SYNTAX')[0]).toMatch(/^services\.yml:\d+:\d+ $/);
  });

  it('reports a duplicate key as a YAML error at the second key', () => {
    const config = load({ 'services.yml': 'web:\n  ports: [80]\nweb:\n  ports: [81]\n' });
    expect(where(config, 'CONFIG_ERR_YAML_SYNTAX')).toEqual(['services.yml:3:1 web']);
    expect(config.diagnostics.items[0]?.message).toBe('duplicate key "web" in this map (first at line 1)');
  });

  it('reports every error in one run, not the first only', () => {
    const config = load({
      'services.yml': ['web:', '  num_instance: 2', '  ports: [70000]', 'Bad:', '  enabled: true', 'db:', '  scheduling_group: nosuch', ''].join('\n'),
    });
    expect(codes(config)).toEqual(['CONFIG_ERR_INVALID_NAME', 'CONFIG_ERR_UNKNOWN_GROUP', 'CONFIG_ERR_UNKNOWN_KEY', 'CONFIG_ERR_VALUE']);
  });
});

describe('a services.yml that would serve nothing', () => {
  const NO_SERVICES = 'CONFIG_ERR_NO_SERVICES';

  it('refuses an empty, an all-comment and an anchors-only file, at line 1', () => {
    for (const text of ['', '\n\n', '# services.yml\n# (truncated by an editor)\n', '.base: &base\n  num_instances: 1\n', 'include: services.d/*.yml\n']) {
      const config = load({ 'services.yml': text, ...(text.startsWith('include') ? { 'services.d/.keep': '' } : {}) });
      expect(config.ok, JSON.stringify(text)).toBe(false);
      expect(where(config, NO_SERVICES), JSON.stringify(text)).toEqual(['services.yml:1:1 ']);
      expect(config.diagnostics.errors[0]?.expected).toContain('allow_no_services: true');
    }
  });

  it('refuses a file whose services are all disabled, at the first one', () => {
    const config = load({ 'services.yml': '# comment\nweb:\n  enabled: false\ndb:\n  enabled: false\n' });
    expect(where(config, NO_SERVICES)).toEqual(['services.yml:2:1 ']);
    expect(config.diagnostics.errors[0]?.message).toContain('every service is disabled');
  });

  it('accepts an empty mesh when allow_no_services: true says it is intended, and says so in the topology', async () => {
    const config = load({ 'services.yml': '# nothing runs here yet\nallow_no_services: true\n' });
    expect(config.diagnostics.items).toEqual([]);
    expect(config.services.allowNoServices).toBe(true);
    const { compileTopology } = await import('../src/config/index.js');
    expect(compileTopology(config)).toMatchObject({ services: {}, allow_no_services: true });
    // With services it changes nothing, and a normal topology does not carry the key at all.
    expect(load({ 'services.yml': 'allow_no_services: true\nweb: {}\n' }).ok).toBe(true);
    expect(Object.keys(compileTopology(load({ 'services.yml': 'web: {}\n' })))).not.toContain('allow_no_services');
    expect(where(load({ 'services.yml': 'allow_no_services: yes please\n' }), 'CONFIG_ERR_TYPE')).toEqual(['services.yml:1:20 allow_no_services']);
  });

  it('adds nothing when the file could not be read, or when the services in it are broken anyway', () => {
    expect(codes(load({}))).toEqual(['CONFIG_ERR_FILE_NOT_FOUND']);
    expect(codes(load({ 'services.yml': 'web: [\n' }))).toEqual(['CONFIG_ERR_YAML_SYNTAX']);
    expect(codes(load({ 'services.yml': 'Web_1:\n  enabled: false\n' }))).toEqual(['CONFIG_ERR_INVALID_NAME']);
  });

  it('makes meshplane check and compile fail with the code, file and line, for an empty and an all-comment file', () => {
    const dir = tempDir('no-services');
    try {
      writeFileSync(join(dir.path, 'hosts.yml'), BASIC_INVENTORY);
      for (const text of ['', '# all comments\n#web:\n#  ports: [80]\n']) {
        writeFileSync(join(dir.path, 'services.yml'), text);
        const check = meshplane(['check'], { cwd: dir.path });
        expect(check.status).toBe(1);
        expect(check.stdout).not.toContain('ok:');
        expect(check.stderr).toMatch(/services\.yml:1:1: error CONFIG_ERR_NO_SERVICES /);
        const compile = meshplane(['compile', '-o', join(dir.path, 'topology.json')], { cwd: dir.path });
        expect(compile.status).toBe(1);
        expect(compile.stderr).toContain('CONFIG_ERR_NO_SERVICES');
      }
      writeFileSync(join(dir.path, 'services.yml'), 'allow_no_services: true\n');
      const check = meshplane(['check'], { cwd: dir.path });
      expect(check.status).toBe(0);
      expect(check.stdout).toMatch(/^ok: 3 hosts, 0 services/);
    } finally {
      dir.remove();
    }
  });
});

describe('pki_policy: the mesh-wide lifetimes', () => {
  const WEB = 'web:\n  scheduling_group: web\n  service_credentials: [{name: web}]\n';

  it('compiles into the Topology as "pki", with the defaults filled in for keys not given', () => {
    const config = load({ 'services.yml': `pki_policy:\n  leaf_lifetime: 24h\n  crl_refresh: 10m\n${WEB}` });
    expect(config.diagnostics.items).toEqual([]);
    expect(compiled(config).pki).toEqual({ leaf_lifetime_ms: 86_400_000, crl_lifetime_ms: 7 * 86_400_000, crl_refresh_ms: 600_000 });
    // Without pki_policy the Topology has no "pki" (older topologies and golden files keep their bytes).
    expect('pki' in compiled(load({ 'services.yml': WEB }))).toBe(false);
    // It is no service: a policy alone serves nothing.
    expect(codes(load({ 'services.yml': 'pki_policy:\n  leaf_lifetime: 24h\n' }))).toEqual(['CONFIG_ERR_NO_SERVICES']);
  });

  it('names a duration it cannot read with file, line, column and key', () => {
    const config = load({ 'services.yml': `pki_policy:\n  leaf_lifetime: 90 days\n  crl_lifetime: 7\n  crl_refresh: 1w\n${WEB}` });
    expect(where(config, 'CONFIG_ERR_VALUE')).toEqual(['services.yml:2:18 pki_policy.leaf_lifetime', 'services.yml:3:17 pki_policy.crl_lifetime', 'services.yml:4:16 pki_policy.crl_refresh']);
    expect(config.diagnostics.items[0]).toMatchObject({ found: '"90 days"' });
    expect(config.diagnostics.items[0]?.expected).toMatch(/1h to 397d/);
  });

  it('refuses values out of range', () => {
    const config = load({ 'services.yml': `pki_policy:\n  leaf_lifetime: 30m\n  crl_lifetime: 400d\n  crl_refresh: 0s\n${WEB}` });
    expect(where(config, 'CONFIG_ERR_VALUE')).toEqual(['services.yml:2:18 pki_policy.leaf_lifetime', 'services.yml:3:17 pki_policy.crl_lifetime', 'services.yml:4:16 pki_policy.crl_refresh']);
    expect(config.diagnostics.items.find((d) => d.key === 'pki_policy.crl_lifetime')?.expected).toMatch(/1h to 365d/);
  });

  it('refuses a crl_refresh longer than a sixth of crl_lifetime (given, or the 7d default)', () => {
    const given = load({ 'services.yml': `pki_policy:\n  crl_lifetime: 1d\n  crl_refresh: 5h\n${WEB}` });
    expect(where(given, 'CONFIG_ERR_VALUE')).toEqual(['services.yml:3:16 pki_policy.crl_refresh']);
    expect(given.diagnostics.items[0]?.message).toMatch(/crl_refresh 5h is more than a sixth of crl_lifetime 1d/);
    expect(given.diagnostics.items[0]?.expected).toMatch(/at most 4h/);
    const byDefault = load({ 'services.yml': `pki_policy:\n  crl_refresh: 2d\n${WEB}` });
    expect(where(byDefault, 'CONFIG_ERR_VALUE')).toEqual(['services.yml:2:16 pki_policy.crl_refresh']);
    expect(load({ 'services.yml': `pki_policy:\n  crl_lifetime: 1d\n  crl_refresh: 4h\n${WEB}` }).diagnostics.items).toEqual([]);
  });

  it('reports an unknown key under pki_policy with a did-you-mean, and a pki_policy that is not a map', () => {
    const unknown = load({ 'services.yml': `pki_policy:\n  crl_lifetme: 2d\n${WEB}` });
    expect(where(unknown, 'CONFIG_ERR_UNKNOWN_KEY')).toEqual(['services.yml:2:3 pki_policy.crl_lifetme']);
    expect(unknown.diagnostics.items[0]?.message).toContain('did you mean "crl_lifetime"?');
    const scalar = load({ 'services.yml': `pki_policy: 24h\n${WEB}` });
    expect(where(scalar, 'CONFIG_ERR_TYPE')).toEqual(['services.yml:1:13 pki_policy']);
  });
});

describe('reuse within a file', () => {
  it('merges YAML anchors with <<, and skips "."-keys that only hold anchors', () => {
    const config = load({
      'services.yml': ['.base: &base', '  scheduling_group: web', '  num_instances: 1', 'a:', '  <<: *base', '  ports: [80]', 'b:', '  <<: *base', '  num_instances: 2', ''].join('\n'),
    });
    expect(config.diagnostics.items).toEqual([]);
    expect([...config.services.services.keys()]).toEqual(['a', 'b']);
    expect(config.services.services.get('a')).toMatchObject({ schedulingGroups: ['web'], numInstances: 1, ports: [80] });
    expect(config.services.services.get('b')).toMatchObject({ schedulingGroups: ['web'], numInstances: 2 });
  });
});

describe('includes', () => {
  it('merges included files first and lets the including file win', () => {
    const config = load({
      'services.yml': 'include: services.d/*.yml\nweb:\n  num_instances: 2\n',
      'services.d/10-web.yml': 'web:\n  scheduling_group: web\n  num_instances: 1\n  ports: [80, 443]\n',
      'services.d/20-web.yml': 'web:\n  ports: [8080]\n',
    });
    expect(config.diagnostics.items).toEqual([]);
    const web = config.services.services.get('web');
    expect(web?.numInstances).toBe(2);
    expect(web?.ports).toEqual([8080]);
    expect(web?.schedulingGroups).toEqual(['web']);
    expect(config.services.files.map((f) => f.split('/').slice(-2).join('/'))).toEqual([
      expect.stringMatching(/services\.yml$/),
      'services.d/10-web.yml',
      'services.d/20-web.yml',
    ]);
  });

  it('points errors inside an included file at that file', () => {
    const config = load({ 'services.yml': 'include: [more.yml]\n', 'more.yml': '\nweb:\n  portz: [80]\n' });
    expect(where(config, 'CONFIG_ERR_UNKNOWN_KEY')).toEqual(['more.yml:3:3 web.portz']);
  });

  it('refuses include cycles', () => {
    const config = load({ 'services.yml': 'include: a.yml\n', 'a.yml': 'include: [b.yml]\n', 'b.yml': 'include: a.yml\n' });
    expect(where(config, 'CONFIG_ERR_INCLUDE_CYCLE')).toEqual(['b.yml:1:10 include']);
    expect(config.diagnostics.items[0]?.message).toBe('include cycle: services.yml -> a.yml -> b.yml -> a.yml');
  });

  it('refuses missing include files at the include line', () => {
    const config = load({ 'services.yml': 'web: {}\ninclude:\n  - missing.yml\n' });
    expect(where(config, 'CONFIG_ERR_INCLUDE_NOT_FOUND')).toEqual(['services.yml:3:5 ']);
  });

  it('reports a missing services file', () => {
    const config = load({});
    expect(codes(config)).toEqual(['CONFIG_ERR_FILE_NOT_FOUND']);
  });
});

describe('inventory validation', () => {
  const services = 'web:\n  ports: [80]\n';

  it('refuses bad host names', () => {
    const config = load({ 'services.yml': services, 'hosts.yml': 'all:\n  hosts:\n    Host_1.example.com: {ip: 198.18.0.1}\n' });
    expect(where(config, 'CONFIG_ERR_INVALID_NAME')).toEqual(['hosts.yml:3:5 hosts.Host_1.example.com']);
  });

  it('refuses a host with no address', () => {
    const config = load({ 'services.yml': services, 'hosts.yml': 'all:\n  hosts:\n    h1: {ip: 198.18.0.1}\n    h2: {ansible_user: root}\n' });
    expect(where(config, 'CONFIG_ERR_HOST_NO_ADDRESS')).toEqual(['hosts.yml:4:5 hosts.h2']);
  });

  it('refuses addresses that are not IPs', () => {
    const config = load({ 'services.yml': services, 'hosts.yml': 'all:\n  hosts:\n    h1: {ip: 198.18.0.300, ips: [198.18.0.1, nope]}\n' });
    expect(where(config, 'CONFIG_ERR_INVALID_ADDRESS')).toEqual(['hosts.yml:3:14 h1.ip', 'hosts.yml:3:46 h1.ips[1]']);
  });

  it('refuses two hosts with the same address, at the second one', () => {
    const config = load({
      'services.yml': services,
      'hosts.yml': 'all:\n  hosts:\n    h1: {ip: 198.18.0.1}\n    h2:\n      ip: 198.18.0.2\n      public_ip: 198.18.0.1\n',
    });
    expect(where(config, 'CONFIG_ERR_DUPLICATE_ADDRESS')).toEqual(['hosts.yml:6:18 h2']);
  });

  it('checks overlays: address outside the network, duplicated, shared port, bad network', () => {
    const config = load({
      'services.yml': services,
      'hosts.yml': [
        'all:',
        '  vars:',
        '    net_overlays:',
        '      - {name: vpn0, network: 100.64.0.0/24, port: 655}',
        '      - {name: vpn1, network: 100.64.1.0/24, port: 655}',
        '      - {name: vpn2, network: 100.64.2.0/33}',
        '      - {name: Bad-Name, network: 100.64.3.0/24}',
        '  hosts:',
        '    h1: {ip: 198.18.0.1, ip_vpn0: 100.64.0.1, ip_vpn1: 100.64.9.1}',
        '    h2: {ip: 198.18.0.2, ip_vpn0: 100.64.0.1, ip_vnp0: 100.64.0.2}',
        '',
      ].join('\n'),
    });
    expect(where(config, 'CONFIG_ERR_OVERLAY_PORT_CONFLICT')).toEqual(['hosts.yml:5:52 all.vars.net_overlays[1].port']);
    expect(where(config, 'CONFIG_ERR_INVALID_NETWORK')).toEqual(['hosts.yml:6:31 all.vars.net_overlays[2].network']);
    expect(where(config, 'CONFIG_ERR_INVALID_NAME')).toEqual(['hosts.yml:7:16 all.vars.net_overlays[3].name']);
    expect(where(config, 'CONFIG_ERR_OVERLAY_ADDRESS_OUTSIDE')).toEqual(['hosts.yml:9:56 h1.ip_vpn1']);
    expect(where(config, 'CONFIG_ERR_DUPLICATE_ADDRESS')).toEqual(['hosts.yml:10:35 h2.ip_vpn0']);
    expect(config.diagnostics.items.find((d) => d.code === 'CONFIG_ERR_DUPLICATE_ADDRESS')?.message).toBe('address 100.64.0.1 on overlay vpn0 is also used by host "h1"');
    expect(where(config, 'CONFIG_WARN_UNKNOWN_OVERLAY')).toEqual(['hosts.yml:10:47 h2.ip_vnp0']);
  });

  it('checks per-driver overlay options: tinc cipher/digest/compression, wireguard keepalive', () => {
    const config = load({
      'services.yml': services,
      'hosts.yml': [
        'all:',
        '  vars:',
        '    net_overlays:',
        '      - {name: vpn0, network: 100.64.0.0/24, cipher: aes-128-cbc, digest: sha512, compression: 10}',
        '      - {name: vpn1, network: 100.64.1.0/24, port: 656, cipher: rot13, digest: md4, compression: 12}',
        '      - {name: wg0, network: 100.64.2.0/24, driver: wireguard, persistent_keepalive: 25}',
        '      - {name: wg1, network: 100.64.3.0/24, driver: wireguard, port: 51821, cipher: aes-256-cbc, persistent_keepalive: 0}',
        '      - {name: vpn2, network: 100.64.4.0/24, port: 657, persistent_keepalive: 25}',
        '  hosts:',
        '    h1: {ip: 198.18.0.1}',
        '',
      ].join('\n'),
    });
    expect(where(config, 'CONFIG_ERR_VALUE')).toEqual([
      'hosts.yml:5:65 all.vars.net_overlays[1].cipher',
      'hosts.yml:5:80 all.vars.net_overlays[1].digest',
      'hosts.yml:5:98 all.vars.net_overlays[1].compression',
      'hosts.yml:7:120 all.vars.net_overlays[3].persistent_keepalive',
    ]);
    expect(where(config, 'CONFIG_ERR_OVERLAY_DRIVER_OPTION')).toEqual([
      'hosts.yml:7:77 all.vars.net_overlays[3].cipher',
      'hosts.yml:8:57 all.vars.net_overlays[4].persistent_keepalive',
    ]);
    const [vpn0, wg0] = config.mesh.overlays.filter((o) => o.name === 'vpn0' || o.name === 'wg0');
    expect(vpn0).toMatchObject({ cipher: 'aes-128-cbc', digest: 'sha512', compression: 10, persistent_keepalive: null });
    expect(wg0).toMatchObject({ cipher: null, digest: null, compression: null, persistent_keepalive: 25 });
  });

  it('fills in tinc 1.0 defaults for cipher, digest and compression', () => {
    const config = load({ 'services.yml': services, 'hosts.yml': 'all:\n  vars:\n    net_overlays: [{name: vpn0, network: 100.64.0.0/24}]\n  hosts:\n    h1: {ip: 198.18.0.1}\n' });
    expect(config.mesh.overlays[0]).toMatchObject({ cipher: 'aes-256-cbc', digest: 'sha256', compression: 0, persistent_keepalive: null });
  });

  it('refuses group cycles and unknown group keys', () => {
    const config = load({
      'services.yml': services,
      'hosts.yml': 'all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a:\n      host:\n        h1: {ip: 198.18.0.1}\n',
    });
    expect(where(config, 'CONFIG_ERR_GROUP_CYCLE')).toEqual(['hosts.yml:5:9 all.children.a.children.b']);
    expect(config.diagnostics.items.find((d) => d.code === 'CONFIG_ERR_GROUP_CYCLE')?.message).toBe('group "b" cannot be a child of "a": that makes a cycle');
    expect(where(config, 'CONFIG_ERR_UNKNOWN_KEY')).toEqual(['hosts.yml:8:7 all.children.a.host']);
    expect(config.diagnostics.items.find((d) => d.code === 'CONFIG_ERR_UNKNOWN_KEY')?.message).toContain('did you mean "hosts"?');
  });

  it('refuses an invalid domain and bad host ranges', () => {
    const config = load({ 'services.yml': services, 'hosts.yml': 'all:\n  vars:\n    domain: Mesh_Internal\n  hosts:\n    web[5:1]:\n    h[01:3]:\n' });
    expect(where(config, 'CONFIG_ERR_VALUE')).toEqual(['hosts.yml:3:13 all.vars.domain', 'hosts.yml:5:5 all.hosts.web[5:1]', 'hosts.yml:6:5 all.hosts.h[01:3]']);
  });

  it('takes mesh settings and host addresses from group_vars/ and host_vars/ too', () => {
    const config = load({
      'services.yml': services,
      'hosts.yml': 'all:\n  vars:\n    domain: inline.example\n  hosts:\n    h1:\n',
      'group_vars/all.yml': 'domain: mesh.example\nnet_overlays:\n  - {name: vpn0, network: 100.64.0.0/24}\n',
      'host_vars/h1.yml': 'ip: 198.18.0.1\nip_vpn0: 100.64.9.1\n',
    });
    expect(config.mesh.domain).toBe('mesh.example');
    expect(where(config, 'CONFIG_ERR_OVERLAY_ADDRESS_OUTSIDE')).toEqual(['h1.yml:2:10 h1.ip_vpn0']);
  });

  it('recognizes an INI inventory and says how to convert it', () => {
    const config = load({ 'services.yml': services, 'hosts.yml': '# fleet\n[web]\nh1 ip=198.18.0.1\n' });
    expect(config.diagnostics.errors.map((d) => d.code)).toEqual(['CONFIG_ERR_INVENTORY_FORMAT']);
    expect(where(config, 'CONFIG_ERR_INVENTORY_FORMAT')).toEqual(['hosts.yml:2:1 ']);
    expect(config.diagnostics.items[0]?.expected).toMatch(/ansible-inventory -i .*hosts\.yml --list --yaml --export > hosts\.yml/);
  });
});
