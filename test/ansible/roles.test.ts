/**
 * The shape of ansible/ without running a playbook: the six roles of
 * site.yml, each role's variables prefixed with its name and listed in its
 * README, unit files with restart policies and hardening, and the README
 * section "Operating with Ansible" (whose worked example is checked against
 * what services.yml.example and hosts.yml.example really compile to).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { addressesSeenBy } from '../../src/topology/index.js';
import { parseTopology } from '../../src/topology/testing.js';
import { meshplane, REPO_ROOT, runWithoutBlocking } from '../support/run.js';
import { ANSIBLE_DIR } from './support.js';

const ROLES = ['meshplane', 'dns', 'credentials', 'overlay', 'gateway', 'agent'] as const;
const roleFile = (role: string, path: string): string => join(ANSIBLE_DIR, 'roles', role, path);

/** The keys of a role's YAML variables file ({} when the role has none). */
function variables(role: string, file: 'defaults' | 'vars'): string[] {
  const path = roleFile(role, `${file}/main.yml`);
  if (!existsSync(path)) return [];
  return Object.keys((parse(readFileSync(path, 'utf8')) as Record<string, unknown> | null) ?? {});
}

/** Backquoted names in the table rows of the README's "## Variables" section. */
function documented(role: string): Set<string> {
  const readme = readFileSync(roleFile(role, 'README.md'), 'utf8');
  const section = readme.split(/^## Variables\s*$/m)[1]?.split(/^## /m)[0] ?? '';
  const names = new Set<string>();
  for (const row of section.split('\n').filter((l) => l.startsWith('|'))) {
    const firstCell = row.split('|')[1] ?? '';
    for (const m of firstCell.matchAll(/`([a-z0-9_]+)`/g)) names.add(m[1]!);
  }
  return names;
}

describe('ansible/ roles', () => {
  it('site.yml runs the six roles in order, each with tasks, defaults, meta and a README', () => {
    const plays = parse(readFileSync(join(ANSIBLE_DIR, 'site.yml'), 'utf8')) as { hosts: string; roles: { role: string }[] }[];
    expect(plays).toHaveLength(1);
    expect(plays[0]!.hosts).toBe('all');
    expect(plays[0]!.roles.map((r) => r.role)).toEqual([...ROLES]);
    expect(readdirSync(join(ANSIBLE_DIR, 'roles')).sort()).toEqual([...ROLES].sort());
    for (const role of ROLES) {
      for (const file of ['tasks/main.yml', 'defaults/main.yml', 'meta/main.yml', 'handlers/main.yml', 'README.md']) expect(existsSync(roleFile(role, file)), `${role}/${file}`).toBe(true);
    }
  });

  it.each(ROLES)('role %s: every default is prefixed with the role name and listed in its README', (role) => {
    const defaults = variables(role, 'defaults');
    expect(defaults.length).toBeGreaterThan(0);
    for (const name of [...defaults, ...variables(role, 'vars')]) expect(name.startsWith(`${role}_`), `${role}: ${name}`).toBe(true);
    const listed = documented(role);
    expect(defaults.filter((name) => !listed.has(name)), `${role}/README.md "## Variables" is missing`).toEqual([]);
    // ... and documents nothing that does not exist (a renamed default).
    const known = new Set([...defaults, ...variables(role, 'vars')]);
    expect([...listed].filter((name) => name.startsWith(`${role}_`) && !known.has(name)), `${role}/README.md lists unknown variables`).toEqual([]);
  });

  it('unit templates restart on failure and run hardened', () => {
    const units: Record<string, string> = {
      dns: 'meshplane-dns.service.j2',
      gateway: 'meshplane-gateway.service.j2',
      agent: 'meshplane-agent.service.j2',
    };
    for (const [role, file] of Object.entries(units)) {
      const text = readFileSync(roleFile(role, `templates/${file}`), 'utf8');
      expect(text, file).toMatch(/\nRestart=(on-failure|always)\n/);
      for (const line of ['DynamicUser=yes', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'PrivateDevices=yes', 'SystemCallFilter=@system-service']) {
        expect(text, `${file}: ${line}`).toContain(`\n${line}\n`);
      }
      expect(text, file).toMatch(/\nCapabilityBoundingSet=(CAP_NET_BIND_SERVICE)?\n/);
    }
    // The reloadable daemons reload with SIGHUP.
    for (const role of ['dns', 'gateway']) expect(readFileSync(roleFile(role, `templates/${units[role]!}`), 'utf8')).toContain('\nExecReload=/bin/kill -HUP $MAINPID\n');
    const tinc = readFileSync(roleFile('overlay', 'templates/tinc-meshplane.conf.j2'), 'utf8');
    for (const line of ['Restart=always', 'NoNewPrivileges=yes', 'ProtectSystem=full']) expect(tinc).toContain(`\n${line}\n`);
    // The firewall unit checks the ruleset before loading it, on start and on reload.
    const firewall = readFileSync(roleFile('overlay', 'templates/meshplane-firewall.service.j2'), 'utf8');
    expect(firewall).toMatch(/\nExecStartPre=\/usr\/sbin\/nft -c -f (.+)\nExecStart=\/usr\/sbin\/nft -f \1\n/);
    expect(firewall).toMatch(/\nExecReload=\/usr\/sbin\/nft -c -f (.+)\nExecReload=\/usr\/sbin\/nft -f \1\n/);
  });
});

describe('README "Operating with Ansible"', () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.split(/^## Operating with Ansible\s*$/m)[1]?.split(/^## /m)[0] ?? '';

  it('covers the first run, adding a host, adding a service, rotating the CA and every role', () => {
    for (const heading of ['First run', 'Worked example', 'Adding a host', 'Adding a service', 'Rotating the CA']) expect(section).toMatch(new RegExp(`^### ${heading}`, 'm'));
    for (const role of ROLES) expect(section, role).toContain(`[\`${role}\`](ansible/roles/${role}/README.md)`);
    expect(section).toContain('ansible-playbook -i hosts.yml -i ansible/inventory/meshplane ansible/site.yml');
  });

  it('tells the worked example as services.yml.example and hosts.yml.example compile', () => {
    const result = meshplane(['compile', '-s', join(REPO_ROOT, 'services.yml.example'), '-i', join(REPO_ROOT, 'hosts.yml.example')]);
    expect(result.status, result.stderr).toBe(0);
    const topology = parseTopology(result.stdout, 'compile');
    const runs = (host: string): readonly string[] => topology.hosts[host]!.services;
    const sees = (asker: string, service: string): string[] => topology.services[service]!.instances.flatMap((i) => addressesSeenBy(topology.hosts[asker]!, i)).sort();
    const example = section.split(/^### Worked example.*$/m)[1]!.split(/^### /m)[0]!;
    // What the README says, host by host.
    expect(runs('host1')).toEqual(['web']);
    expect(runs('host2')).toEqual(['db', 'db-backup']);
    expect(runs('host3')).toEqual(['db', 'db-backup']);
    expect(runs('host4')).toEqual([]);
    expect(runs('gw1')).toEqual(['gateway']);
    expect(topology.services.db!.master).toBe('host2');
    expect(topology.hosts.host4!.credentials).toEqual([]);
    expect(topology.credentials.gateway).toMatchObject({ enable_client: false, enable_server: true });
    expect(sees('host1', 'db')).toEqual(['100.64.0.2', '127.0.1.3']);
    expect(sees('host3', 'db')).toEqual(['100.64.1.2', '100.64.1.3']);
    expect(sees('host4', 'db')).toEqual(['127.0.1.2', '127.0.1.3']);
    for (const text of ['100.64.0.2', '127.0.1.3', '100.64.1.2 and 100.64.1.3', '127.0.1.2, 127.0.1.3', 'db-master.mesh.internal', 'www.example.com']) expect(example).toContain(text);
    const members = (overlay: string): string[] => Object.keys(topology.hosts).filter((h) => topology.hosts[h]!.overlays[overlay] !== undefined).sort();
    expect(members('vpn0')).toEqual(['gw1', 'host1', 'host2']);
    expect(members('wg0')).toEqual(['host2', 'host3']);
    expect(example).toContain('tinc `vpn0` joins gw1, host1 and host2; WireGuard `wg0` joins host2 and');
  });
});

describe('credentials_mode: online', () => {
  /** Renders one of the credentials role's templates with ansible's own template module. */
  function render(template: string, vars: Record<string, unknown>): string {
    const out = join(mkdtempSync(join(tmpdir(), 'meshplane-units-')), 'unit');
    const varsFile = `${out}.json`;
    writeFileSync(varsFile, JSON.stringify(vars));
    const result = spawnSync('ansible', ['localhost', '-c', 'local', '-m', 'ansible.builtin.template', '-a', `src=${roleFile('credentials', `templates/${template}`)} dest=${out}`, '-e', `@${varsFile}`], { encoding: 'utf8', env: { ...process.env, ANSIBLE_LOCALHOST_WARNING: 'false', ANSIBLE_INVENTORY_UNPARSED_WARNING: 'false' } });
    expect(result.status, result.stdout + result.stderr).toBe(0);
    return readFileSync(out, 'utf8');
  }

  const vars = {
    meshplane_bin: '/usr/local/bin/meshplane',
    meshplane_prefix: '',
    meshplane_topology_file: '/etc/meshplane/topology.json',
    meshplane_credentials_root: '/etc/credentials',
    meshplane_topology: { domain: 'mesh.internal' },
    credentials_lifetime: '24h',
    credentials_serve_host: 'host1',
    credentials_serve_listen: '0.0.0.0:9443',
    credentials_serve_url: 'https://host1.mesh.internal:9443',
    credentials_serve_ca_dir: '/var/lib/meshplane/ca',
    credentials_serve_metrics: '127.0.0.1:9158',
    credentials_renew_metrics: '127.0.0.1:9157',
    credentials_renew_exec: 'systemctl reload meshplane-gateway',
    inventory_hostname: 'host1',
  };

  it('renders the pki serve and pki renew units with the flags the CLI takes', () => {
    const serve = render('meshplane-pki-serve.service.j2', vars);
    expect(serve).toContain('\nExecStart=/usr/local/bin/meshplane pki serve --ca-dir /var/lib/meshplane/ca --topology /var/lib/meshplane/ca/topology.json --host host1 --listen 0.0.0.0:9443 --lifetime 24h --metrics 127.0.0.1:9158\n');
    expect(serve).toContain('\nReadWritePaths=/var/lib/meshplane/ca\n');
    // Without credentials_lifetime (the default) services.yml's lifetimes apply: no --lifetime to override them.
    expect(render('meshplane-pki-serve.service.j2', { ...vars, credentials_lifetime: '' })).toContain('--host host1 --listen 0.0.0.0:9443 --metrics 127.0.0.1:9158\n');
    // credentials_serve_workers above 1 (a dedicated CA host's cores) adds --workers.
    expect(render('meshplane-pki-serve.service.j2', { ...vars, credentials_serve_workers: 2 })).toContain('--metrics 127.0.0.1:9158 --workers 2\n');
    const renew = render('meshplane-pki-renew.service.j2', vars);
    expect(renew).toContain(
      "\nExecStart=/usr/local/bin/meshplane pki renew --daemon --host host1 --ca-url https://host1.mesh.internal:9443 --credentials-root /etc/credentials --system-owners --exec 'systemctl reload meshplane-gateway' --metrics 127.0.0.1:9157\n",
    );
    for (const text of [serve, renew]) {
      expect(text).toMatch(/\nRestart=(on-failure|always)\n/);
      for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'SystemCallFilter=@system-service']) expect(text).toContain(`\n${line}\n`);
    }
    // The flags in the units are the CLI's: its usage names each of them.
    const usage = meshplane(['pki', '--help']).stdout + meshplane(['pki']).stderr;
    for (const flag of ['--ca-dir', '--listen', '--lifetime', '--metrics', '--workers', '--daemon', '--ca-url', '--credentials-root', '--exec']) expect(usage).toContain(flag);
  });

  /** credentials_serve_host as the role's defaults compute it for an inventory (YAML text). */
  function serveHost(inventory: string): string {
    const dir = mkdtempSync(join(tmpdir(), 'meshplane-serve-host-'));
    writeFileSync(join(dir, 'hosts.yml'), inventory);
    const result = spawnSync('ansible', ['all', '-i', join(dir, 'hosts.yml'), '-c', 'local', '-o', '-m', 'ansible.builtin.debug', '-a', 'var=credentials_serve_host', '-e', `@${roleFile('credentials', 'defaults/main.yml')}`, '-e', 'meshplane_controller_dir=/x'], {
      encoding: 'utf8',
      env: { ...process.env, ANSIBLE_LOCALHOST_WARNING: 'false', ANSIBLE_INVENTORY_UNPARSED_WARNING: 'false' },
    });
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const values = new Set([...result.stdout.matchAll(/"credentials_serve_host": "([^"]*)"/g)].map((m) => m[1]));
    expect(values.size, result.stdout).toBe(1); // every host agrees on it
    return [...values][0]!;
  }

  it('puts the online CA on the first host of the meshplane_ca group, and on no host by chance without one', () => {
    const hosts = 'all:\n  children:\n    web:\n      hosts:\n        web1: {ansible_connection: local}\n    db:\n      hosts:\n        db2: {ansible_connection: local}\n        db1: {ansible_connection: local}\n';
    expect(serveHost(hosts)).toBe(''); // online.yml then stops and names the group
    expect(serveHost(`${hosts}    meshplane_ca:\n      hosts:\n        db2: {}\n`)).toBe('db2');
    expect(serveHost(`${hosts}    meshplane_ca:\n      hosts:\n        db2: {}\n        db1: {}\n`)).toBe('db1'); // by name
  });

  it('ansible-lint passes on the credentials role', () => {
    const result = spawnSync('ansible-lint', ['roles/credentials'], { cwd: ANSIBLE_DIR, encoding: 'utf8' });
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });
});

describe('dns_engine: bind', () => {
  it('renders a named.conf that named-checkconf accepts with every zone of a real render', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshplane-bind-role-'));
    const render = join(dir, 'render');
    const rendered = meshplane(['dns', 'render', '--engine', 'bind', '-s', join(REPO_ROOT, 'services.yml.example'), '-i', join(REPO_ROOT, 'hosts.yml.example'), '--host', 'host2', '--out', render]);
    expect(rendered.status, rendered.stderr).toBe(0);
    const out = join(dir, 'named.conf');
    const varsFile = join(dir, 'vars.json');
    writeFileSync(varsFile, JSON.stringify({ dns_bind_dir: render, dns_nameservers: ['127.0.0.1', '::1'], dns_bind_dnssec_validation: 'no', meshplane_topology: { domain: 'mesh.internal' } }));
    const result = await runWithoutBlocking('ansible', ['localhost', '-c', 'local', '-m', 'ansible.builtin.template', '-a', `src=${roleFile('dns', 'templates/named.conf.j2')} dest=${out}`, '-e', `@${varsFile}`], { env: { ANSIBLE_LOCALHOST_WARNING: 'false', ANSIBLE_INVENTORY_UNPARSED_WARNING: 'false' } });
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const conf = readFileSync(out, 'utf8');
    expect(conf).toContain('listen-on port 53 { 127.0.0.1; };');
    expect(conf).toContain('listen-on-v6 port 53 { ::1; };');
    expect(conf).toContain(`include "${render}/named.conf";`);
    const check = spawnSync('named-checkconf', ['-z', out], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    // Every view of the render was loaded.
    expect(check.stdout).toMatch(/zone mesh\.internal\/IN: loaded serial \d+/);
  });

  it('renders on the host with the CLI’s flags, checked before the swap, and reloads only after named-checkconf', () => {
    const tasks = readFileSync(roleFile('dns', 'tasks/bind.yml'), 'utf8');
    for (const flag of ["'--engine', 'bind'", "'--out'", "'--host'", "'--check'", "'--resolv-conf'", "'--ttl'"]) expect(tasks).toContain(flag);
    const usage = meshplane(['dns', '--help']).stdout;
    for (const flag of ['--engine', '--out', '--host', '--check', '--resolv-conf', '--forward', '--ttl']) expect(usage).toContain(flag);
    const handlers = parse(readFileSync(roleFile('dns', 'handlers/main.yml'), 'utf8')) as { name: string; listen?: string }[];
    expect(handlers.filter((h) => h.listen === 'Reload BIND').map((h) => h.name)).toEqual(['Check the BIND configuration', 'Reload BIND with dns_bind_reload_command']);
  });

  it('ansible-lint passes on the dns role', async () => {
    const result = await runWithoutBlocking('ansible-lint', ['roles/dns'], { cwd: ANSIBLE_DIR });
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });
});
