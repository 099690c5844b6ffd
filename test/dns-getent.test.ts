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
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTopology } from '../src/topology/index.js';
import { compileMesh } from './support/dns.js';
import type { MeshSpec } from './support/dns.js';
import { createNetwork, waitForOutput } from './support/netns.js';
import type { TestNetwork } from './support/netns.js';
import { CLI, tempDir } from './support/run.js';

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
`,
};

const work = tempDir('dns-getent');
let net: TestNetwork;

/** `getent` inside a host's namespace, with that host's resolv.conf. */
async function getent(host: string, database: 'hosts' | 'ahosts', name: string): Promise<string[]> {
  const resolv = join(work.path, `resolv-${host}.conf`);
  const result = await net.exec(net.hosts.get(host)!, 'unshare', ['-m', 'sh', '-c', `mount --bind "$0" /etc/resolv.conf && getent ${database} "$1"`, resolv, name]);
  if (result.status !== 0) throw new Error(`getent ${database} ${name} on ${host} exited ${result.status}: ${result.stderr}`);
  return result.stdout.trim().split('\n');
}

/** Distinct addresses in `getent ahosts` output (one line per socket type). */
async function ahosts(host: string, name: string): Promise<string[]> {
  return [...new Set((await getent(host, 'ahosts', name)).map((line) => line.split(/\s+/)[0]!))].sort();
}

beforeAll(async () => {
  net = createNetwork(
    'mpdns-',
    ['198.18.1.1/24', '198.18.1.2/24'],
    new Map([
      ['h1', '198.18.1.11/24'],
      ['h2', '198.18.1.12/24'],
      ['h3', '198.18.1.13/24'],
      ['out', '198.18.1.99/24'],
    ]),
  );
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

  // The central server on the hub: no --host, views purely by source address.
  // 0.0.0.0 becomes one socket per hub address (127.0.0.1, 198.18.1.1, 198.18.1.2), so every reply
  // leaves from the address it was sent to, which glibc insists on.
  const central = net.spawn(net.hub, process.execPath, [CLI, 'dns', '--topology', topologyFile, '--listen', '0.0.0.0:53', '--forward', '198.18.1.2:5300']);
  await waitForOutput(central, 'serving on');
  // h3's own server on loopback, its upstream taken from "the host's previous resolv.conf".
  writeFileSync(join(work.path, 'upstream-h3.conf'), 'nameserver 198.18.1.1\n');
  const local = net.spawn(net.hosts.get('h3')!, process.execPath, [CLI, 'dns', '--topology', topologyFile, '--host', 'h3', '--listen', '127.0.0.1:53', '--resolv-conf', join(work.path, 'upstream-h3.conf')]);
  await waitForOutput(local, 'serving on');

  for (const host of ['h1', 'h2']) writeFileSync(join(work.path, `resolv-${host}.conf`), 'nameserver 198.18.1.1\nsearch mesh.internal\noptions timeout:2 attempts:2\n');
  // The outsider asks the hub's other address.
  writeFileSync(join(work.path, 'resolv-out.conf'), 'nameserver 198.18.1.2\nsearch mesh.internal\noptions timeout:2 attempts:2\n');
  writeFileSync(join(work.path, 'resolv-h3.conf'), 'nameserver 127.0.0.1\nsearch mesh.internal\noptions timeout:2 attempts:2\n');

  // NSD takes a moment to load its zone.
  const deadline = Date.now() + 10_000;
  while ((await net.exec(net.hub, 'dig', ['+short', '+time=1', '+tries=1', '-p', '5300', '@198.18.1.2', 'www.example.test'])).stdout.trim() !== '198.18.1.200') {
    if (Date.now() > deadline) throw new Error('NSD did not come up');
    await new Promise((r) => setTimeout(r, 100));
  }
}, 60_000);

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
    const addresses = await ahosts('h1', 'big.mesh.internal');
    expect(addresses).toHaveLength(60);
    expect(addresses).toContain('198.18.1.159');
    expect(await ahosts('h3', 'big.mesh.internal')).toHaveLength(60);
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
});
