/**
 * The playbook with real Ansible against five test hosts.
 *
 * Each test host is a directory (meshplane_root) that every role writes
 * under, driven with ansible_connection=local: this machine has no systemd
 * and no sshd, and one controller must drive several hosts, so per-host
 * root prefixes give every host its own /etc, /var and /usr/local with real
 * files, modes and owners. What the roles would hand to systemd runs here
 * for real: each host's DNS server is started from its installed unit's
 * ExecStart line inside a network namespace (mpans-<host>, public address
 * 198.18.4.x), and getent there reads that host's generated resolv.conf
 * (bind-mounted). The handlers' reload hook sends the server a real SIGHUP
 * (its unit runs with --no-watch, so only a handler can make it reload);
 * the firewall hook loads the rendered nftables ruleset into the host's
 * namespace. An upstream resolver on the hub (198.18.4.1) stands for the
 * resolvers the hosts had before. Last, the fleet switches to online
 * renewal with one variable: the online CA and a renewal daemon run from
 * their units' command lines and renew a credential, a rerun keeps it, and
 * switching back to offline stops and removes them.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressesSeenBy } from '../../src/topology/index.js';
import { parseTopology } from '../../src/topology/testing.js';
import type { Topology } from '../../src/topology/index.js';
import { createNetwork } from '../support/netns.js';
import type { TestNetwork } from '../support/netns.js';
import { parseDig, runAsync } from '../support/dns.js';
import { CLI, meshplane, REPO_ROOT, run, runWithoutBlocking, tempDir } from '../support/run.js';
import { waitFor } from '../support/wait.js';
import type { Controller, FileState, PlaybookReport } from './support.js';
import { ANSIBLE_DIR, PLAYBOOK_DEADLINE_MS, ansibleEnv, changedHosts, changedOn, describeFailure, execStart, playbook, ranOn, snapshot, touched } from './support.js';

const FIXTURES = join(REPO_ROOT, 'test/ansible/fixtures');
const HOSTS = ['gw1', 'host1', 'host2', 'host3', 'host4'] as const;
const PUBLIC: Record<string, string> = { gw1: '198.18.4.10', host1: '198.18.4.11', host2: '198.18.4.12', host3: '198.18.4.13', host4: '198.18.4.14' };
const CREDENTIAL_GROUPS = ['ansgw-credentials', 'answeb-credentials', 'ansdb-credentials'];
const isRoot = process.getuid?.() === 0;

const work = tempDir('ansible');
const controller: Controller = {
  dir: work.path,
  services: join(work.path, 'services.yml'),
  inventory: join(work.path, 'hosts.yml'),
  varsFile: join(work.path, 'test-vars.yml'),
};
const rootOf = (host: string): string => join(work.path, 'hosts', host);
let net: TestNetwork | undefined;
const servers = new Map<string, ChildProcess>();
const groupsBefore = new Set<string>();

function compiled(): Topology {
  const result = meshplane(['compile', '-s', controller.services, '-i', controller.inventory]);
  if (result.status !== 0) throw new Error(result.stderr);
  return parseTopology(result.stdout, 'compile');
}

function expectConverged(report: PlaybookReport): void {
  expect(report.status, describeFailure(report)).toBe(0);
  expect(Object.keys(report.stats).sort()).toEqual([...HOSTS]);
  for (const [host, s] of Object.entries(report.stats)) expect(s.failures + s.unreachable, `${host}: ${describeFailure(report)}`).toBe(0);
}

/** `getent hosts NAME` inside the host's namespace with the host's own generated resolv.conf. */
async function getent(host: string, name: string): Promise<{ status: number; addresses: string[] }> {
  const resolv = join(rootOf(host), 'etc/resolv.conf');
  const result = await runAsync('ip', ['netns', 'exec', `mpans-${host}`, 'unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && getent hosts "$1"', resolv, name]);
  const addresses = result.stdout
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(/\s+/)[0]!)
    .sort();
  return { status: result.status, addresses };
}

/** What the host should get for every instance of a service: its view, from the Topology. */
function expectedView(topology: Topology, asker: string, service: string): string[] {
  const viewer = topology.hosts[asker]!;
  return topology.services[service]!.instances.flatMap((instance) => addressesSeenBy(viewer, instance)).sort();
}

