/**
 * BIND 9 serving `meshplane dns render --engine bind` answers what our own
 * server answers: every name of a generated mesh (views by overlay set, SRV,
 * PTR, shards, masters, a capped service, AAAA) asked of both with the real
 * `dig`, from an address of each view, over UDP and (TC, then) TCP. The
 * differences BIND cannot avoid (src/dns/README.md, "BIND") are asserted as
 * such, not skipped. Then: named-checkconf/named-checkzone pass on the
 * render, a render of the same topology writes nothing, `rndc reload` after a
 * re-render serves the new topology, and glibc's `getent hosts` resolves
 * through BIND (in a network and mount namespace of this test's own).
 */
import type { ChildProcess } from 'node:child_process';
import { execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsService } from '../src/dns/index.js';
import type { Topology } from '../src/topology/index.js';
import { LiveTopology, topologyFileSource, writeTopology } from '../src/topology/index.js';
import { SRV_MESH, UPSTREAM_MESH, additional, compileMesh, parseDig, runAsync, silentLogger, startUpstreamDns } from './support/dns.js';
import type { DigRecord, DigResult } from './support/dns.js';
import { removeNamespaces } from './support/netns.js';
import { CLI, run, tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';


/** One address per view (and two unknown askers): h1 ova, h2 ova+ovb, h3 ovb, h4 none, p1 none. */
const ASKERS = ['127.0.10.1', '127.0.10.2', '127.0.10.3', '127.0.10.4', '127.0.10.9', '127.0.0.1', '127.0.99.1'];
const SERIAL = 2024120601;

const work = tempDir('dns-bind');
let topology: Topology;
let ours: DnsService;
let upstream: DnsService;
let oursAddress: { address: string; port: number };
let named: ChildProcess | null = null;
let namedLog = '';
let bindAddress: { address: string; port: number };
let rndcPort: number;
const renderDir = join(work.path, 'bind', 'render');

function freePort(): Promise<number> {
  // Free for TCP and UDP both: named takes the port on both.
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      const udp = createSocket('udp4');
      udp.once('error', () => server.close(() => resolve(freePort())));
      udp.bind(port, '127.0.0.1', () => udp.close(() => server.close(() => resolve(port))));
    });
    server.on('error', reject);
  });
}

function render(args: readonly string[]): { status: number; stdout: string; stderr: string } {
  return run(process.execPath, [CLI, 'dns', 'render', '--engine', 'bind', ...args]);
}

/** named.conf around the render: options for a test (its own port, files in the temp dir, rndc key). */
function namedConf(dir: string, listen: string, port: number, controls: string): string {
  return `options {
  directory "${renderDir}";
  pid-file "${dir}/named.pid";
  session-keyfile "${dir}/session.key";
  managed-keys-directory "${dir}";
  listen-on port ${port} { ${listen}; };
  listen-on-v6 { none; };
  dnssec-validation no;
};
${controls}
include "${renderDir}/named.conf";
`;
}

