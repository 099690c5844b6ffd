/**
 * `meshplane up` follows every accepted edit of its inputs, not only in
 * DNS: the built CLI runs on copies of the example inputs, which are then
 * edited as an editor saves (a rename into place). After each edit DNS
 * (dig), STATE_DIR/topology.json, the credentials on disk and the gateway
 * (curl through its http front, answered by the demo backend with its host
 * name) must all agree; a bad edit changes nothing and says why.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Topology } from '../src/topology/index.js';
import { addressesOf, dig, runAsync } from './support/dns.js';
import { CLI, REPO_ROOT, tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const DOMAIN = 'mesh.internal';
const WEB_HOSTS = ['host1', 'host2', 'host3', 'host4'];
const IP: Record<string, string> = { host1: '127.0.1.1', host2: '127.0.1.2', host3: '127.0.1.3', host4: '127.0.1.4' };
/** host4 shares no overlay with anyone: DNS answers it the hosts' plain (loopback) addresses. */
const ASKER = IP['host4']!;
/** The example's http endpoint of web, on the gateway's public address. */
const FRONT = { address: '127.0.2.10', port: 10080, name: 'www.example.com' };
const WEB_PORT = 8081;
/** Requests that must all avoid a removed instance (round robin over the rest). */
const REQUESTS = 12;

const work = tempDir('up-reconcile');
const services = join(work.path, 'services.yml');
const inventory = join(work.path, 'hosts.yml');
const stateDir = join(work.path, 'state');
const exampleServices = readFileSync(join(REPO_ROOT, 'services.yml.example'), 'utf8');
const exampleInventory = readFileSync(join(REPO_ROOT, 'hosts.yml.example'), 'utf8');
const EXAMPLE_WEB = 'web:\n  scheduling_group: frontend\n  num_instances: 1\n';

/** The example with web placed by `placement` (YAML under `web:`), and round robin on its http endpoint so N requests reach every instance. */
function servicesWith(placement: string, extra = ''): string {
  expect(exampleServices).toContain(EXAMPLE_WEB);
  expect(exampleServices).toContain('      mode: http\n');
  return exampleServices.replace(EXAMPLE_WEB, `web:\n${placement}`).replace('      mode: http\n', '      mode: http\n      balance: round_robin\n') + extra;
}
const spread = (count: number): string => `  scheduling_groups: [frontend, backend]\n  num_instances: ${count}\n`;
const pinnedTo = (host: string): string => `  scheduling_group: solo_${host}\n  num_instances: 1\n`;

/** As an editor saves: the whole file written beside it, then renamed over it. */
function edit(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

let child: ChildProcessWithoutNullStreams;
let out = '';
let err = '';
let dnsServer: { address: string; port: number };

const topology = (): Topology => JSON.parse(readFileSync(join(stateDir, 'topology.json'), 'utf8')) as Topology;
const webHosts = (t: Topology): string[] => t.services['web']!.instances.map((i) => i.host).sort();
const dnsWeb = async (): Promise<string[]> => addressesOf(await dig(dnsServer, ['-b', ASKER, `web.${DOMAIN}`, 'A'])).sort();
const credentialOf = (host: string): string => join(stateDir, 'credentials', host, 'x509', 'web', 'client', 'cert.pem');

/** One request through the gateway's http front; the demo backend says which host it runs for. */
async function throughGateway(): Promise<string> {
  const result = await runAsync('curl', ['-sS', '--max-time', '10', '--resolve', `${FRONT.name}:${FRONT.port}:${FRONT.address}`, `http://${FRONT.name}:${FRONT.port}/`]);
  const host = /^hello from web on (\S+):/.exec(result.stdout)?.[1];
  if (host === undefined) throw new Error(`curl through the gateway: ${result.stdout}${result.stderr}`);
  return host;
}

async function hostsReached(count: number): Promise<Set<string>> {
  const reached = new Set<string>();
  for (let i = 0; i < count; i++) reached.add(await throughGateway());
  return reached;
}

/** Whether anything listens on address:port (a stopped demo backend refuses). */
function listening(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Waits for `line` printed (on stdout or stderr) after `mark` characters of that stream. */
async function printed(stream: 'out' | 'err', mark: number, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  return await waitFor(() => pattern.exec((stream === 'out' ? out : err).slice(mark)), { what, explain: () => `stdout:\n${out.slice(mark)}\nstderr:\n${err}` });
}

/** Marks where the output stands before an edit. */
const marks = (): { out: number; err: number } => ({ out: out.length, err: err.length });

/** Every instance of web reachable through the gateway, and nothing else. */
async function gatewayReachesExactly(hosts: readonly string[]): Promise<void> {
  await waitFor(async () => [...(await hostsReached(hosts.length * 2))].sort().join() === [...hosts].sort().join(), {
    what: `the gateway reaching exactly ${hosts.join(', ')}`,
    explain: async () => `reached: ${[...(await hostsReached(hosts.length * 2))].join(', ')}`,
  });
}

beforeAll(async () => {
  const solo = WEB_HOSTS.map((host) => `    solo_${host}:\n      hosts:\n        ${host}:\n`).join('');
  writeFileSync(inventory, `${exampleInventory.trimEnd()}\n${solo}`);
  writeFileSync(services, servicesWith(spread(2)));
  child = spawn(process.execPath, [CLI, 'up', '--state-dir', stateDir, '-s', services, '-i', inventory, '--dns-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { cwd: work.path });
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`up exited ${code}:\n${out}\n${err}`))));
  exited.catch(() => undefined);
  // A ceiling: up issues every credential and starts DNS, the gateway and the agents.
  await Promise.race([waitFor(() => out.includes('Ctrl-C stops it'), { what: 'up serving', deadline: 90_000, explain: () => `${out}\n${err}` }), exited]);
  const bound = /^DNS for mesh\.internal on ([\d.]+):(\d+) /m.exec(out);
  expect(bound, out).not.toBeNull();
  dnsServer = { address: bound![1]!, port: Number(bound![2]) };
}, 120_000);

