/**
 * End to end with the real resolver: three mesh hosts and one outsider as
 * network namespaces, glibc's `getent` in each with its own resolv.conf
 * (bind-mounted in a private mount namespace). h1, h2 and the outsider ask
 * a central meshplane server on the hub (198.18.1.1), which picks each
 * asker's view by source address (the outsider asks its second address,
 * 198.18.1.2); h3 runs its own server on 127.0.0.1 as the Ansible role
 * deploys it, forwarding to the hub. NSD on the hub (198.18.1.2 port 5300)
 * is the upstream for names outside the mesh.
 *
 *   h1 198.18.1.11  ova 100.64.12.1            shard s1
 *   h2 198.18.1.12  ova 100.64.12.2, ovb 100.64.13.2
 *   h3 198.18.1.13  ovb 100.64.13.3
 *   out 198.18.1.99 (not in the mesh)
 *   hub also 100.64.12.254 on ova, which h1 (given 100.64.12.1 too) asks
 *       from its overlay address
 *   ns2 198.18.1.98 + 198.18.1.97 (not in the mesh): a second meshplane
 *       server with no upstream (so no RA bit) on .98, and a decoy NSD on
 *       .97 that claims mesh.internal with wrong addresses. A resolv.conf
 *       naming .98 then .97 shows whether glibc accepted our reply or moved
 *       on to the next server (which it does for replies it finds lame).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTopology } from '../src/topology/index.js';
import { compileMesh } from './support/dns.js';
import type { MeshSpec } from './support/dns.js';
import { createNetwork, waitForOutput } from './support/netns.js';
import type { TestNetwork } from './support/netns.js';
import { CLI, tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const MESH: MeshSpec = {
  overlays: [
    { name: 'ova', network: '100.64.12.0/24', port: 6560 },
    { name: 'ovb', network: '100.64.13.0/24', port: 6561 },
  ],
  hosts: [
    { name: 'h1', ips: ['198.18.1.11'], overlays: { ova: '100.64.12.1' }, shard: 's1', groups: ['app'] },
    { name: 'h2', ips: ['198.18.1.12'], overlays: { ova: '100.64.12.2', ovb: '100.64.13.2' }, groups: ['app'] },
    { name: 'h3', ips: ['198.18.1.13', '2001:db8::13'], overlays: { ovb: '100.64.13.3' }, groups: ['app'] },
    // Only in DNS: the 60 instances of "big" (no traffic goes to them).
    ...Array.from({ length: 60 }, (_, i) => ({ name: `f${String(i + 1).padStart(2, '0')}`, ips: [`198.18.1.${100 + i}`], groups: ['fleet'] })),
  ],
  services: `web:
  scheduling_group: app
  master_election: true
big:
  scheduling_group: fleet
capped:
  scheduling_group: fleet
  dns_max_answers: 5
`,
};

const work = tempDir('dns-getent');
let net: TestNetwork;

/**
 * `getent` inside a host's namespace with a resolv.conf (by default the host's own), optionally under
 * strace to see which sockets glibc opened.
 */
async function getentRaw(host: string, database: 'hosts' | 'ahosts', name: string, options: { resolv?: string; trace?: string } = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  const resolv = join(work.path, `resolv-${options.resolv ?? host}.conf`);
  const command = options.trace === undefined ? 'getent "$1" "$2"' : 'strace -f -qq -e trace=socket,connect -o "$3" getent "$1" "$2"';
  return net.exec(net.hosts.get(host)!, 'unshare', ['-m', 'sh', '-c', `mount --bind "$0" /etc/resolv.conf && ${command}`, resolv, database, name, options.trace ?? '']);
}

async function getent(host: string, database: 'hosts' | 'ahosts', name: string, options: { resolv?: string; trace?: string } = {}): Promise<string[]> {
  const result = await getentRaw(host, database, name, options);
  if (result.status !== 0) throw new Error(`getent ${database} ${name} on ${host} exited ${result.status}: ${result.stderr}`);
  return result.stdout.trim().split('\n');
}