/** Starts the host's DNS server exactly as its unit says, in its namespace; the reload hook signals this PID. */
async function startDns(host: string): Promise<void> {
  const argv = execStart(join(rootOf(host), 'etc/systemd/system/meshplane-dns.service'));
  const log = openSync(join(work.path, `dns-${host}.log`), 'a');
  const child = spawn('ip', ['netns', 'exec', `mpans-${host}`, ...argv], { stdio: ['ignore', 'ignore', log] });
  servers.set(host, child);
  mkdirSync(join(rootOf(host), 'run'), { recursive: true });
  writeFileSync(join(rootOf(host), 'run/meshplane-dns.pid'), `${child.pid}\n`);
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}`);
      return (await getent(host, host)).status === 0;
    },
    { what: `the DNS server of ${host} answering`, interval: 100, explain: () => readFileSync(join(work.path, `dns-${host}.log`), 'utf8') },
  );
}

/** A test that runs the playbook once (see PLAYBOOK_DEADLINE_MS) and checks what it did. */
const PLAYBOOK_TEST_MS = PLAYBOOK_DEADLINE_MS + 60_000;

function openssl(args: readonly string[]): string {
  const result = run('openssl', args);
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

function sans(cert: string): string[] {
  const text = openssl(['x509', '-in', cert, '-noout', '-ext', 'subjectAltName']);
  return text
    .split('\n')
    .slice(1)
    .join(',')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function gid(group: string): number {
  const result = run('getent', ['group', group]);
  return Number(result.stdout.split(':')[2]);
}

const snapshots = (): Map<string, Map<string, FileState>> => new Map(HOSTS.map((h) => [h, snapshot(rootOf(h))]));

/** Lines the restart / reload hooks (test vars) appended to restarts.log, from line `from` on. */
function restarts(from = 0): string[] {
  const log = join(work.path, 'restarts.log');
  return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l !== '').slice(from) : [];
}

/** Every file under dir, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

/** The WireGuard public key of a base64 X25519 private key (what `wg pubkey` prints). */
function wgPublicKey(privateKey: string): string {
  const d = Buffer.from(privateKey.trim(), 'base64').toString('base64url');
  const jwk = createPublicKey(createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d, x: '' }, format: 'jwk' })).export({ format: 'jwk' });
  return Buffer.from(jwk.x!, 'base64url').toString('base64');
}

describe.runIf(isRoot).sequential('ansible/site.yml against five hosts', () => {
  beforeAll(() => {
    for (const group of CREDENTIAL_GROUPS) if (run('getent', ['group', group]).status === 0) groupsBefore.add(group);
    copyFileSync(join(FIXTURES, 'services.yml'), controller.services);
    copyFileSync(join(FIXTURES, 'hosts.yml'), controller.inventory);
    // The online CA's host, for when the last tests switch credentials_mode to online.
    writeFileSync(controller.inventory, `${readFileSync(controller.inventory, 'utf8')}    meshplane_ca:\n      hosts:\n        host1: {}\n`);
    for (const host of HOSTS) {
      mkdirSync(join(rootOf(host), 'etc'), { recursive: true });
      writeFileSync(join(rootOf(host), 'etc/resolv.conf'), 'nameserver 198.18.4.1\nsearch example.net\noptions edns0\n');
    }
    const pack = run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', work.path]);
    if (pack.status !== 0) throw new Error(`npm pack: ${pack.stderr}`);
    const tarball = join(work.path, pack.stdout.trim().split('\n').pop()!);
    writeFileSync(
      controller.varsFile,
      [
        `meshplane_test_dir: ${work.path}`,
        'meshplane_become: false',
        'meshplane_service_manager: none',
        'meshplane_install_runtime: false',
        `meshplane_package_file: ${tarball}`,
        `meshplane_controller_dir: ${join(work.path, 'controller')}`,
        `meshplane_controller_bin: ${process.execPath} ${CLI}`,
        `meshplane_services_file: ${controller.services}`,
        `meshplane_inventory_file: ${controller.inventory}`,
        'overlay_install_packages: false',
        'gateway_credential: ansgw',
        'credentials_group_throttle: 1',
        // The reload hook: what systemctl reload does (ExecReload=kill -HUP), to the process the test started.
        'dns_reload_command: "if [ -f {{ meshplane_prefix }}/run/meshplane-dns.pid ]; then kill -HUP $(cat {{ meshplane_prefix }}/run/meshplane-dns.pid); fi"',
        'overlay_firewall_apply_command: "ip netns exec mpans-{{ inventory_hostname }} nft -f {{ overlay_ruleset }}"',
        // The gateway's reload hook: SIGHUP to the gateway the test starts from its unit (ExecReload=kill -HUP).
        'gateway_reload_command: "if [ -f {{ meshplane_prefix }}/run/meshplane-gateway.pid ]; then kill -HUP $(cat {{ meshplane_prefix }}/run/meshplane-gateway.pid); fi"',
        // Restarts are only recorded (outside the host roots): which handler ran where is what the tests check.
        'dns_restart_command: "echo dns {{ inventory_hostname }} >> {{ meshplane_test_dir }}/restarts.log"',
        'gateway_restart_command: "echo gateway {{ inventory_hostname }} >> {{ meshplane_test_dir }}/restarts.log"',
        'agent_restart_command: "echo agent {{ inventory_hostname }} {{ item }} >> {{ meshplane_test_dir }}/restarts.log"',
        'overlay_tinc_reload_command: "echo tinc {{ inventory_hostname }} {{ item.name }} >> {{ meshplane_test_dir }}/restarts.log"',
        'overlay_wireguard_sync_command: "echo wireguard {{ inventory_hostname }} {{ item.name }} >> {{ meshplane_test_dir }}/restarts.log"',
        // No overlay daemons run here: agents dial the gateway's public address.
        'agent_gateways: ["198.18.4.10:8443"]',
        // Online renewal (off until a test switches it on): restarts are recorded; a stop also ends
        // the daemon the test started from the unit (what systemctl stop does to $MAINPID).
        'credentials_serve_restart_command: "echo pki-serve {{ inventory_hostname }} >> {{ meshplane_test_dir }}/restarts.log"',
        'credentials_renew_restart_command: "echo pki-renew {{ inventory_hostname }} >> {{ meshplane_test_dir }}/restarts.log"',
        'credentials_serve_stop_command: "echo stop pki-serve {{ inventory_hostname }} >> {{ meshplane_test_dir }}/restarts.log; if [ -f {{ meshplane_prefix }}/run/meshplane-pki-serve.pid ]; then kill $(cat {{ meshplane_prefix }}/run/meshplane-pki-serve.pid); fi"',
        'credentials_renew_stop_command: "echo stop pki-renew {{ inventory_hostname }} >> {{ meshplane_test_dir }}/restarts.log; if [ -f {{ meshplane_prefix }}/run/meshplane-pki-renew.pid ]; then kill $(cat {{ meshplane_prefix }}/run/meshplane-pki-renew.pid); fi"',
        // BIND on one host (the last tests): named runs chrooted into the host's root (the role
        // writes host paths, and checks them with named-checkconf -t the same way); the reload is
        // the real rndc, to the control channel named opens with the host's rndc.key.
        'dns_bind_install_packages: false',
        'dns_bind_dnssec_validation: "no"', // the hub is no DNSSEC resolver and nothing here reaches the root
        'dns_bind_reload_command: "echo reload named {{ inventory_hostname }} >> {{ meshplane_test_dir }}/restarts.log; ip netns exec mpans-{{ inventory_hostname }} rndc -k {{ meshplane_prefix }}/etc/bind/rndc.key reload"',
        'dns_bind_stop_command: "echo stop named {{ inventory_hostname }} >> {{ meshplane_test_dir }}/restarts.log; if [ -f {{ meshplane_prefix }}/run/named/named.pid ]; then kill $(cat {{ meshplane_prefix }}/run/named/named.pid); fi"',
        // What systemctl stop does to meshplane-dns where BIND takes over: the process the test started.
        'dns_stop_command: "echo stop dns {{ inventory_hostname }} >> {{ meshplane_test_dir }}/restarts.log; if [ -f {{ meshplane_prefix }}/run/meshplane-dns.pid ]; then kill $(cat {{ meshplane_prefix }}/run/meshplane-dns.pid); rm {{ meshplane_prefix }}/run/meshplane-dns.pid; fi"',
        '',
      ].join('\n'),
    );
    net = createNetwork('mpans-', ['198.18.4.1/24'], new Map(HOSTS.map((h) => [h, `${PUBLIC[h]}/24`])));
  }, 120_000);

  afterAll(() => {
    for (const child of servers.values()) if (child.exitCode === null) child.kill('SIGTERM');
    net?.destroy();
    for (const group of CREDENTIAL_GROUPS) if (!groupsBefore.has(group)) spawnSync('groupdel', [group]);
    work.remove();
  });

  it('passes ansible-playbook --syntax-check and ansible-lint', async () => {
    const env = ansibleEnv(work.path);
    const syntax = await runWithoutBlocking('ansible-playbook', ['--syntax-check', '-i', 'localhost,', 'site.yml'], { cwd: ANSIBLE_DIR, env });
    expect(syntax.status, syntax.stdout + syntax.stderr).toBe(0);
    const lint = await runWithoutBlocking('ansible-lint', ['--offline', '--nocolor', '-p'], { cwd: ANSIBLE_DIR, env });
    expect(lint.status, lint.stdout + lint.stderr).toBe(0);
    expect(lint.stdout).toBe('');
  }, 300_000); // ansible-lint alone took 110 s beside CPU hogs

  it('feeds Ansible one group per service and meshplane host vars beside the static inventory', () => {
    const result = run('ansible-inventory', ['-i', controller.inventory, '-i', join(ANSIBLE_DIR, 'inventory/meshplane'), '--list'], {
      cwd: work.path,
      env: { ...ansibleEnv(work.path), MESHPLANE_BIN: `${process.execPath} ${CLI}`, MESHPLANE_SERVICES: controller.services, MESHPLANE_INVENTORY: controller.inventory },
    });
    expect(result.status, result.stderr).toBe(0);
    const inventory = JSON.parse(result.stdout) as Record<string, { hosts?: string[] }> & { _meta: { hostvars: Record<string, Record<string, unknown>> } };
    expect(inventory.db?.hosts?.sort()).toEqual(['host2', 'host3']);
    expect(inventory.db_master?.hosts).toEqual(['host2']);
    expect(inventory.web?.hosts).toEqual(['host1']);
    expect(inventory.backend?.hosts?.sort()).toEqual(['host2', 'host3', 'host4']); // the static groups stay
    // Static vars and meshplane vars side by side on one host.
    expect(inventory._meta.hostvars.host2).toMatchObject({
      ansible_connection: 'local',
      shard_id: 'a',
      meshplane_shard: 'a',
      meshplane_services: ['db', 'db-backup'],
      meshplane_masters: ['db'],
      meshplane_overlays: { ansvpn: '100.64.40.2', answg: '100.64.41.2' },
    });
    expect(inventory._meta.hostvars.host2).toMatchObject({ meshplane_ips: ['198.18.4.12'], meshplane_fqdn: 'host2.mesh.internal', meshplane_credentials: ['ansdb'] });
    expect(inventory._meta.hostvars.gw1).toMatchObject({ meshplane_public_ips: ['198.18.4.110'], meshplane_services: ['gateway'], meshplane_masters: [] });
    expect(inventory._meta.hostvars.host1).toMatchObject({ meshplane_agent_services: ['web'] });
  });

  it('converges every host on the first run', async () => {
    const report = await playbook(controller);
    expectConverged(report);
    expect(changedHosts(report)).toEqual([...HOSTS]);
    // The package was installed on each host from the controller's tarball, and the units run it.
    for (const host of HOSTS) expect(existsSync(join(rootOf(host), 'usr/local/bin/meshplane')), host).toBe(true);
    expect(execStart(join(rootOf('host2'), 'etc/systemd/system/meshplane-dns.service'))[0]).toBe(join(rootOf('host2'), 'usr/local/bin/meshplane'));
    // Handlers: each daemon (re)started where its unit was installed, the overlay files checked before any reload.
    expect(changedOn(report, 'Restart the DNS server with dns_restart_command')).toEqual([...HOSTS]);
    expect(changedOn(report, 'Restart the gateway with gateway_restart_command')).toEqual(['gw1']);
    expect(changedOn(report, 'Restart the agents whose unit changed with agent_restart_command')).toEqual(['host1']);
    expect(changedOn(report, 'Reload tinc with overlay_tinc_reload_command')).toEqual(['gw1', 'host1', 'host2']);
    expect(changedOn(report, 'Sync WireGuard peers with overlay_wireguard_sync_command')).toEqual(['host2', 'host3']);
    expect(ranOn(report, 'Check the firewall ruleset')).toEqual([...HOSTS]);
    expect(ranOn(report, 'Check the WireGuard configuration')).toEqual(['host2', 'host3']);
    expect(changedOn(report, 'Apply the firewall ruleset with overlay_firewall_apply_command')).toEqual([...HOSTS]);
    expect(restarts().sort()).toEqual(
      [
        ...HOSTS.map((h) => `dns ${h}`),
        'gateway gw1',
        'agent host1 web', // its unit is new
        'agent host1 web', // its certificates are new
        'tinc gw1 ansvpn',
        'tinc host1 ansvpn',
        'tinc host2 ansvpn',
        'wireguard host2 answg',
        'wireguard host3 answg',
      ].sort(),
    );
  }, PLAYBOOK_TEST_MS);

  it('joins each host to its overlays: keys made there, public keys gathered, peers configured, firewall loaded', async () => {
    const topology = compiled();
    const members = (overlay: string): string[] => HOSTS.filter((h) => topology.hosts[h]!.overlays[overlay] !== undefined);
    expect(members('ansvpn')).toEqual(['gw1', 'host1', 'host2']);
    expect(members('answg')).toEqual(['host2', 'host3']);
    const mode = (path: string): number => statSync(path).mode & 0o7777;
    // tinc: each member's private key is on that member only; every member's hosts/<peer> carries the peer's public key.
    for (const host of members('ansvpn')) {
      const privateKey = join(rootOf(host), 'etc/tinc/ansvpn/rsa_key.priv');
      expect(mode(privateKey), host).toBe(0o600);
      const publicKey = createPublicKey(readFileSync(privateKey, 'utf8')).export({ type: 'pkcs1', format: 'pem' }).toString().trim();
      for (const peer of members('ansvpn')) {
        const hostFile = readFileSync(join(rootOf(peer), 'etc/tinc/ansvpn/hosts', host), 'utf8');
        expect(hostFile, `${peer}: hosts/${host}`).toContain(publicKey);
        expect(hostFile).toContain(`Subnet = ${topology.hosts[host]!.overlays.ansvpn}/32`);
      }
      const tincConf = readFileSync(join(rootOf(host), 'etc/tinc/ansvpn/tinc.conf'), 'utf8');
      for (const peer of members('ansvpn').filter((p) => p !== host)) expect(tincConf).toContain(`ConnectTo = ${peer}`);
      expect(mode(join(rootOf(host), 'etc/tinc/ansvpn/tinc-up'))).toBe(0o755);
      expect(existsSync(join(rootOf(host), 'etc/systemd/system/tinc@.service.d/meshplane.conf')), host).toBe(true);
    }
    // WireGuard: the key stays on the host; each peer's file names its public key and overlay address.
    const wgPrivate = new Map(members('answg').map((h) => [h, readFileSync(join(rootOf(h), 'etc/wireguard/answg.key'), 'utf8').trim()]));
    for (const host of members('answg')) {
      expect(mode(join(rootOf(host), 'etc/wireguard/answg.key')), host).toBe(0o600);
      const conf = readFileSync(join(rootOf(host), 'etc/wireguard/answg.conf'), 'utf8');
      expect(mode(join(rootOf(host), 'etc/wireguard/answg.conf'))).toBe(0o600);
      expect(conf).not.toContain(wgPrivate.get(host)!); // the file only refers to the key
      for (const peer of members('answg').filter((p) => p !== host)) {
        expect(conf, `${host}: [Peer] ${peer}`).toContain(`PublicKey = ${wgPublicKey(wgPrivate.get(peer)!)}`);
        expect(conf).toContain(`AllowedIPs = ${topology.hosts[peer]!.overlays.answg}/32`);
      }
    }
    // Nothing of an overlay on the hosts that are not on it.
    for (const host of HOSTS.filter((h) => !members('ansvpn').includes(h))) expect(existsSync(join(rootOf(host), 'etc/tinc')), host).toBe(false);
    for (const host of HOSTS.filter((h) => !members('answg').includes(h))) expect(existsSync(join(rootOf(host), 'etc/wireguard')), host).toBe(false);
    // The controller gathered public keys only.
    const gathered = readdirSync(join(work.path, 'controller/overlay-keys')).sort();
    expect(gathered).toEqual([...members('ansvpn').map((h) => `${h}.ansvpn.pub`), ...members('answg').map((h) => `${h}.answg.pub`)].sort());
    for (const file of filesUnder(join(work.path, 'controller'))) {
      const text = readFileSync(file, 'utf8');
      for (const [host, key] of wgPrivate) expect(text.includes(key), `${file} holds ${host}'s WireGuard private key`).toBe(false);
    }
    // The firewall handler checked the ruleset and loaded it into each host's namespace.
    for (const host of HOSTS) {
      const table = await runAsync('ip', ['netns', 'exec', `mpans-${host}`, 'nft', 'list', 'table', 'inet', 'meshplane']);
      expect(table.status, `${host}: ${table.stderr}`).toBe(0);
    }
    expect((await runAsync('ip', ['netns', 'exec', 'mpans-host2', 'nft', 'list', 'table', 'inet', 'meshplane'])).stdout).toContain('5432');
  });

  it('installs the gateway on the gateway group and an agent where a service has gateway endpoints', () => {
    const units = (host: string): string[] => readdirSync(join(rootOf(host), 'etc/systemd/system')).filter((f) => f.endsWith('.service')).sort();
    expect(units('gw1')).toEqual(['meshplane-dns.service', 'meshplane-firewall.service', 'meshplane-gateway.service']);
    expect(units('host1')).toEqual(['meshplane-agent-web.service', 'meshplane-dns.service', 'meshplane-firewall.service']);
    for (const host of ['host2', 'host3', 'host4']) expect(units(host), host).toEqual(['meshplane-dns.service', 'meshplane-firewall.service']);
    const root = rootOf('gw1');
    expect(execStart(join(root, 'etc/systemd/system/meshplane-gateway.service'))).toEqual([
      join(root, 'usr/local/bin/meshplane'),
      'gateway',
      '--topology',
      join(root, 'etc/meshplane/topology.json'),
      '--credential',
      'ansgw',
      '--credentials-root',
      join(root, 'etc/credentials'),
      '--log-level',
      'info',
    ]);
    const gateway = readFileSync(join(root, 'etc/systemd/system/meshplane-gateway.service'), 'utf8');
    for (const line of ['ExecReload=/bin/kill -HUP $MAINPID', 'Restart=on-failure', 'DynamicUser=yes', 'SupplementaryGroups=ansgw-credentials', 'ProtectSystem=strict', 'NoNewPrivileges=yes']) {
      expect(gateway).toContain(`\n${line}\n`);
    }
    const agent = readFileSync(join(rootOf('host1'), 'etc/systemd/system/meshplane-agent-web.service'), 'utf8');
    for (const line of ['Environment=MESHPLANE_SERVICE=web', 'Environment=MESHPLANE_CREDENTIAL=answeb', `Environment=MESHPLANE_CREDENTIALS_ROOT=${join(rootOf('host1'), 'etc/credentials')}`, 'KillSignal=SIGTERM', 'Restart=always', 'SupplementaryGroups=answeb-credentials']) {
      expect(agent).toContain(`\n${line}\n`);
    }
    const dns = readFileSync(join(rootOf('host1'), 'etc/systemd/system/meshplane-dns.service'), 'utf8');
    for (const line of ['ExecReload=/bin/kill -HUP $MAINPID', 'Restart=on-failure', 'DynamicUser=yes', 'AmbientCapabilities=CAP_NET_BIND_SERVICE', 'ProtectSystem=strict']) expect(dns).toContain(`\n${line}\n`);
  });

  it('installs credentials with the right modes, groups and SANs, keys made on the hosts only', () => {
    const topology = compiled();
    for (const host of HOSTS) {
      for (const name of topology.hosts[host]!.credentials) {
        const credential = topology.credentials[name]!;
        const dir = join(rootOf(host), 'etc/credentials/x509', name);
        const kinds = [...(credential.enable_client ? ['client'] : []), ...(credential.enable_server ? ['server'] : [])];
        expect(statSync(dir).mode & 0o7777).toBe(0o755);
        expect(statSync(join(dir, 'ca.pem')).mode & 0o7777).toBe(0o444);
        for (const kind of kinds) {
          const key = statSync(join(dir, kind, 'private_key.pem'));
          expect([key.mode & 0o7777, key.uid, key.gid], `${host} ${name} ${kind} key`).toEqual([0o440, 0, gid(`${name}-credentials`)]);
          const kindDir = statSync(join(dir, kind));
          expect([kindDir.mode & 0o7777, kindDir.gid]).toEqual([0o750, gid(`${name}-credentials`)]);
          const cert = join(dir, kind, 'cert.pem');
          expect(statSync(cert).mode & 0o7777).toBe(0o444);
          expect(openssl(['verify', '-CAfile', join(dir, 'ca.pem'), cert]).trim()).toBe(`${cert}: OK`);
          expect(openssl(['x509', '-in', cert, '-noout', '-subject']).trim()).toBe(`subject=CN = ${name}`);
        }
      }
    }
    expect(sans(join(rootOf('host2'), 'etc/credentials/x509/ansdb/server/cert.pem'))).toEqual(
      expect.arrayContaining([
        'DNS:db',
        'DNS:db.mesh.internal',
        'DNS:host2.db.mesh.internal',
        'DNS:a.db.mesh.internal',
        'DNS:db-master.mesh.internal',
        'DNS:db-backup.mesh.internal',
        'DNS:host2.mesh.internal',
        'IP Address:198.18.4.12',
        'IP Address:100.64.40.2',
        'IP Address:100.64.41.2',
      ]),
    );
    expect(sans(join(rootOf('host3'), 'etc/credentials/x509/ansdb/server/cert.pem'))).not.toContain('DNS:db-master.mesh.internal');
    expect(sans(join(rootOf('host1'), 'etc/credentials/x509/answeb/server/cert.pem'))).toContain('DNS:www.example.com');
    // The client certificate names the credential, and the workload identity: which host holds it.
    expect(sans(join(rootOf('host1'), 'etc/credentials/x509/answeb/client/cert.pem')).sort()).toEqual([
      'DNS:answeb',
      'DNS:answeb.mesh.internal',
      'URI:spiffe://mesh.internal/host/host1/credential/answeb',
    ]);
    expect(existsSync(join(rootOf('gw1'), 'etc/credentials/x509/ansgw/client'))).toBe(false); // enable_client: false
    expect(existsSync(join(rootOf('host4'), 'etc/credentials/x509'))).toBe(false);
    // The controller saw CSRs and certificates, never a host's private key.
    const controllerFiles = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? controllerFiles(join(dir, e.name)) : [join(dir, e.name)]));
    const withKeys = controllerFiles(join(work.path, 'controller')).filter((f) => readFileSync(f, 'utf8').includes('PRIVATE KEY'));
    expect(withKeys).toEqual([join(work.path, 'controller/ca/ca_key.pem')]);
  });

  it("answers getent hosts on each host with that host's view, from the installed unit's command", async () => {
    const upstream = join(work.path, 'upstream');
    mkdirSync(upstream);
    writeFileSync(join(upstream, 'hosts.yml'), 'all:\n  vars:\n    domain: example.net\n  hosts:\n    www: {ip: 198.18.4.200}\n');
    writeFileSync(join(upstream, 'services.yml'), 'allow_no_services: true  # an upstream resolver for other names, no mesh services\n');
    const hub = spawn('ip', ['netns', 'exec', 'mpans-hub', process.execPath, CLI, 'dns', '-s', join(upstream, 'services.yml'), '-i', join(upstream, 'hosts.yml'), '--listen', '198.18.4.1:53', '--no-forward'], {
      stdio: 'ignore',
    });
    servers.set('hub', hub);
    for (const host of HOSTS) await startDns(host);
    const topology = compiled();
    for (const host of HOSTS) {
      for (const service of ['db', 'web', 'gateway']) {
        const answer = await getent(host, service); // short names: the search line
        expect(answer, `${host} asking for ${service}`).toEqual({ status: 0, addresses: expectedView(topology, host, service) });
      }
    }
    // Views really differ: host1 shares ansvpn with host2, host3 shares answg, host4 nothing.
    expect((await getent('host1', 'host2.db')).addresses).toEqual(['100.64.40.2']);
    expect((await getent('host3', 'host2.db')).addresses).toEqual(['100.64.41.2']);
    expect((await getent('host4', 'host2.db.mesh.internal')).addresses).toEqual(['198.18.4.12']);
    expect((await getent('host4', 'db-master')).addresses).toEqual(['198.18.4.12']);
    // Other names go to the resolvers the host had before.
    expect((await getent('host4', 'www.example.net')).addresses).toEqual(['198.18.4.200']);
    expect((await getent('host4', 'www')).addresses).toEqual(['198.18.4.200']); // the old search domain kept
    expect(readFileSync(join(rootOf('host4'), 'etc/resolv.conf'), 'utf8')).toMatch(/^nameserver 127\.0\.0\.1\nsearch mesh\.internal example\.net\noptions edns0\n$/m);
  }, 120_000);

  it('runs the gateway and the agent from their installed units: a client reaches the backend through the tunnel', async () => {
    // gw1 reserves its public address for hosts that share no overlay with it, and host1 shares
    // ansvpn: with no tinc running here, the agent can only use the public address, so this
    // check runs without gw1's meshplane table (a later firewall change would load it again).
    await runAsync('ip', ['netns', 'exec', 'mpans-gw1', 'nft', 'delete', 'table', 'inet', 'meshplane']);
    const received = join(work.path, 'backend.bin');
    servers.set('backend', spawn('ip', ['netns', 'exec', 'mpans-host1', 'socat', '-u', 'TCP-LISTEN:8081,bind=127.0.0.1,reuseaddr', `CREATE:${received}`], { stdio: 'ignore' }));
    const gatewayLog = join(work.path, 'gateway.log');
    const gatewayArgv = execStart(join(rootOf('gw1'), 'etc/systemd/system/meshplane-gateway.service'));
    const gateway = spawn('ip', ['netns', 'exec', 'mpans-gw1', ...gatewayArgv], { stdio: ['ignore', 'ignore', openSync(gatewayLog, 'a')] });
    servers.set('gateway', gateway);
    // What systemd's $MAINPID is to ExecReload: the gateway reload hook signals this process.
    mkdirSync(join(rootOf('gw1'), 'run'), { recursive: true });
    writeFileSync(join(rootOf('gw1'), 'run/meshplane-gateway.pid'), `${gateway.pid}\n`);
    const agentUnit = join(rootOf('host1'), 'etc/systemd/system/meshplane-agent-web.service');
    const agentEnv = Object.fromEntries(
      readFileSync(agentUnit, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('Environment='))
        .map((l) => l.slice('Environment='.length).split(/=(.*)/s).slice(0, 2)),
    ) as Record<string, string>;
    expect(agentEnv.MESHPLANE_GATEWAY).toBe('198.18.4.10:8443');
    const agentLog = join(work.path, 'agent.log');
    servers.set('agent', spawn('ip', ['netns', 'exec', 'mpans-host1', ...execStart(agentUnit)], { stdio: ['ignore', 'ignore', openSync(agentLog, 'a')], env: { ...process.env, ...agentEnv } }));
    const inFile = (file: string, text: string, what: string): Promise<true> =>
      waitFor(() => existsSync(file) && readFileSync(file, 'latin1').includes(text), {
        what: `${what}: "${text}" in ${file}`,
        interval: 100,
        explain: () => `gateway: ${existsSync(gatewayLog) ? readFileSync(gatewayLog, 'utf8') : ''}\nagent: ${existsSync(agentLog) ? readFileSync(agentLog, 'utf8') : ''}`,
      });
    await inFile(gatewayLog, 'backend registered', 'the agent registered with the credential the role issued');
    // A TLS client on host4 asks for www.example.com on the front port: SNI passthrough to host1's backend.
    void runAsync('ip', ['netns', 'exec', 'mpans-host4', 'timeout', '30', 'openssl', 's_client', '-connect', '198.18.4.10:10443', '-servername', 'www.example.com'], 40_000);
    await inFile(received, 'www.example.com', 'the backend got the ClientHello');
    const bytes = readFileSync(received);
    // PROXY v2 (the endpoint asks for it): signature, then the client's address, host4's 198.18.4.14.
    expect(bytes.subarray(0, 12).toString('hex')).toBe('0d0a0d0a000d0a515549540a');
    expect([...bytes.subarray(16, 20)]).toEqual([198, 18, 4, 14]);
  }, 120_000);

  it('reports changed=0 for every host on a second run and touches no file', async () => {
    const before = snapshots();
    const hooks = restarts().length;
    const report = await playbook(controller);
    expectConverged(report);
    expect(restarts(hooks)).toEqual([]); // no handler ran
    expect(Object.fromEntries(Object.entries(report.stats).map(([h, s]) => [h, s.changed]))).toEqual(Object.fromEntries(HOSTS.map((h) => [h, 0])));
    const after = snapshots();
    for (const host of HOSTS) expect(touched(before.get(host)!, after.get(host)!), host).toEqual([]);
  }, PLAYBOOK_TEST_MS);

  const MOVED = '100.64.41.33';

  it('shows with --check --diff what an edit would change, and changes nothing', async () => {
    writeFileSync(controller.inventory, readFileSync(controller.inventory, 'utf8').replace('ip_answg: 100.64.41.3\n', `ip_answg: ${MOVED}\n`));
    const before = snapshots();
    const report = await playbook(controller, ['--check', '--diff']);
    expectConverged(report);
    const topologyTask = report.tasks.find((t) => t.name === "meshplane : Install the topology this host's daemons read")!;
    expect(changedOn(report, topologyTask.name)).toEqual(['host2', 'host3']);
    expect(JSON.stringify(topologyTask.hosts.host3?.diff)).toContain(MOVED);
    const after = snapshots();
    for (const host of HOSTS) expect(touched(before.get(host)!, after.get(host)!), host).toEqual([]);
    expect((await getent('host2', 'host3')).addresses).toEqual(['100.64.41.3']);
  }, PLAYBOOK_TEST_MS);

  it('moves an overlay address: only its overlay peers change, DNS and certificates follow', async () => {
    const before = snapshots();
    const hooks = restarts().length;
    const report = await playbook(controller);
    expectConverged(report);
    expect(changedHosts(report)).toEqual(['host2', 'host3']);
    expect(changedOn(report, 'Reload the DNS server with dns_reload_command')).toEqual(['host2', 'host3']);
    // Checked, then reloaded: host2's firewall (host3's address is in it) and both WireGuard peers; nothing else.
    expect(ranOn(report, 'Check the firewall ruleset')).toEqual(['host2']);
    expect(changedOn(report, 'Apply the firewall ruleset with overlay_firewall_apply_command')).toEqual(['host2']);
    expect(ranOn(report, 'Check the WireGuard configuration')).toEqual(['host2', 'host3']);
    expect(restarts(hooks).sort()).toEqual(['wireguard host2 answg', 'wireguard host3 answg']);
    expect(changedOn(report, 'Reload the gateway with gateway_reload_command')).toEqual([]);
    const after = snapshots();
    for (const host of ['gw1', 'host1', 'host4']) expect(touched(before.get(host)!, after.get(host)!), host).toEqual([]);
    expect(touched(before.get('host2')!, after.get('host2')!)).toEqual(['etc/meshplane/topology.json', 'etc/nftables.d/meshplane.nft', 'etc/wireguard/answg.conf']);
    expect(touched(before.get('host3')!, after.get('host3')!)).toEqual([
      'etc/credentials/x509/ansdb/server/cert.pem',
      'etc/credentials/x509/ansdb/server/request.csr',
      'etc/meshplane/topology.json',
      'etc/wireguard/answg.conf',
      'var/lib/meshplane/ansdb-server.pem',
    ]);
    expect(readFileSync(join(rootOf('host2'), 'etc/wireguard/answg.conf'), 'utf8')).toContain(`AllowedIPs = ${MOVED}/32`);
    expect(sans(join(rootOf('host3'), 'etc/credentials/x509/ansdb/server/cert.pem'))).toContain(`IP Address:${MOVED}`);
    // DNS followed through the handler's SIGHUP (the servers run with --no-watch).
    expect((await getent('host2', 'host3')).addresses).toEqual([MOVED]);
    expect((await getent('host3', 'host3.db')).addresses).toEqual([MOVED]);
    expect((await getent('host1', 'host3')).addresses).toEqual(['198.18.4.13']);
    // The firewall handler checked and loaded the new ruleset into host2's namespace.
    const table = await runAsync('ip', ['netns', 'exec', 'mpans-host2', 'nft', 'list', 'table', 'inet', 'meshplane']);
    expect(table.stdout).toContain(MOVED);
  }, PLAYBOOK_TEST_MS);

  it('adds an instance and removes a service: DNS and certificates follow, nothing else is touched', async () => {
    const services = readFileSync(controller.services, 'utf8');
    const edited = services.replace('  num_instances: 2\n', '  num_instances: 3\n').replace(/\ndb-backup:\n(?: {2}.*\n)+/, '\n');
    expect(edited).not.toContain('db-backup');
    writeFileSync(controller.services, edited);
    const before = snapshots();
    const hooks = restarts().length;
    const gatewayLog = join(work.path, 'gateway.log');
    const gatewayLogBefore = readFileSync(gatewayLog, 'utf8').length;
    const report = await playbook(controller);
    expectConverged(report);
    // Every host resolves db and db-backup, so every host's DNS data changed ...
    expect(changedHosts(report)).toEqual([...HOSTS]);
    expect(changedOn(report, 'Reload the DNS server with dns_reload_command')).toEqual([...HOSTS]);
    // ... the gateway reloads (SIGHUP) with the new topology and keeps its agent; no unit changed, so nothing restarts.
    expect(changedOn(report, 'Reload the gateway with gateway_reload_command')).toEqual(['gw1']);
    expect(restarts(hooks)).toEqual([]);
    await waitFor(() => readFileSync(gatewayLog, 'utf8').slice(gatewayLogBefore).includes('gateway reloaded'), { what: 'the gateway reloaded after its SIGHUP', interval: 100 }).catch(() => undefined);
    const gatewaySince = readFileSync(gatewayLog, 'utf8').slice(gatewayLogBefore);
    expect(gatewaySince).toContain('gateway reloaded');
    expect(gatewaySince).not.toContain('backend killed');
    const after = snapshots();
    // ... but on the hosts that run neither, that is all that changed.
    for (const host of ['gw1', 'host1']) expect(touched(before.get(host)!, after.get(host)!), host).toEqual(['etc/meshplane/topology.json']);
    // host2, host3: the server certificates lose the db-backup names; keys and client certificates stay.
    for (const host of ['host2', 'host3']) {
      const changed = touched(before.get(host)!, after.get(host)!);
      expect(changed, host).toContain('etc/credentials/x509/ansdb/server/cert.pem');
      expect(changed.filter((p) => p.includes('private_key') || p.includes('/client/') || p.includes('/tinc/') || p.includes('/wireguard/')), host).toEqual([]);
      expect(sans(join(rootOf(host), 'etc/credentials/x509/ansdb/server/cert.pem')), host).not.toContain('DNS:db-backup');
    }
    // ... and only the topology, the firewall (9187 closes) and the server certificate (with its CSR) changed there.
    const allowed = /^(etc\/meshplane\/topology\.json|etc\/nftables\.d\/meshplane\.nft|etc\/credentials\/x509\/ansdb\/server\/(cert\.pem|request\.csr)|var\/lib\/meshplane\/ansdb-server\.pem)$/;
    for (const host of ['host2', 'host3']) expect(touched(before.get(host)!, after.get(host)!).filter((p) => !allowed.test(p)), host).toEqual([]);
    // host4 joins db: new files for its credential, its topology and firewall; no unit, resolver or overlay file.
    expect(touched(before.get('host4')!, after.get('host4')!).filter((p) => !/^(etc\/meshplane\/topology\.json|etc\/nftables\.d\/meshplane\.nft|etc\/credentials\/x509\/ansdb\/|var\/lib\/meshplane\/)/.test(p))).toEqual([]);
    // host4 joins db: its own key, a signed certificate, the credential group.
    const host4Cert = join(rootOf('host4'), 'etc/credentials/x509/ansdb/server/cert.pem');
    expect(sans(host4Cert)).toEqual(expect.arrayContaining(['DNS:host4.db.mesh.internal', 'DNS:c.db.mesh.internal', 'IP Address:198.18.4.14']));
    expect(statSync(join(rootOf('host4'), 'etc/credentials/x509/ansdb/server/private_key.pem')).gid).toBe(gid('ansdb-credentials'));
    const topology = compiled();
    for (const host of HOSTS) {
      expect(await getent(host, 'db'), host).toEqual({ status: 0, addresses: expectedView(topology, host, 'db') });
      expect((await getent(host, 'db-backup')).status, host).toBe(2); // not found
    }
    expect((await getent('host1', 'db')).addresses).toHaveLength(3);
  }, PLAYBOOK_TEST_MS);
  // Online renewal. The online CA goes to the meshplane_ca group (beforeAll), host1; host3
  // renews through it (host3 shares no overlay with host1, so its DNS answers host1's FQDN
  // with the address that works here without tinc).
  const ONLINE_CA = 'host1';
  const RENEWER = 'host3';
  const SERVE_UNIT = 'etc/systemd/system/meshplane-pki-serve.service';
  const RENEW_UNIT = 'etc/systemd/system/meshplane-pki-renew.service';
  const SERVE_DIR = 'var/lib/meshplane/ca';
  const CA_URL = `https://${ONLINE_CA}.mesh.internal:9443`;
  const pkiUnits = (host: string): string[] => readdirSync(join(rootOf(host), 'etc/systemd/system')).filter((f) => f.startsWith('meshplane-pki-')).sort();
  /** argv run in the host's namespace with its own resolv.conf (its meshplane DNS), as the host's units would run. */
  const asHost = (host: string, argv: readonly string[]): string[] => [
    'netns', 'exec', `mpans-${host}`, 'unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', join(rootOf(host), 'etc/resolv.conf'), ...argv,
  ];
  const metric = async (host: string, port: number, line: RegExp): Promise<number | undefined> => {
    const scraped = await runAsync('ip', ['netns', 'exec', `mpans-${host}`, 'curl', '-sf', `http://127.0.0.1:${port}/metrics`]);
    const match = scraped.stdout.split('\n').find((l) => line.test(l));
    return match === undefined ? undefined : Number(match.split(' ').pop());
  };
  const held = (host: string, kind: string): { serial: string; key: string; sans: string[] } => {
    const dir = join(rootOf(host), 'etc/credentials/x509/ansdb', kind);
    return {
      serial: openssl(['x509', '-in', join(dir, 'cert.pem'), '-noout', '-serial']).trim(),
      key: readFileSync(join(dir, 'private_key.pem'), 'utf8'),
      sans: sans(join(dir, 'cert.pem')).sort(),
    };
  };
  const renewedFrom = new Map<string, { serial: string; key: string; sans: string[] }>();

  it('switches the fleet to online renewal with one variable: the online CA on one host, a renewal daemon on every host', async () => {
    writeFileSync(controller.varsFile, `${readFileSync(controller.varsFile, 'utf8')}credentials_mode: online\n`);
    const before = snapshots();
    const hooks = restarts().length;
    const report = await playbook(controller);
    expectConverged(report);
    expect(changedHosts(report)).toEqual([...HOSTS]);
    expect(restarts(hooks).sort()).toEqual([`pki-serve ${ONLINE_CA}`, ...HOSTS.map((h) => `pki-renew ${h}`)].sort());
    const after = snapshots();
    // The units, and on the online CA host the CA and the whole topology; no certificate was touched.
    for (const host of HOSTS) {
      const expected = host === ONLINE_CA ? [RENEW_UNIT, SERVE_UNIT, ...['ca.pem', 'ca_key.pem', 'crl.pem', 'topology.json'].map((f) => `${SERVE_DIR}/${f}`)] : [RENEW_UNIT];
      expect(touched(before.get(host)!, after.get(host)!), host).toEqual(expected.sort());
      expect(pkiUnits(host), host).toEqual(host === ONLINE_CA ? ['meshplane-pki-renew.service', 'meshplane-pki-serve.service'] : ['meshplane-pki-renew.service']);
    }
    // The CA key: 0600 root in a 0700 directory on the online CA host, on no other host.
    const caKey = readFileSync(join(work.path, 'controller/ca/ca_key.pem'));
    const keyOnHost = join(rootOf(ONLINE_CA), SERVE_DIR, 'ca_key.pem');
    expect(readFileSync(keyOnHost)).toEqual(caKey);
    const keyStat = statSync(keyOnHost);
    expect([keyStat.mode & 0o7777, keyStat.uid, keyStat.gid]).toEqual([0o600, 0, 0]);
    expect(statSync(join(rootOf(ONLINE_CA), SERVE_DIR)).mode & 0o7777).toBe(0o700);
    const keySha = after.get(ONLINE_CA)!.get(`${SERVE_DIR}/ca_key.pem`)!.sha256;
    for (const host of HOSTS) {
      const copies = [...after.get(host)!].filter(([, state]) => state.sha256 === keySha).map(([path]) => path);
      expect(copies, host).toEqual(host === ONLINE_CA ? [`${SERVE_DIR}/ca_key.pem`] : []);
    }
    // The online CA signs for every host: the whole topology, not host1's own (which lacks answg).
    expect(readFileSync(join(rootOf(ONLINE_CA), SERVE_DIR, 'topology.json'), 'utf8')).toBe(readFileSync(join(work.path, 'controller/topology.json'), 'utf8'));
    const root = rootOf(ONLINE_CA);
    expect(execStart(join(root, SERVE_UNIT))).toEqual([
      join(root, 'usr/local/bin/meshplane'), 'pki', 'serve', '--ca-dir', join(root, SERVE_DIR), '--topology', join(root, SERVE_DIR, 'topology.json'),
      '--host', ONLINE_CA, '--listen', '0.0.0.0:9443', '--metrics', '127.0.0.1:9158',
    ]);
    for (const host of HOSTS) {
      expect(execStart(join(rootOf(host), RENEW_UNIT)), host).toEqual([
        join(rootOf(host), 'usr/local/bin/meshplane'), 'pki', 'renew', '--daemon', '--host', host, '--ca-url', CA_URL,
        '--credentials-root', join(rootOf(host), 'etc/credentials'), '--system-owners', '--metrics', '127.0.0.1:9157',
      ]);
    }
  }, PLAYBOOK_TEST_MS);

  it("renews a host's credential through the online CA, both run from their units' command lines", async () => {
    // The online CA, as its unit runs it, in its host's namespace; a stop hook signals this PID.
    const serveLog = join(work.path, 'pki-serve.log');
    const serve = spawn('ip', ['netns', 'exec', `mpans-${ONLINE_CA}`, ...execStart(join(rootOf(ONLINE_CA), SERVE_UNIT))], { stdio: ['ignore', openSync(serveLog, 'a'), openSync(serveLog, 'a')] });
    servers.set('pki-serve', serve);
    mkdirSync(join(rootOf(ONLINE_CA), 'run'), { recursive: true });
    writeFileSync(join(rootOf(ONLINE_CA), 'run/meshplane-pki-serve.pid'), `${serve.pid}\n`);
    await waitFor(
      () => {
        if (serve.exitCode !== null) throw new Error(`pki serve exited ${serve.exitCode}`);
        return readFileSync(serveLog, 'utf8').includes('meshplane pki serve: online CA at');
      },
      { what: 'the online CA serving', interval: 100, explain: () => readFileSync(serveLog, 'utf8') },
    );
    // The renewal daemon, as its unit runs it: it reaches the CA by the serve host's FQDN through host3's DNS.
    const renewUnit = join(rootOf(RENEWER), RENEW_UNIT);
    const renewLog = join(work.path, 'pki-renew.log');
    const daemon = spawn('ip', asHost(RENEWER, execStart(renewUnit)), { stdio: ['ignore', openSync(renewLog, 'a'), openSync(renewLog, 'a')] });
    servers.set('pki-renew', daemon);
    mkdirSync(join(rootOf(RENEWER), 'run'), { recursive: true });
    writeFileSync(join(rootOf(RENEWER), 'run/meshplane-pki-renew.pid'), `${daemon.pid}\n`);
    const lastSuccess = await waitFor(
      async () => {
        if (daemon.exitCode !== null) throw new Error(`pki renew exited ${daemon.exitCode}`);
        const value = await metric(RENEWER, 9157, /^meshplane_pki_renew_last_success_timestamp_seconds /);
        return value !== undefined && value > 0 ? value : undefined;
      },
      { what: 'the renewal daemon fetching the CRL from the online CA', deadline: 60_000, interval: 200, explain: () => `renew: ${readFileSync(renewLog, 'utf8')}\nserve: ${readFileSync(serveLog, 'utf8')}` },
    );
    expect(lastSuccess).toBeGreaterThan(0);
    // Freshly issued certificates are not due: nothing renewed yet, each one's due time exported.
    for (const kind of ['client', 'server']) {
      expect(await metric(RENEWER, 9157, new RegExp(`^meshplane_pki_renew_due_timestamp_seconds\\{credential="ansdb",kind="${kind}"\\} `)), kind).toBeGreaterThan(Date.now() / 1000);
    }
    expect(await metric(RENEWER, 9157, /^meshplane_pki_renew_renewals_total\{/)).toBeUndefined();
    // Now what the unit runs, once and forced (a 90-day certificate is due in 60 days).
    for (const kind of ['client', 'server']) renewedFrom.set(kind, held(RENEWER, kind));
    const argv = execStart(renewUnit);
    const once = [...argv.filter((arg, i) => arg !== '--daemon' && arg !== '--metrics' && argv[i - 1] !== '--metrics'), '--force'];
    const result = await runAsync('ip', asHost(RENEWER, once), 120_000);
    expect(result.status, `${result.stdout}${result.stderr}\nserve: ${readFileSync(serveLog, 'utf8')}`).toBe(0);
    expect(result.stdout).toContain('meshplane pki renew: changed');
    const dir = join(rootOf(RENEWER), 'etc/credentials/x509/ansdb');
    for (const kind of ['client', 'server']) {
      const old = renewedFrom.get(kind)!;
      const now = held(RENEWER, kind);
      const cert = join(dir, kind, 'cert.pem');
      const key = join(dir, kind, 'private_key.pem');
      expect(now.serial, kind).not.toBe(old.serial);
      expect(now.key, `${kind}: a new key, made on the host`).not.toBe(old.key);
      expect(now.sans, `${kind}: the SANs the topology gives host3`).toEqual(old.sans);
      expect(openssl(['verify', '-CAfile', join(dir, 'ca.pem'), cert]).trim()).toBe(`${cert}: OK`);
      expect(openssl(['x509', '-in', cert, '-noout', '-pubkey'])).toBe(openssl(['pkey', '-in', key, '-pubout']));
      const keyStat = statSync(key);
      expect([keyStat.mode & 0o7777, keyStat.uid, keyStat.gid], `${kind} key`).toEqual([0o440, 0, gid('ansdb-credentials')]);
      const certStat = statSync(cert);
      expect([certStat.mode & 0o7777, certStat.uid, certStat.gid], `${kind} cert`).toEqual([0o444, 0, 0]);
      const kindDir = statSync(join(dir, kind));
      expect([kindDir.mode & 0o7777, kindDir.gid]).toEqual([0o750, gid('ansdb-credentials')]);
    }
    // Both kinds renewed over one connection (POST /renewals), one observation a renewal.
    expect(await metric(ONLINE_CA, 9158, /^meshplane_pki_serve_requests_total\{route="renewals",outcome="ok"\} /)).toBe(1);
    expect(await metric(ONLINE_CA, 9158, /^meshplane_pki_serve_renew_seconds_count /)).toBe(2);
    // The CRL beside the credential is the online CA's current one (what GET /crl serves), signed by ca.pem.
    const crl = await runAsync('ip', asHost(RENEWER, ['curl', '-sf', '--cacert', join(dir, 'ca.pem'), `${CA_URL}/crl`]));
    expect(crl.status, crl.stderr).toBe(0);
    expect(readFileSync(join(dir, 'crl.pem'), 'utf8')).toBe(crl.stdout);
    const crlStat = statSync(join(dir, 'crl.pem'));
    expect([crlStat.mode & 0o7777, crlStat.uid, crlStat.gid]).toEqual([0o444, 0, 0]);
    expect(run('openssl', ['crl', '-in', join(dir, 'crl.pem'), '-CAfile', join(dir, 'ca.pem'), '-noout']).stderr).toContain('verify OK');
  }, 300_000);

  it('keeps what the daemon renewed on a second run in online mode: changed=0, no file touched', async () => {
    const before = snapshots();
    const hooks = restarts().length;
    const report = await playbook(controller);
    expectConverged(report);
    expect(restarts(hooks)).toEqual([]);
    expect(Object.fromEntries(Object.entries(report.stats).map(([h, s]) => [h, s.changed]))).toEqual(Object.fromEntries(HOSTS.map((h) => [h, 0])));
    const after = snapshots();
    for (const host of HOSTS) expect(touched(before.get(host)!, after.get(host)!), host).toEqual([]);
    for (const kind of ['client', 'server']) expect(held(RENEWER, kind).serial, kind).not.toBe(renewedFrom.get(kind)!.serial);
    expect(servers.get('pki-serve')!.exitCode).toBeNull();
    expect(servers.get('pki-renew')!.exitCode).toBeNull();
  }, PLAYBOOK_TEST_MS);

  it('switches back to offline: both daemons stopped, their units and the CA copy removed, renewed certificates kept', async () => {
    writeFileSync(controller.varsFile, readFileSync(controller.varsFile, 'utf8').replace('credentials_mode: online\n', 'credentials_mode: offline\n'));
    const before = snapshots();
    const hooks = restarts().length;
    const renewed = held(RENEWER, 'server').serial;
    const report = await playbook(controller);
    expectConverged(report);
    expect(changedHosts(report)).toEqual([...HOSTS]);
    expect(restarts(hooks).sort()).toEqual([`stop pki-serve ${ONLINE_CA}`, ...HOSTS.map((h) => `stop pki-renew ${h}`)].sort());
    for (const name of ['pki-serve', 'pki-renew']) {
      const child = servers.get(name)!;
      await waitFor(() => child.exitCode !== null || child.signalCode !== null, { what: `${name} stopped by its stop hook`, interval: 100 });
    }
    const after = snapshots();
    for (const host of HOSTS) {
      expect(pkiUnits(host), host).toEqual([]);
      const expected = host === ONLINE_CA ? [RENEW_UNIT, SERVE_UNIT, ...['ca.pem', 'ca_key.pem', 'crl.pem', 'topology.json'].map((f) => `${SERVE_DIR}/${f}`)] : [RENEW_UNIT];
      expect(touched(before.get(host)!, after.get(host)!), host).toEqual(expected.sort());
    }
    expect(existsSync(join(rootOf(ONLINE_CA), SERVE_DIR))).toBe(false);
    expect(held(RENEWER, 'server').serial).toBe(renewed); // offline runs keep a valid certificate the daemon renewed
  }, PLAYBOOK_TEST_MS);

  // BIND instead of meshplane-dns on one host, chosen in its inventory entry. named runs here as
  // the distribution's unit would, chrooted into the host's root, in the host's namespace; it is
  // running before the switch (with a configuration of its own, on another port: meshplane-dns
  // holds port 53 until the role stops it), so the role's rndc reload is what makes it serve.
  const BIND_HOST = 'host2';
  const BIND_ENTRY = '          shard_id: a\n';
  const RNDC_KEY = 'etc/bind/rndc.key';
  const DNS_UNIT = 'etc/systemd/system/meshplane-dns.service';
  /** named's own state (managed keys), not the role's files. */
  const notNamedState = (paths: string[]): string[] => paths.filter((p) => !p.startsWith('var/cache/bind/'));
  const isRender = (path: string): boolean => /^etc\/bind\/(meshplane|\.meshplane\.[0-9a-f]{16}\/.+)$/.test(path);
  let named: ChildProcess | undefined;
  const namedLog = join(work.path, 'named.log');
  let meshplaneAnswers: string[] = [];

  /** Every name of the mesh (A, AAAA), some unknown ones and every known address (PTR): what a host asks its DNS server. */
  function meshQueries(topology: Topology): string[] {
    const names = new Set(['nothere', 'db.nothere']);
    for (const host of Object.values(topology.hosts)) names.add(host.name);
    for (const service of Object.values(topology.services)) {
      names.add(service.name);
      for (const instance of service.instances) {
        names.add(`${instance.host}.${service.name}`);
        if (instance.shard !== null) names.add(`${instance.shard}.${service.name}`);
      }
      if (service.master !== null) names.add(`${service.name}-master`);
    }
    names.add('db-backup'); // removed above: NXDOMAIN
    const addresses = new Set(Object.values(topology.hosts).flatMap((h) => [...h.ips, ...h.public_ips, ...Object.values(h.overlays)]));
    return [...[...names].flatMap((name) => [`${name}.mesh.internal A`, `${name}.mesh.internal AAAA`]), ...[...addresses].map((a) => `-x ${a}`)];
  }

  /** The queries asked with dig on the host (from 127.0.0.1, so in its view), each as "query: status, sorted answer". */
  async function digOnHost(host: string, queries: readonly string[]): Promise<string[]> {
    const file = join(work.path, `queries-${host}.txt`);
    writeFileSync(file, `${queries.join('\n')}\n`);
    const result = await runAsync('ip', ['netns', 'exec', `mpans-${host}`, 'dig', '@127.0.0.1', '+tries=1', '+time=10', '-f', file], 120_000);
    const blocks = result.stdout.split(/(?=;; Got answer:)/).filter((block) => block.includes('->>HEADER<<-'));
    expect(blocks.length, `dig on ${host}: ${result.stdout.slice(-2000)}${result.stderr}`).toBe(queries.length);
    return blocks.map((block, i) => {
      const reply = parseDig(block);
      return `${queries[i]}: ${reply.status}, ${reply.answer.map((r) => `${r.name.toLowerCase()} ${r.type} ${r.data}`).sort().join(', ')}`;
    });
  }

  it('serves a host with BIND when its dns_engine is bind: meshplane-dns stopped, the whole mesh rendered and checked, named reloaded by rndc', async () => {
    const topology = compiled();
    meshplaneAnswers = await digOnHost(BIND_HOST, meshQueries(topology));
    // named as the bind9 package leaves it: installed, running, a configuration of its own.
    const root = rootOf(BIND_HOST);
    for (const dir of ['etc/bind', 'var/cache/bind', 'run/named']) mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, 'etc/bind/named.conf'), 'options {\n  directory "/var/cache/bind";\n  listen-on port 5353 { 127.0.0.1; };\n  listen-on-v6 { none; };\n};\n');
    expect(run('rndc-confgen', ['-a', '-c', join(root, RNDC_KEY)]).status).toBe(0);
    named = spawn('ip', ['netns', 'exec', `mpans-${BIND_HOST}`, 'named', '-g', '-t', root, '-c', '/etc/bind/named.conf', '-u', 'root', '-n', '1'], { stdio: ['ignore', 'ignore', openSync(namedLog, 'a')] });
    servers.set('named', named);
    const rndc = (command: string): Promise<{ status: number; stdout: string; stderr: string }> => runAsync('ip', ['netns', 'exec', `mpans-${BIND_HOST}`, 'rndc', '-k', join(root, RNDC_KEY), command]);
    await waitFor(
      async () => {
        if (named!.exitCode !== null) throw new Error(`named exited ${named!.exitCode}`);
        return (await rndc('status')).status === 0;
      },
      { what: 'named taking rndc commands', interval: 200, explain: () => readFileSync(namedLog, 'utf8') },
    );

    writeFileSync(controller.inventory, readFileSync(controller.inventory, 'utf8').replace(BIND_ENTRY, `${BIND_ENTRY}          dns_engine: bind\n`));
    const before = snapshots();
    const hooks = restarts().length;
    const report = await playbook(controller);
    expectConverged(report);
    expect(changedHosts(report)).toEqual([BIND_HOST]);
    // meshplane-dns stopped first; the render checked (named-checkconf -z before the swap, then over the whole configuration), then rndc reload.
    expect(restarts(hooks)).toEqual([`stop dns ${BIND_HOST}`, `reload named ${BIND_HOST}`]);
    expect(changedOn(report, 'Render the mesh zone for BIND, checked with named-checkconf before it replaces the previous render')).toEqual([BIND_HOST]);
    expect(ranOn(report, 'Check the BIND configuration')).toEqual([BIND_HOST]);
    expect(changedOn(report, 'Reload BIND with dns_bind_reload_command')).toEqual([BIND_HOST]);
    const stopped = servers.get(BIND_HOST)!;
    await waitFor(() => stopped.exitCode !== null || stopped.signalCode !== null, { what: `meshplane-dns of ${BIND_HOST} stopped by dns_stop_command`, interval: 100 });
    const after = snapshots();
    for (const host of HOSTS.filter((h) => h !== BIND_HOST)) expect(touched(before.get(host)!, after.get(host)!), host).toEqual([]);
    const changed = notNamedState(touched(before.get(BIND_HOST)!, after.get(BIND_HOST)!));
    expect(changed.filter((p) => !isRender(p))).toEqual(['etc/bind/named.conf', 'etc/meshplane/mesh-topology.json', DNS_UNIT]);
    expect(changed.filter(isRender).length).toBeGreaterThan(1);
    expect(existsSync(join(root, DNS_UNIT))).toBe(false);
    // The whole mesh's topology (every view), not the host's own.
    expect(readFileSync(join(root, 'etc/meshplane/mesh-topology.json'), 'utf8')).toBe(readFileSync(join(work.path, 'controller/topology.json'), 'utf8'));
    const conf = readFileSync(join(root, 'etc/bind/named.conf'), 'utf8');
    expect(conf).toContain('listen-on port 53 { 127.0.0.1; };');
    expect(conf).toContain('include "/etc/bind/meshplane/named.conf";');
    // Reloaded: named now answers the mesh domain on port 53 (meshplane-dns is gone: what answers is BIND).
    await waitFor(
      async () => {
        const reply = await runAsync('ip', ['netns', 'exec', `mpans-${BIND_HOST}`, 'dig', '@127.0.0.1', '+tries=1', '+time=2', 'version.bind', 'CH', 'TXT']);
        return reply.stdout.includes('status: NOERROR') && /"9\.\d+/.test(reply.stdout);
      },
      { what: 'BIND answering on port 53 after the reload', explain: () => readFileSync(namedLog, 'utf8').slice(-3000) },
    );
    expect(named.exitCode).toBeNull();
  }, PLAYBOOK_TEST_MS);

  it('answers on that host through BIND as meshplane-dns did: every name in its view, getent, other names forwarded', async () => {
    expect(await digOnHost(BIND_HOST, meshQueries(compiled()))).toEqual(meshplaneAnswers);
    const topology = compiled();
    for (const service of ['db', 'web', 'gateway']) {
      expect(await getent(BIND_HOST, service), service).toEqual({ status: 0, addresses: expectedView(topology, BIND_HOST, service) });
    }
    // Its view: hosts it shares an overlay with by their overlay address, the others by their own.
    const viewer = topology.hosts[BIND_HOST]!;
    for (const host of ['host1', 'host3', 'host4']) expect((await getent(BIND_HOST, host)).addresses, host).toEqual([...addressesSeenBy(viewer, topology.hosts[host]!)].sort());
    expect((await getent(BIND_HOST, 'host1')).addresses).toEqual(['100.64.40.1']);
    expect((await getent(BIND_HOST, 'www.example.net')).addresses).toEqual(['198.18.4.200']); // forwarded to the resolver the host had
    expect((await getent(BIND_HOST, 'nothere')).status).toBe(2);
  }, 120_000);

  it('reports changed=0 on a second run with BIND and touches no file', async () => {
    const before = snapshots();
    const hooks = restarts().length;
    const report = await playbook(controller);
    expectConverged(report);
    expect(restarts(hooks)).toEqual([]);
    expect(Object.fromEntries(Object.entries(report.stats).map(([h, s]) => [h, s.changed]))).toEqual(Object.fromEntries(HOSTS.map((h) => [h, 0])));
    const after = snapshots();
    for (const host of HOSTS) expect(notNamedState(touched(before.get(host)!, after.get(host)!)), host).toEqual([]);
    expect(named!.exitCode).toBeNull();
  }, PLAYBOOK_TEST_MS);

  it("switches back to meshplane's engine: named stopped, the render, its configuration and the mesh topology removed, meshplane-dns back", async () => {
    writeFileSync(controller.inventory, readFileSync(controller.inventory, 'utf8').replace(`${BIND_ENTRY}          dns_engine: bind\n`, BIND_ENTRY));
    const before = snapshots();
    const hooks = restarts().length;
    const report = await playbook(controller);
    expectConverged(report);
    expect(changedHosts(report)).toEqual([BIND_HOST]);
    expect(restarts(hooks)).toEqual([`stop named ${BIND_HOST}`, `dns ${BIND_HOST}`]);
    await waitFor(() => named!.exitCode !== null || named!.signalCode !== null, { what: 'named stopped by dns_bind_stop_command', interval: 100 });
    const after = snapshots();
    for (const host of HOSTS.filter((h) => h !== BIND_HOST)) expect(touched(before.get(host)!, after.get(host)!), host).toEqual([]);
    const changed = notNamedState(touched(before.get(BIND_HOST)!, after.get(BIND_HOST)!));
    expect(changed.filter((p) => !isRender(p))).toEqual(['etc/bind/named.conf', 'etc/meshplane/mesh-topology.json', DNS_UNIT]);
    const root = rootOf(BIND_HOST);
    expect(readdirSync(join(root, 'etc/bind')).sort()).toEqual(['rndc.key']); // what the bind9 package left, no render
    expect(existsSync(join(root, 'etc/meshplane/mesh-topology.json'))).toBe(false);
    // meshplane-dns from its unit again: the same answers as before BIND.
    await startDns(BIND_HOST);
    expect(await digOnHost(BIND_HOST, meshQueries(compiled()))).toEqual(meshplaneAnswers);
    expect(await getent(BIND_HOST, 'db')).toEqual({ status: 0, addresses: expectedView(compiled(), BIND_HOST, 'db') });
  }, PLAYBOOK_TEST_MS);
});