beforeAll(async () => {
  topology = compileMesh(work.path, SRV_MESH);
  writeTopology(join(work.path, 'topology.json'), topology);
  const started = await startUpstreamDns(join(work.path, 'other'), UPSTREAM_MESH);
  upstream = started.service;
  const upstreamAddress = started.udp;
  // Ours as a central server (no --host): views by source address alone, NS ns.mesh.internal = 127.0.0.1.
  ours = new DnsService({
    topology: new LiveTopology(topologyFileSource(join(work.path, 'topology.json')), { watch: false, logger: silentLogger }),
    host: null,
    listen: [{ address: '127.0.0.1', port: 0 }],
    upstreams: [upstreamAddress],
    logger: silentLogger,
  });
  await ours.start();
  oursAddress = ours.addresses.find((a) => a.transport === 'udp')!;

  const result = render(['-t', join(work.path, 'topology.json'), '--out', renderDir, '--ns-address', '127.0.0.1', '--forward', `127.0.0.1:${upstreamAddress.port}`, '--serial', String(SERIAL), '--check']);
  expect(result.status, result.stderr).toBe(0);

  const port = await freePort();
  rndcPort = await freePort();
  bindAddress = { address: '127.0.0.1', port };
  const keyFile = join(work.path, 'rndc.key');
  execFileSync('rndc-confgen', ['-a', '-k', 'rndc-key', '-c', keyFile]);
  const conf = join(work.path, 'named-test.conf');
  writeFileSync(conf, namedConf(work.path, '127.0.0.1', port, `include "${keyFile}";\ncontrols { inet 127.0.0.1 port ${rndcPort} allow { 127.0.0.1; } keys { "rndc-key"; }; };`));
  named = spawn('named', ['-g', '-c', conf, '-u', 'root', '-n', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  named.stderr!.on('data', (chunk: Buffer) => (namedLog += chunk.toString()));
  await waitFor(async () => (await runAsync('dig', [`@127.0.0.1`, '-p', String(port), '+tries=1', '+time=1', 'mesh.internal', 'SOA'])).stdout.includes('status: NOERROR'), {
    what: 'named answering the render',
    deadline: 60_000,
    explain: () => namedLog,
  });
}, 120_000);

afterAll(() => {
  named?.kill('SIGKILL');
  ours?.close();
  upstream?.close();
  work.remove();
});

/** Every query in one dig run (-f), in order; dig follows TC to TCP unless +ignore is among `options`. */
async function digBatch(server: { address: string; port: number }, source: string, queries: readonly string[], options: readonly string[] = []): Promise<DigResult[]> {
  const file = join(work.path, `queries-${server.port}-${source}-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(file, `${queries.join('\n')}\n`);
  const result = await runAsync('dig', [`@${server.address}`, '-p', String(server.port), '-b', source, '+tries=1', '+time=10', '+nocookie', ...options, '-f', file], 300_000);
  const blocks = result.stdout.split(/(?=;; Got answer:)/).filter((block) => block.includes('->>HEADER<<-'));
  if (blocks.length !== queries.length) throw new Error(`dig answered ${blocks.length} of ${queries.length} queries from ${source}: ${result.stdout.slice(-2000)}${result.stderr}`);
  return blocks.map((block) => parseDig(block));
}

/** The serial is each server's own (ours: its load time; BIND: the render's): compared apart. */
const show = (records: readonly DigRecord[]): string[] =>
  records.map((r) => `${r.name.toLowerCase()} ${r.ttl} ${r.type} ${r.type === 'SOA' ? r.data.replace(/^(\S+ \S+ )\d+/, '$1SERIAL') : r.data}`).sort();

interface Comparable {
  readonly status: string;
  readonly flags: string;
  readonly answer: string[];
  readonly authority: string[];
  readonly additional: string[];
}

function comparable(result: DigResult): Comparable {
  return { status: result.status, flags: [...result.flags].sort().join(' '), answer: show(result.answer), authority: show(result.authority), additional: show(additional(result)) };
}

/** Every name of the zone: hosts, svc, host.svc, shard.svc, svc-master, SRV names, the apex, ns, and some unknown ones. */
function zoneNames(): string[] {
  const names = new Set<string>(['', '_tcp', '_udp', 'ns', 'nothere', 'h1.nothere', 'deep.h1', 'app.app', 'mesh']);
  for (const host of Object.values(topology.hosts)) names.add(host.name);
  for (const service of Object.values(topology.services)) {
    names.add(service.name);
    names.add(`_${service.name}._tcp`);
    names.add(`_${service.name}._udp`);
    for (const instance of service.instances) {
      names.add(`${instance.host}.${service.name}`);
      if (instance.shard !== null) names.add(`${instance.shard}.${service.name}`);
    }
    if (service.master !== null) names.add(`${service.name}-master`);
  }
  return [...names].map((name) => (name === '' ? 'mesh.internal' : `${name}.mesh.internal`));
}

/** Every address the topology knows (PTR), and addresses it does not. */
function reverseQueries(): string[] {
  const addresses = new Set<string>();
  for (const host of Object.values(topology.hosts)) for (const address of [...host.ips, ...host.public_ips, ...Object.values(host.overlays)]) addresses.add(address);
  return [...addresses].map((address) => `-x ${address}`);
}

/** Names whose answer ours caps (dns_max_answers): compared as sets (README, "BIND"). */
const CAPPED = new Set(['capped.mesh.internal.', '_capped._tcp.mesh.internal.']);
/** SRV names of a protocol the service has no port of: ours NODATA, BIND NXDOMAIN (no records, no name below). */
const PORTLESS = new Set(['_noports._tcp.mesh.internal.', '_noports._udp.mesh.internal.', '_app._udp.mesh.internal.', '_db._udp.mesh.internal.', '_big._udp.mesh.internal.', '_capped._udp.mesh.internal.']);

function expectSame(query: string, asker: string, a: DigResult, b: DigResult): void {
  const question = a.question;
  const what = `${query} from ${asker}`;
  const mine = comparable(a);
  let theirs = comparable(b);
  if (query.endsWith(' NS') && mine.answer.length > 0) {
    // BIND adds the NS name's addresses (glue) in the additional section; ours leaves it empty.
    expect(theirs.additional.every((record) => record.startsWith(`${mine.answer[0]!.split(' ').at(-1)} `)), what).toBe(true);
    theirs = { ...theirs, additional: [] };
  }
  if (query.endsWith(' SRV') && theirs.additional.length < mine.additional.length) {
    // BIND 9.18.33+ bounds additional-section work (CVE-2024-11187): a big SRV answer comes without the targets' addresses.
    expect(theirs.additional, what).toEqual([]);
    expect(theirs.answer.length, what).toBeGreaterThan(13);
    theirs = { ...theirs, additional: mine.additional };
  }
  if (query.endsWith(' SOA') && theirs.answer.length === 0) {
    // BIND sends the SOA of an NXDOMAIN answer to an SOA query with TTL 0 (so no resolver caches it); ours min(TTL, minimum).
    theirs = { ...theirs, authority: theirs.authority.map((record) => record.replace(/ 0 SOA /, ' 5 SOA ')) };
  }
  if (CAPPED.has(question) && mine.answer.length > 0) {
    // Ours: a window of 5 instances; BIND: all of them (rrset-order cyclic). Every record ours gives is BIND's.
    expect(mine.status, what).toBe(theirs.status);
    for (const record of mine.answer) expect(theirs.answer, what).toContain(record);
    expect(theirs.answer.length, what).toBeGreaterThan(mine.answer.length);
    return;
  }
  if (PORTLESS.has(question)) {
    expect([mine.status, theirs.status], what).toEqual(['NOERROR', 'NXDOMAIN']);
    expect(mine.answer, what).toEqual([]);
    expect(theirs.answer, what).toEqual([]);
    expect(mine.authority, what).toEqual(theirs.authority);
    return;
  }
  expect(theirs, what).toEqual(mine);
}

describe('BIND serving the render answers as our server does', () => {
  const TYPES = ['A', 'AAAA', 'SRV', 'SOA', 'NS', 'TXT'];

  it('for every name, type and view (UDP, TC then TCP for big answers)', async () => {
    const queries = zoneNames().flatMap((name) => TYPES.map((type) => `${name} ${type}`));
    let compared = 0;
    await Promise.all(
      ASKERS.map(async (asker) => {
        const [a, b] = await Promise.all([digBatch(oursAddress, asker, queries), digBatch(bindAddress, asker, queries)]);
        for (let i = 0; i < queries.length; i++) {
          expectSame(queries[i]!, asker, a[i]!, b[i]!);
          compared++;
        }
      }),
    );
    expect(compared).toBe(ASKERS.length * queries.length);
  }, 600_000);

  it('gives the views their own addresses: overlay askers get overlay addresses, the others the hosts’ own', async () => {
    const answers = await Promise.all(['127.0.10.1', '127.0.10.3', '127.0.0.1'].map((asker) => digBatch(bindAddress, asker, ['h2.mesh.internal A'])));
    expect(answers.map(([r]) => r!.answer.map((x) => x.data))).toEqual([['100.64.10.2'], ['100.64.11.2'], ['127.0.10.2']]);
  });

  it('answers PTR for every known address as ours does, per view', async () => {
    const queries = reverseQueries();
    await Promise.all(
      ASKERS.map(async (asker) => {
        const [a, b] = await Promise.all([digBatch(oursAddress, asker, queries), digBatch(bindAddress, asker, queries)]);
        for (let i = 0; i < queries.length; i++) {
          const what = `${queries[i]} from ${asker}`;
          expect(b[i]!.status, what).toBe(a[i]!.status);
          expect(show(b[i]!.answer), what).toEqual(show(a[i]!.answer));
          // BIND holds the /24 as a zone: its negative answers carry that zone's SOA, ours none.
          if (a[i]!.status === 'NXDOMAIN') expect([a[i]!.authority.length, b[i]!.authority.map((r) => r.type)], what).toEqual([0, ['SOA']]);
        }
      }),
    );
    const [h3] = await digBatch(bindAddress, '127.0.10.1', ['-x 100.64.11.3']);
    expect(h3!.status).toBe('NXDOMAIN'); // h1 is not on ovb: its address is not h1's to resolve
    // An address the topology does not know inside a /24 BIND holds: NXDOMAIN from BIND; ours forwards it
    // (this upstream knows nothing of it and forwards nowhere: REFUSED).
    const [a, b] = await Promise.all([digBatch(oursAddress, '127.0.10.1', ['-x 127.0.10.200']), digBatch(bindAddress, '127.0.10.1', ['-x 127.0.10.200'])]);
    expect([a[0]!.status, b[0]!.status]).toEqual(['REFUSED', 'NXDOMAIN']);
  }, 300_000);

  it('truncates a big answer over UDP (TC) as ours does, and gives it all over TCP', async () => {
    const queries = ['big.mesh.internal A', '_big._tcp.mesh.internal SRV'];
    for (const options of [['+noedns'], ['+bufsize=1232']]) {
      const [a, b] = await Promise.all([digBatch(oursAddress, '127.0.10.4', queries, ['+ignore', ...options]), digBatch(bindAddress, '127.0.10.4', queries, ['+ignore', ...options])]);
      const tc = (results: DigResult[]): boolean[] => results.map((r) => r.flags.includes('tc'));
      expect(tc(b), options.join(' ')).toEqual(tc(a));
    }
    const [a, b] = await Promise.all([digBatch(oursAddress, '127.0.10.4', queries, ['+noedns']), digBatch(bindAddress, '127.0.10.4', queries, ['+noedns'])]);
    expect(a[0]!.flags).not.toContain('tc');
    expect(b.map((r) => r.transport)).toEqual(['TCP', 'TCP']);
    expect(a.map((r) => r.transport)).toEqual(['TCP', 'TCP']);
    expect(show(b[0]!.answer)).toEqual(show(a[0]!.answer));
    expect(b[0]!.answer).toHaveLength(60);
  });

  it('forwards names outside the mesh to the same upstream, and refuses nothing ours answers', async () => {
    const queries = ['u1.other.test A', 'nothere.other.test A', '-x 127.0.20.1'];
    const [a, b] = await Promise.all([digBatch(oursAddress, '127.0.10.1', queries), digBatch(bindAddress, '127.0.10.1', queries)]);
    for (let i = 0; i < queries.length; i++) {
      // BIND answers as a caching forwarder (no AA, TTLs counting down); the data is the upstream's.
      expect(b[i]!.status, queries[i]).toBe(a[i]!.status);
      expect(b[i]!.answer.map((r) => `${r.name} ${r.type} ${r.data}`), queries[i]).toEqual(a[i]!.answer.map((r) => `${r.name} ${r.type} ${r.data}`));
    }
    expect(b[0]!.answer.map((r) => r.data)).toEqual(['127.0.20.1']);
  });

  it('carries the render’s serial and our TTLs in the SOA', async () => {
    const [b] = await digBatch(bindAddress, '127.0.0.1', ['mesh.internal SOA']);
    expect(b!.answer.map((r) => `${r.ttl} ${r.data}`)).toEqual([`5 ns.mesh.internal. hostmaster.mesh.internal. ${SERIAL} 3600 600 86400 5`]);
  });
});

describe('the render', () => {
  it('passes named-checkconf and named-checkzone', () => {
    const conf = join(work.path, 'check.conf');
    writeFileSync(conf, `options { directory "${renderDir}"; };\ninclude "${renderDir}/named.conf";\n`);
    expect(run('named-checkconf', ['-z', conf]).status).toBe(0);
    const views = readdirSync(renderDir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(views.sort()).toEqual(['on-ova', 'on-ova+ovb', 'on-ovb', 'public']);
    let files = 0;
    for (const view of views) {
      for (const file of readdirSync(join(renderDir, view))) {
        const zone = file.replace(/\.zone$/, '');
        const result = run('named-checkzone', ['-q', zone, join(renderDir, view, file)]);
        expect(result.status, `${view}/${file}: ${result.stdout}${result.stderr}`).toBe(0);
        files++;
      }
    }
    // A zone the same in several views is written once, in the first of them, and the others
    // take it with in-view (BIND loads and holds it once); every view still has every zone.
    const fragment = readFileSync(join(renderDir, 'named.conf'), 'utf8');
    const blocks = fragment.split(/^view /m).slice(1);
    expect(blocks.map((block) => /^"([^"]+)"/.exec(block)![1])).toEqual(['on-ova', 'on-ova+ovb', 'on-ovb', 'public']);
    const zonesOf = (block: string): string[] => [...block.matchAll(/zone "([^"]+)"/g)].map((m) => m[1]!).sort();
    for (const block of blocks) expect(zonesOf(block)).toEqual(zonesOf(blocks[0]!));
    let shared = 0;
    blocks.forEach((block, at) => {
      for (const [, zone, holder] of block.matchAll(/zone "([^"]+)" \{ in-view "([^"]+)"; \};/g)) {
        // BIND takes in-view only from a view defined before.
        const holderAt = blocks.findIndex((b) => b.startsWith(`"${holder}"`));
        expect(holderAt, `${zone} in view ${holder}`).toBeLessThan(at);
        expect(blocks[holderAt], `${zone} in view ${holder}`).toContain(`zone "${zone}" { type primary; file "${holder}/${zone}.zone"; };`);
        shared++;
      }
    });
    expect(shared).toBeGreaterThan(0);
    expect(files + shared).toBe(blocks.length * zonesOf(blocks[0]!).length);
  });

  it('writes nothing when the topology is the same (byte-identical, same directory)', () => {
    const before = readlinkSync(renderDir);
    const conf = readFileSync(join(renderDir, 'named.conf'));
    const result = render(['-t', join(work.path, 'topology.json'), '--out', renderDir, '--ns-address', '127.0.0.1', '--forward', '127.0.0.1:9', '--serial', String(SERIAL)]);
    expect(result.status, result.stderr).toBe(0);
    // Another forwarder is another render...
    expect(readlinkSync(renderDir)).not.toBe(before);
    const again = render(['-t', join(work.path, 'topology.json'), '--out', renderDir, '--ns-address', '127.0.0.1', '--forward', `127.0.0.1:${upstream.addresses[0]!.port}`, '--serial', String(SERIAL)]);
    // ... and the first options give the first bytes back.
    expect(again.stdout).toContain('files written');
    expect(readlinkSync(renderDir)).toBe(before);
    expect(readFileSync(join(renderDir, 'named.conf'))).toEqual(conf);
    const unchanged = render(['-t', join(work.path, 'topology.json'), '--out', renderDir, '--ns-address', '127.0.0.1', '--forward', `127.0.0.1:${upstream.addresses[0]!.port}`, '--serial', String(SERIAL)]);
    expect(unchanged.stdout).toContain('unchanged');
  });

  it('keeps its serial while unchanged and counts it up on a change (no --serial)', () => {
    const dir = join(work.path, 'serials', 'render');
    const args = ['-t', join(work.path, 'topology.json'), '--out', dir, '--ns-address', '127.0.0.1'];
    const first = render(args);
    const serial = Number(/serial (\d+)/.exec(first.stdout)?.[1]);
    expect(serial).toBeGreaterThan(1_700_000_000);
    expect(render(args).stdout).toContain(`unchanged (serial ${serial})`);
    const changed = render([...args, '--ttl', '7']);
    expect(Number(/serial (\d+)/.exec(changed.stdout)?.[1])).toBeGreaterThan(serial);
  });

  it('refuses an --out that is not its own symlink, naming the path (DNS_ERR_RENDER_OUT)', () => {
    const dir = join(work.path, 'plain-dir');
    mkdirSync(dir);
    const result = render(['-t', join(work.path, 'topology.json'), '--out', dir, '--ns-address', '127.0.0.1']);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('DNS_ERR_RENDER_OUT');
    expect(result.stderr).toContain(dir);
  });

  it('serves an edited topology after a re-render and rndc reload', async () => {
    mkdirSync(join(work.path, 'edit'));
    const edited = compileMesh(join(work.path, 'edit'), { ...SRV_MESH, services: `${SRV_MESH.services}late:\n  scheduling_group: db\n  num_instances: 1\n` });
    writeTopology(join(work.path, 'topology-edited.json'), edited);
    const result = render(['-t', join(work.path, 'topology-edited.json'), '--out', renderDir, '--ns-address', '127.0.0.1', '--forward', `127.0.0.1:${upstream.addresses[0]!.port}`, '--serial', String(SERIAL + 1), '--check']);
    expect(result.status, result.stderr).toBe(0);
    const [before] = await digBatch(bindAddress, '127.0.0.1', ['late.mesh.internal A']);
    expect(before!.status).toBe('NXDOMAIN');
    const reload = run('rndc', ['-s', '127.0.0.1', '-p', String(rndcPort), '-k', join(work.path, 'rndc.key'), 'reload']);
    expect(reload.status, reload.stdout + reload.stderr).toBe(0);
    const instance = edited.services['late']!.instances[0]!.host;
    await waitFor(async () => (await digBatch(bindAddress, '127.0.0.1', ['late.mesh.internal A']))[0]!.answer.map((r) => r.data).join() === edited.hosts[instance]!.ips[0], {
      what: 'BIND answering the new service after rndc reload',
      explain: () => namedLog.slice(-3000),
    });
  });
});

describe('getent through BIND', () => {
  const ns = `mpbind${process.pid}`;
  let child: ChildProcess | null = null;
  const dir = join(work.path, 'getent');
  const out = join(dir, 'render');

  beforeAll(async () => {
    removeNamespaces(ns);
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    mkdirSync(dir);
    // BIND on h2 itself: local programs ask from 127.0.0.1 and get h2's view, as ours with --host h2.
    const result = render(['-t', join(work.path, 'topology.json'), '--out', out, '--host', 'h2', '--check']);
    expect(result.status, result.stderr).toBe(0);
    const conf = join(dir, 'named.conf');
    writeFileSync(conf, namedConf(dir, '127.0.0.1', 53, '').replace(`directory "${renderDir}"`, `directory "${out}"`).replace(`include "${renderDir}/named.conf"`, `include "${out}/named.conf"`));
    writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\nsearch mesh.internal\noptions timeout:2 attempts:2\n');
    let log = '';
    child = spawn('ip', ['netns', 'exec', ns, 'named', '-g', '-c', conf, '-u', 'root', '-n', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
    await waitFor(async () => (await runAsync('ip', ['netns', 'exec', ns, 'dig', '@127.0.0.1', '+tries=1', '+time=1', 'mesh.internal', 'SOA'])).stdout.includes('status: NOERROR'), {
      what: 'named in the namespace',
      deadline: 60_000,
      explain: () => log,
    });
  }, 120_000);

  afterAll(() => {
    child?.kill('SIGKILL');
    removeNamespaces(ns);
  });

  async function getent(name: string): Promise<string[]> {
    const result = await runAsync('ip', ['netns', 'exec', ns, 'unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && getent ahosts "$1"', join(dir, 'resolv.conf'), name]);
    expect(result.status, `getent ahosts ${name}: ${result.stderr}`).toBe(0);
    return [...new Set(result.stdout.trim().split('\n').map((line) => line.split(/\s+/)[0]!))].sort();
  }

  it('resolves a service as h2 sees it (overlay addresses where shared), short names through the search line', async () => {
    expect(await getent('app')).toEqual(['100.64.10.1', '100.64.10.2', '100.64.11.3', '127.0.10.4']);
    expect(await getent('db-master.mesh.internal')).toHaveLength(1);
  });

  it('resolves a 60-instance service (over 512 bytes: TC, then TCP)', async () => {
    expect(await getent('big')).toHaveLength(60);
  });

  it('names a host by its address (PTR)', async () => {
    const result = await runAsync('ip', ['netns', 'exec', ns, 'unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && getent hosts "$1"', join(dir, 'resolv.conf'), '127.0.10.3']);
    expect(result.stdout.trim()).toBe('127.0.10.3      h3.mesh.internal');
  });
});