/** Distinct addresses in `getent ahosts` output (one line per socket type). */
async function ahosts(host: string, name: string, options: { resolv?: string; trace?: string } = {}): Promise<string[]> {
  return [...new Set((await getent(host, 'ahosts', name, options)).map((line) => line.split(/\s+/)[0]!))].sort();
}

/** The DNS sockets glibc opened, in order, from an strace log: "udp"/"tcp" per socket(AF_INET*) call. */
function dnsSockets(traceFile: string): string[] {
  return readFileSync(traceFile, 'utf8')
    .split('\n')
    .flatMap((line) => {
      const match = /socket\(AF_INET6?, (SOCK_DGRAM|SOCK_STREAM)/.exec(line);
      return match === null ? [] : [match[1] === 'SOCK_DGRAM' ? 'udp' : 'tcp'];
    });
}

beforeAll(async () => {
  net = createNetwork(
    'mpdns-',
    // 100.64.12.254: the hub on h1's overlay ova, so that h1 can ask from its overlay address.
    ['198.18.1.1/24', '198.18.1.2/24', '100.64.12.254/24'],
    new Map([
      ['h1', '198.18.1.11/24'],
      ['h2', '198.18.1.12/24'],
      ['h3', '198.18.1.13/24'],
      ['out', '198.18.1.99/24'],
      ['ns2', '198.18.1.98/24'],
    ]),
  );
  await net.exec(net.hosts.get('h1')!, 'ip', ['addr', 'add', '100.64.12.1/24', 'dev', 'eth0']);
  const ns2 = net.hosts.get('ns2')!;
  await net.exec(ns2, 'ip', ['addr', 'add', '198.18.1.97/24', 'dev', 'eth0']);
  const topologyFile = join(work.path, 'topology.json');
  writeTopology(topologyFile, compileMesh(work.path, MESH));

  // NSD: the upstream, authoritative for example.test.
  const nsdDir = join(work.path, 'nsd');
  mkdirSync(nsdDir);
  writeFileSync(join(nsdDir, 'example.test.zone'), '$ORIGIN example.test.\n$TTL 60\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 198.18.1.2\nwww IN A 198.18.1.200\n');
  writeFileSync(
    join(nsdDir, 'nsd.conf'),
    `server:\n  ip-address: 198.18.1.2@5300\n  username: ""\n  chroot: ""\n  zonesdir: "${nsdDir}"\n  database: ""\n  pidfile: "${nsdDir}/nsd.pid"\n  xfrdfile: "${nsdDir}/xfrd.state"\n  zonelistfile: "${nsdDir}/zone.list"\n  logfile: "${nsdDir}/nsd.log"\n  rrl-ratelimit: 0\n  verbosity: 1\nremote-control:\n  control-enable: no\nzone:\n  name: example.test\n  zonefile: example.test.zone\n`,
  );
  net.spawn(net.hub, 'nsd', ['-d', '-c', join(nsdDir, 'nsd.conf')]);

  // The decoy: wrong answers for mesh.internal, and the only server that knows decoy.test.
  const decoyDir = join(work.path, 'decoy');
  mkdirSync(decoyDir);
  writeFileSync(
    join(decoyDir, 'mesh.zone'),
    '$ORIGIN mesh.internal.\n$TTL 60\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 198.18.1.97\nh1 IN A 198.18.1.250\nh1 IN AAAA 2001:db8::bad\nnothere IN A 198.18.1.251\n',
  );
  writeFileSync(join(decoyDir, 'decoy.zone'), '$ORIGIN decoy.test.\n$TTL 60\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 198.18.1.97\nwww IN A 198.18.1.252\n');
  writeFileSync(
    join(decoyDir, 'nsd.conf'),
    `server:\n  ip-address: 198.18.1.97@53\n  username: ""\n  chroot: ""\n  zonesdir: "${decoyDir}"\n  database: ""\n  pidfile: "${decoyDir}/nsd.pid"\n  xfrdfile: "${decoyDir}/xfrd.state"\n  zonelistfile: "${decoyDir}/zone.list"\n  logfile: "${decoyDir}/nsd.log"\n  rrl-ratelimit: 0\n  verbosity: 1\nremote-control:\n  control-enable: no\nzone:\n  name: mesh.internal\n  zonefile: mesh.zone\nzone:\n  name: decoy.test\n  zonefile: decoy.zone\n`,
  );
  net.spawn(ns2, 'nsd', ['-d', '-c', join(decoyDir, 'nsd.conf')]);

  // The central server on the hub: no --host, views purely by source address.
  // 0.0.0.0 becomes one socket per hub address (127.0.0.1, 198.18.1.1, 198.18.1.2), so every reply
  // leaves from the address it was sent to, which glibc insists on.
  const central = net.spawn(net.hub, process.execPath, [CLI, 'dns', '--topology', topologyFile, '--listen', '0.0.0.0:53', '--forward', '198.18.1.2:5300']);
  await waitForOutput(central, 'serving on');
  // h3's own server on loopback, its upstream taken from "the host's previous resolv.conf".
  writeFileSync(join(work.path, 'upstream-h3.conf'), 'nameserver 198.18.1.1\n');
  const local = net.spawn(net.hosts.get('h3')!, process.execPath, [CLI, 'dns', '--topology', topologyFile, '--host', 'h3', '--listen', '127.0.0.1:53', '--resolv-conf', join(work.path, 'upstream-h3.conf')]);
  await waitForOutput(local, 'serving on');
  // A server with no upstream: REFUSED outside the zone, and RA never set, so only AA keeps glibc from
  // taking an empty answer for a lame one.
  const noForward = net.spawn(ns2, process.execPath, [CLI, 'dns', '--topology', topologyFile, '--listen', '198.18.1.98:53', '--no-forward']);
  await waitForOutput(noForward, 'serving on');

  for (const host of ['h1', 'h2']) writeFileSync(join(work.path, `resolv-${host}.conf`), 'nameserver 198.18.1.1\nsearch mesh.internal\noptions timeout:2 attempts:2\n');
  // The outsider asks the hub's other address.
  writeFileSync(join(work.path, 'resolv-out.conf'), 'nameserver 198.18.1.2\nsearch mesh.internal\noptions timeout:2 attempts:2\n');
  writeFileSync(join(work.path, 'resolv-h3.conf'), 'nameserver 127.0.0.1\nsearch mesh.internal\noptions timeout:2 attempts:2\n');
  // h1 asking the hub's ova address, so its queries come from its overlay address 100.64.12.1.
  writeFileSync(join(work.path, 'resolv-overlay.conf'), 'nameserver 100.64.12.254\nsearch mesh.internal\noptions timeout:2 attempts:2\n');
  // h2 again, through the server without upstream first and the decoy second.
  writeFileSync(join(work.path, 'resolv-decoy.conf'), 'nameserver 198.18.1.98\nnameserver 198.18.1.97\nsearch mesh.internal\noptions timeout:2 attempts:1\n');
  // h2 again, with EDNS0: glibc then offers a 1200-byte UDP buffer.
  writeFileSync(join(work.path, 'resolv-edns.conf'), 'nameserver 198.18.1.1\nsearch mesh.internal\noptions timeout:2 attempts:2 edns0\n');

  // NSD takes a moment to load its zone.
  await waitFor(async () => (await net.exec(net.hub, 'dig', ['+short', '+time=1', '+tries=1', '-p', '5300', '@198.18.1.2', 'www.example.test'])).stdout.trim() === '198.18.1.200', { what: 'NSD answering', interval: 100 });
  await waitFor(async () => (await net.exec(ns2, 'dig', ['+short', '+time=1', '+tries=1', '@198.18.1.97', 'www.decoy.test'])).stdout.trim() === '198.18.1.252', { what: 'the decoy NSD answering', interval: 100 });
}, 120_000);

afterAll(() => {
  net?.destroy();
  work.remove();
});

describe('getent through meshplane DNS, per host', () => {
  it('gives each host overlay addresses for hosts it shares an overlay with, public ones otherwise', async () => {
    expect(await ahosts('h1', 'web.mesh.internal')).toEqual(['100.64.12.1', '100.64.12.2', '198.18.1.13', '2001:db8::13'].sort());
    expect(await ahosts('h2', 'web.mesh.internal')).toEqual(['100.64.12.1', '100.64.12.2', '100.64.13.3'].sort());
    expect(await ahosts('h3', 'web.mesh.internal')).toEqual(['100.64.13.2', '100.64.13.3', '198.18.1.11'].sort());
    expect(await ahosts('out', 'web.mesh.internal')).toEqual(['198.18.1.11', '198.18.1.12', '198.18.1.13', '2001:db8::13'].sort());
  });

  it('recognizes a host by its overlay address as well as its public one', async () => {
    const viaOverlay = await ahosts('h1', 'web.mesh.internal', { resolv: 'overlay' });
    expect(viaOverlay).toEqual(['100.64.12.1', '100.64.12.2', '198.18.1.13', '2001:db8::13'].sort());
    // An unknown asker would have got the public view instead.
    expect(viaOverlay).not.toEqual(await ahosts('out', 'web.mesh.internal'));
  });

  it('resolves every name form: host.svc, shard.svc, svc-master and host', async () => {
    expect(await getent('h3', 'hosts', 'h1.web.mesh.internal')).toEqual(['198.18.1.11     h1.web.mesh.internal']);
    expect(await getent('h2', 'hosts', 's1.web.mesh.internal')).toEqual(['100.64.12.1     s1.web.mesh.internal']);
    expect(await getent('h2', 'hosts', 'h3.mesh.internal')).toEqual(['100.64.13.3     h3.mesh.internal']);
    const master = await getent('out', 'hosts', 'web-master.mesh.internal');
    expect(master).toHaveLength(1);
    expect(master[0]).toMatch(/^198\.18\.1\.1[123] +web-master\.mesh\.internal$/);
  });

  it('asks AAAA first and falls back to A (NODATA, not NXDOMAIN, for IPv4-only names)', async () => {
    // getent hosts prefers IPv6; h3 has an IPv6 address in the public view.
    expect(await getent('out', 'hosts', 'h3.mesh.internal')).toEqual(['2001:db8::13    h3.mesh.internal']);
    expect(await getent('out', 'hosts', 'h1.mesh.internal')).toEqual(['198.18.1.11     h1.mesh.internal']);
  });

  it('resolves a 60-instance service completely (truncated over UDP, retried over TCP)', async () => {
    const trace = join(work.path, 'big.strace');
    const addresses = await ahosts('h1', 'big.mesh.internal', { trace });
    expect(addresses).toHaveLength(60);
    expect(addresses).toContain('198.18.1.159');
    // glibc asked over UDP first, got TC, and asked again over TCP (to the same server).
    const sockets = dnsSockets(trace);
    expect(sockets[0]).toBe('udp');
    expect(sockets).toContain('tcp');
    expect(readFileSync(trace, 'utf8')).toMatch(/connect\(\d+, \{sa_family=AF_INET, sin_port=htons\(53\), sin_addr=inet_addr\("198\.18\.1\.1"\)/);
    expect(await ahosts('h3', 'big.mesh.internal')).toHaveLength(60);
  });

  it('answers a glibc that sends EDNS0 within its 1200-byte buffer, over UDP alone', async () => {
    const trace = join(work.path, 'big-edns.strace');
    expect(await ahosts('h2', 'big.mesh.internal', { resolv: 'edns', trace })).toHaveLength(60);
    expect(dnsSockets(trace)).not.toContain('tcp');
  });

  it('rotates a service\'s addresses between lookups, and caps them with dns_max_answers', async () => {
    // h2 sees web as three IPv4 addresses (no AAAA); gethostbyname keeps the server's order.
    const firsts = new Set<string>();
    for (let i = 0; i < 6; i++) firsts.add((await getent('h2', 'hosts', 'web.mesh.internal'))[0]!.split(/\s+/)[0]!);
    expect(firsts.size).toBeGreaterThan(1);
    // The central server runs a worker per core: each worker rotates its own windows, and the kernel
    // picks the worker, so 3 lookups need not give 3 different windows; a few more hand out all 15.
    const seen = new Set<string>();
    for (let i = 0; i < 12 && seen.size < 15; i++) {
      const capped = await ahosts('h1', 'capped.mesh.internal');
      expect(capped).toHaveLength(5);
      capped.forEach((address) => seen.add(address));
    }
    expect(seen.size).toBe(15);
  });

  it('resolves addresses back to host names (PTR), overlay addresses only for hosts on that overlay', async () => {
    // None of these is in /etc/hosts, which glibc would consult first.
    const line = async (host: string, address: string): Promise<string[]> => (await getent(host, 'hosts', address)).map((l) => l.split(/\s+/).join(' '));
    expect(await line('out', '198.18.1.12')).toEqual(['198.18.1.12 h2.mesh.internal']);
    expect(await line('h3', '2001:db8::13')).toEqual(['2001:db8::13 h3.mesh.internal']);
    expect(await line('h1', '100.64.12.2')).toEqual(['100.64.12.2 h2.mesh.internal']);
    expect(await line('h3', '100.64.13.2')).toEqual(['100.64.13.2 h2.mesh.internal']);
    // The outsider and h3 share no overlay with ova's addresses: not found (NXDOMAIN).
    expect((await getentRaw('out', 'hosts', '100.64.12.2')).status).toBe(2);
    expect((await getentRaw('h3', 'hosts', '100.64.12.1')).status).toBe(2);
  });

  it('matches names case-insensitively', async () => {
    const lines = await getent('h3', 'hosts', 'H1.Web.MESH.internal');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^198\.18\.1\.11\s+h1\.web\.mesh\.internal$/i);
  });

  it('resolves unqualified names through the search list', async () => {
    expect(await getent('h1', 'hosts', 'h2')).toEqual(['100.64.12.2     h2.mesh.internal']);
    expect((await ahosts('h3', 'web')).length).toBe(3);
  });

  it('resolves outside names through forwarding, centrally and from the per-host server', async () => {
    expect(await getent('h1', 'hosts', 'www.example.test')).toEqual(['198.18.1.200    www.example.test']);
    expect(await getent('h3', 'hosts', 'www.example.test')).toEqual(['198.18.1.200    www.example.test']);
  });

  it('reports unknown mesh names as not found', async () => {
    const result = await net.exec(net.hosts.get('h1')!, 'unshare', ['-m', 'sh', '-c', `mount --bind "$0" /etc/resolv.conf && getent hosts nothere.mesh.internal`, join(work.path, 'resolv-h1.conf')]);
    expect(result.status).toBe(2);
  });

  it('sets AA on empty answers: glibc keeps our NODATA and NXDOMAIN instead of asking the next server', async () => {
    // The setup works: REFUSED (no upstream) sends glibc on to the decoy, which knows decoy.test.
    expect(await getent('h2', 'hosts', 'www.decoy.test', { resolv: 'decoy' })).toEqual(['198.18.1.252    www.decoy.test']);
    // h1 is IPv4-only in h2's view (ova): the AAAA question gets NODATA. Without AA (and with no RA)
    // glibc would call that lame and take the decoy's 2001:db8::bad.
    expect(await getent('h2', 'hosts', 'h1.mesh.internal', { resolv: 'decoy' })).toEqual(['100.64.12.1     h1.mesh.internal']);
    expect(await ahosts('h2', 'h1.mesh.internal', { resolv: 'decoy' })).toEqual(['100.64.12.1']);
    // NXDOMAIN is final too: the decoy's nothere is never asked for.
    expect((await getentRaw('h2', 'hosts', 'nothere.mesh.internal', { resolv: 'decoy' })).status).toBe(2);
  });

  it('gives glibc REFUSED for outside names when no upstream is set (and nothing else answers)', async () => {
    writeFileSync(join(work.path, 'resolv-refused.conf'), 'nameserver 198.18.1.98\noptions timeout:2 attempts:1\n');
    const result = await getentRaw('h2', 'hosts', 'www.example.test', { resolv: 'refused' });
    expect(result.status).toBe(2);
    // While mesh names still resolve through the same server.
    expect(await getent('h2', 'hosts', 'h3.mesh.internal', { resolv: 'refused' })).toEqual(['100.64.13.3     h3.mesh.internal']);
  });
});