afterAll(async () => {
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    process.kill(child.pid, 'SIGTERM');
    await waitFor(() => child.exitCode !== null || child.signalCode !== null, { what: 'up stopping on SIGTERM' }).catch(() => process.kill(child.pid!, 'SIGKILL'));
  }
  work.remove();
}, 60_000);

describe('meshplane up reconciles every accepted edit', () => {
  it('starts with the summary on stdout and the JSON log in STATE_DIR/up.log', async () => {
    expect(out).not.toMatch(/^\{"level"/m);
    expect(err).not.toMatch(/^\{"level"/m);
    await waitFor(() => existsSync(join(stateDir, 'up.log')) && readFileSync(join(stateDir, 'up.log'), 'utf8').includes('"gateway ready"'), { what: 'gateway ready in up.log' });
    const hosts = webHosts(topology());
    expect(hosts).toHaveLength(2);
    expect(await dnsWeb()).toEqual(hosts.map((h) => IP[h]).sort());
    await gatewayReachesExactly(hosts);
  }, 120_000);

  it('add: a new instance gets DNS, topology.json, credentials, an agent and a backend', async () => {
    const before = webHosts(topology());
    const mark = marks();
    edit(services, servicesWith(spread(3)));
    await printed('out', mark.out, /^meshplane: topology written \(4 services, 5 hosts\)$/m, 'the change applied');
    const after = webHosts(topology());
    const added = after.filter((h) => !before.includes(h));
    expect(added).toHaveLength(1);
    const host = added[0]!;
    expect(out.slice(mark.out)).toContain(`meshplane: + web on ${host} (agent, backend ${IP[host]}:${WEB_PORT})\n`);
    expect(existsSync(credentialOf(host))).toBe(true);
    await waitFor(async () => (await dnsWeb()).join() === after.map((h) => IP[h]).sort().join(), { what: `DNS answering ${after.join(', ')}` });
    await gatewayReachesExactly(after);
  }, 120_000);

  it('remove: DNS drops the instance, the gateway sends it nothing, its agent and backend stop', async () => {
    const before = webHosts(topology());
    const mark = marks();
    edit(services, servicesWith(spread(1)));
    await printed('out', mark.out, /^meshplane: topology written/m, 'the change applied');
    const after = webHosts(topology());
    expect(after).toHaveLength(1);
    const removed = before.filter((h) => !after.includes(h));
    expect(removed).toHaveLength(2);
    for (const host of removed) {
      expect(out.slice(mark.out)).toContain(`meshplane: - web on ${host} (agent and backend stopped)\n`);
      expect(await listening(IP[host]!, WEB_PORT)).toBe(false);
    }
    await waitFor(async () => (await dnsWeb()).join() === IP[after[0]!], { what: `DNS answering only ${after[0]!}` });
    expect([...(await hostsReached(REQUESTS))]).toEqual(after);
  }, 120_000);

  it('move: the instance leaves one host for another, and DNS, topology.json, credentials and the gateway agree', async () => {
    const [from] = webHosts(topology());
    const to = WEB_HOSTS.find((h) => h !== from)!;
    const mark = marks();
    edit(services, servicesWith(pinnedTo(to)));
    await printed('out', mark.out, /^meshplane: topology written/m, 'the change applied');
    expect(webHosts(topology())).toEqual([to]);
    const lines = out.slice(mark.out);
    expect(lines).toContain(`meshplane: + web on ${to} (agent, backend ${IP[to]}:${WEB_PORT})\n`);
    expect(lines).toContain(`meshplane: - web on ${from!} (agent and backend stopped)\n`);
    expect(existsSync(credentialOf(to))).toBe(true);
    expect(await listening(IP[from!]!, WEB_PORT)).toBe(false);
    await waitFor(async () => (await dnsWeb()).join() === IP[to], { what: `DNS answering only ${to}` });
    await waitFor(async () => (await throughGateway()) === to, { what: `the gateway reaching ${to}` });
    expect([...(await hostsReached(REQUESTS))]).toEqual([to]);
  }, 120_000);

  it('bad edits: rejected with their code, the previous topology keeps running; a fix then applies', async () => {
    const [host] = webHosts(topology());
    const written = readFileSync(join(stateDir, 'topology.json'), 'utf8');

    let mark = marks();
    edit(services, `${servicesWith(pinnedTo(host!))}\nbroken: [\n`);
    await printed('err', mark.err, /^meshplane: edit rejected \(CONFIG_ERR_YAML_SYNTAX\): .*services\.yml:\d+:\d+.*; still running the previous topology$/m, 'the syntax error reported');

    mark = marks();
    edit(services, servicesWith('  scheduling_group: frontnd\n  num_instances: 1\n'));
    await printed('err', mark.err, /^meshplane: edit rejected \(CONFIG_ERR_UNKNOWN_GROUP\): .*frontnd.*; still running the previous topology$/m, 'the validation error reported');

    expect(readFileSync(join(stateDir, 'topology.json'), 'utf8')).toBe(written);
    expect(await dnsWeb()).toEqual([IP[host!]]);
    expect([...(await hostsReached(REQUESTS))]).toEqual([host]);
    expect(out.slice(mark.out)).not.toContain('topology written');

    mark = marks();
    edit(services, servicesWith(spread(2)));
    await printed('out', mark.out, /^meshplane: topology written/m, 'the fix applied');
    const after = webHosts(topology());
    expect(after).toHaveLength(2);
    await waitFor(async () => (await dnsWeb()).join() === after.map((h) => IP[h]).sort().join(), { what: `DNS answering ${after.join(', ')}` });
    await gatewayReachesExactly(after);
  }, 120_000);

  it('change: a new address of a host restarts its instance there, with a certificate for it, and DNS follows', async () => {
    const hosts = webHosts(topology());
    // Not the host dig asks as: its view is found by its address.
    const host = hosts.find((h) => IP[h] !== ASKER)!;
    const [old, moved] = [IP[host]!, IP[host]!.replace(/\.(\d+)$/, (_m, last: string) => `.${Number(last) + 20}`)];
    const text = readFileSync(inventory, 'utf8');
    expect(text).toContain(`ip: ${old}\n`);
    const mark = marks();
    edit(inventory, text.replace(`ip: ${old}\n`, `ip: ${moved}\n`));
    await printed('out', mark.out, /^meshplane: topology written/m, 'the change applied');
    const lines = out.slice(mark.out);
    expect(lines).toMatch(new RegExp(`^meshplane: ~ ${host} addresses \\(${old.replaceAll('.', '\\.')}.* -> ${moved.replaceAll('.', '\\.')}.*\\)$`, 'm'));
    expect(lines).toContain(`meshplane: ~ web on ${host} (restarted, settings changed: agent, backend ${moved}:${WEB_PORT})\n`);
    expect(lines).toMatch(new RegExp(`^meshplane: credentials issued on ${host}: .*web server`, 'm'));
    expect(topology().hosts[host]!.ips).toEqual([moved]);
    expect(await listening(old, WEB_PORT)).toBe(false);
    expect(await listening(moved, WEB_PORT)).toBe(true);
    IP[host] = moved;
    await waitFor(async () => (await dnsWeb()).join() === hosts.map((h) => IP[h]).sort().join(), { what: `DNS answering ${moved} for ${host}` });
    await gatewayReachesExactly(hosts);
  }, 120_000);

  it('the gateway stops with the last exposed service and starts again with the first', async () => {
    const hosts = webHosts(topology());
    let mark = marks();
    edit(services, servicesWith(`  enabled: false\n${spread(2)}`));
    await printed('out', mark.out, /^meshplane: topology written \(3 services/m, 'web disabled');
    let lines = out.slice(mark.out);
    expect(lines).toContain('meshplane: - gateway on gw1\n');
    for (const host of hosts) expect(lines).toContain(`meshplane: - web on ${host} (agent and backend stopped)\n`);
    expect(lines).toContain('meshplane: - service web\n');
    expect(await listening(FRONT.address, FRONT.port)).toBe(false);
    await waitFor(async () => (await dig(dnsServer, ['-b', ASKER, `web.${DOMAIN}`, 'A'])).status === 'NXDOMAIN', { what: 'web.mesh.internal gone from DNS' });

    mark = marks();
    edit(services, servicesWith(spread(2)));
    await printed('out', mark.out, /^meshplane: topology written \(4 services/m, 'web enabled again');
    lines = out.slice(mark.out);
    expect(lines).toMatch(/^meshplane: \+ gateway on gw1 \(agents register on 127\.0\.1\.10:8443, fronts on 127\.0\.2\.10\)$/m);
    const after = webHosts(topology());
    for (const host of after) expect(lines).toContain(`meshplane: + web on ${host} (agent, backend ${IP[host]}:${WEB_PORT})\n`);
    await gatewayReachesExactly(after);
  }, 120_000);
});
