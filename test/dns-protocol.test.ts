/**
 * The DNS server against the real `dig`, plus raw packets for what dig will
 * not send. One server on 127.0.0.1 and ::1 (port 0), serving LOOPBACK_MESH
 * as host h2 with an upstream for names outside the zone.
 */
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { DnsService, resolversFromResolvConf } from '../src/dns/index.js';
import { LiveTopology, topologyFileSource, writeTopology } from '../src/topology/index.js';
import { parseSocketAddress } from '../src/lib/socket-address.js';
import { LOOPBACK_MESH, addressesOf, buildQuery, compileMesh, dig, runAsync, silentLogger, tcpExchange, udpExchange, startUpstreamDns } from './support/dns.js';
import { tempDir } from './support/run.js';

const work = tempDir('dns-protocol');
const registry = new Registry();
let service: DnsService;
let upstream: DnsService;
let server: { address: string; port: number };
let server6: { address: string; port: number };

beforeAll(async () => {
  const topology = compileMesh(work.path, LOOPBACK_MESH);
  writeTopology(`${work.path}/topology.json`, topology);
  // The upstream is a second meshplane serving another domain: a real DNS server we control.
  const started = await startUpstreamDns(`${work.path}/other`, { ...LOOPBACK_MESH, domain: 'other.test' });
  upstream = started.service;
  const upstreamPort = started.udp.port;
  service = new DnsService({
    topology: new LiveTopology(topologyFileSource(`${work.path}/topology.json`), { watch: false, logger: silentLogger }),
    host: 'h2',
    listen: [
      { address: '127.0.0.1', port: 0 },
      { address: '::1', port: 0 },
    ],
    upstreams: [{ address: '127.0.0.1', port: upstreamPort }],
    registry,
    logger: silentLogger,
  });
  await service.start();
  const udp = service.addresses.filter((a) => a.transport === 'udp');
  server = udp.find((a) => a.address === '127.0.0.1')!;
  server6 = udp.find((a) => a.address === '::1')!;
});

afterAll(() => {
  service?.close();
  upstream?.close();
  work.remove();
});

describe('names and views', () => {
  it('answers a service with every instance, as the asking host sees it', async () => {
    // h1 shares ova with h1 and h2; h3 and h4 share nothing with it.
    const fromH1 = (await dig(server, ['-b', '127.0.10.1', 'app.mesh.internal', 'A']));
    expect(fromH1.status).toBe('NOERROR');
    expect(addressesOf(fromH1).sort()).toEqual(['100.64.10.1', '100.64.10.2', '127.0.10.3', '127.0.10.4']);
    // h3 shares ovb with h2 only.
    expect(addressesOf((await dig(server, ['-b', '127.0.10.3', 'app.mesh.internal']))).sort()).toEqual(['100.64.11.2', '100.64.11.3', '127.0.10.1', '127.0.10.4']);
    // h4 is on no overlay: public addresses for everyone.
    expect(addressesOf((await dig(server, ['-b', '127.0.10.4', 'app.mesh.internal']))).sort()).toEqual(['127.0.10.1', '127.0.10.2', '127.0.10.3', '127.0.10.4']);
  });

  it('prefers the lowest-named shared overlay when two hosts share several', async () => {
    // h2 is on ova and ovb; asking as h2 (loopback maps to --host h2) for h2 itself gives its ova address.
    expect(addressesOf((await dig(server, ['h2.mesh.internal'])))).toEqual(['100.64.10.2']);
    expect(addressesOf((await dig(server, ['-b', '127.0.10.3', 'h2.mesh.internal'])))).toEqual(['100.64.11.2']);
  });

  it('gives loopback askers that no host owns the view of --host', async () => {
    // Ask from an unowned loopback address: it is a local process, so it sees --host h2's view.
    expect(addressesOf((await dig(server, ['-b', '127.0.0.1', 'h3.mesh.internal'])))).toEqual(['100.64.11.3']);
  });

  it('answers host.svc, shard.svc, svc-master and host names', async () => {
    const asH4 = ['-b', '127.0.10.4'];
    expect(addressesOf((await dig(server, [...asH4, 'h1.app.mesh.internal'])))).toEqual(['127.0.10.1']);
    expect(addressesOf((await dig(server, [...asH4, 's2.app.mesh.internal'])))).toEqual(['127.0.10.2']);
    expect(addressesOf((await dig(server, [...asH4, 'h4.mesh.internal'])))).toEqual(['127.0.10.4']);
    const master = addressesOf((await dig(server, [...asH4, 'db-master.mesh.internal'])));
    expect(master).toHaveLength(1);
    expect(['127.0.10.3', '127.0.10.4']).toContain(master[0]);
    expect((await dig(server, [...asH4, 'h1.db.mesh.internal'])).status).toBe('NXDOMAIN');
  });

  it('answers AAAA from IPv6 addresses and NODATA when the view has none', async () => {
    const public6 = (await dig(server, ['-b', '127.0.10.4', 'h1.mesh.internal', 'AAAA']));
    expect(addressesOf(public6)).toEqual(['2001:db8::10:1']);
    // h2 reaches h1 over ova (IPv4 only): no AAAA, but the name exists.
    const overlay6 = (await dig(server, ['-b', '127.0.10.2', 'h1.mesh.internal', 'AAAA']));
    expect(overlay6.status).toBe('NOERROR');
    expect(overlay6.answer).toEqual([]);
    expect(overlay6.flags).toContain('aa');
    expect(overlay6.authority[0]?.type).toBe('SOA');
  });

  it('serves IPv6 listeners, where ::1 is a local asker too', async () => {
    // ::1 is loopback, so it gets h2's view like 127.0.0.1 does.
    expect(addressesOf((await dig(server6, ['h3.mesh.internal'])))).toEqual(['100.64.11.3']);
  });
});

describe('protocol', () => {
  it('sets AA on answers, on NODATA and on NXDOMAIN, with the SOA and negative TTL in authority', async () => {
    for (const [name, type, status] of [
      ['app.mesh.internal', 'A', 'NOERROR'],
      ['app.mesh.internal', 'MX', 'NOERROR'],
      ['nothere.mesh.internal', 'A', 'NXDOMAIN'],
      ['app.mesh.internal.mesh.internal', 'A', 'NXDOMAIN'],
    ] as const) {
      const result = (await dig(server, [name, type]));
      expect(result.status, `${name} ${type}`).toBe(status);
      expect(result.flags, `${name} ${type}`).toContain('aa');
      if (result.answer.length === 0) {
        expect(result.authority).toHaveLength(1);
        expect(result.authority[0]).toMatchObject({ name: 'mesh.internal.', type: 'SOA', ttl: 5 });
        expect(result.authority[0]!.data.split(' ').at(-1)).toBe('5');
      }
    }
  });

  it('answers SOA and NS at the apex', async () => {
    const soa = (await dig(server, ['mesh.internal', 'SOA']));
    expect(soa.answer[0]).toMatchObject({ type: 'SOA' });
    expect(soa.answer[0]!.data).toMatch(/^h2\.mesh\.internal\. hostmaster\.mesh\.internal\. \d+ /);
    const ns = (await dig(server, ['mesh.internal', 'NS']));
    expect(ns.answer).toEqual([{ name: 'mesh.internal.', ttl: 5, type: 'NS', data: 'h2.mesh.internal.' }]);
    expect(addressesOf((await dig(server, ['h2.mesh.internal'])))).toHaveLength(1);
  });

  it('names a central server (no --host) ns.<domain> and answers that name with its listen address', async () => {
    const central = upstream.addresses[0]!;
    const ns = await dig(central, ['other.test', 'NS']);
    expect(ns.answer).toEqual([{ name: 'other.test.', ttl: 5, type: 'NS', data: 'ns.other.test.' }]);
    const address = await dig(central, ['ns.other.test']);
    expect(address.flags).toContain('aa');
    expect(addressesOf(address)).toEqual(['127.0.0.1']);
    expect((await dig(central, ['ns.other.test', 'AAAA'])).status).toBe('NOERROR');
  });

  it('matches names case-insensitively and keeps the asker\'s case', async () => {
    const result = (await dig(server, ['-b', '127.0.10.4', 'ApP.MeSh.InTeRnAl']));
    expect(result.question).toBe('ApP.MeSh.InTeRnAl.');
    expect(result.answer.map((r) => r.name)).toEqual(Array(4).fill('ApP.MeSh.InTeRnAl.'));
  });

  it('echoes the query ID and question exactly', async () => {
    const query = buildQuery('H1.App.mesh.internal', 1, { id: 0xbeef });
    const reply = (await udpExchange(server, query))!;
    expect(reply.readUInt16BE(0)).toBe(0xbeef);
    expect(reply.subarray(12, query.length).equals(query.subarray(12))).toBe(true);
  });

  it('truncates answers over 512 bytes without EDNS, and dig then gets all of them over TCP', async () => {
    const truncated = (await dig(server, ['+noedns', '+ignore', 'big.mesh.internal']));
    expect(truncated.flags).toContain('tc');
    expect(truncated.answer).toEqual([]);
    expect(truncated.opt).toBeNull();
    const retried = (await dig(server, ['+noedns', 'big.mesh.internal']));
    expect(retried.transport).toBe('TCP');
    expect(new Set(addressesOf(retried)).size).toBe(60);
  });

  it('uses the client\'s EDNS size capped by ours, echoing OPT also in truncated replies', async () => {
    // 60 A records are about 1 KB: they fit in 1232 but not in 600.
    const fits = (await dig(server, ['+bufsize=4096', 'big.mesh.internal']));
    expect(fits.transport).toBe('UDP');
    expect(addressesOf(fits)).toHaveLength(60);
    expect(fits.opt).toEqual({ version: 0, udp: 1232 });
    const small = (await dig(server, ['+bufsize=600', '+ignore', 'big.mesh.internal']));
    expect(small.flags).toContain('tc');
    expect(small.opt).toEqual({ version: 0, udp: 1232 });
    expect((await dig(server, ['+noedns', 'h1.mesh.internal'])).opt).toBeNull();
  });

  it('answers BADVERS to EDNS versions above 0 and NOTIMP to other opcodes', async () => {
    const badvers = (await dig(server, ['+edns=1', '+noednsnegotiation', 'app.mesh.internal']));
    expect(badvers.status).toBe('BADVERS');
    expect(badvers.opt?.version).toBe(0);
    expect((await dig(server, ['+opcode=2', 'app.mesh.internal'])).status).toBe('NOTIMP');
  });

  it('answers FORMERR or nothing to garbage, and keeps serving', async () => {
    const twoQuestions = buildQuery('app.mesh.internal', 1, { id: 7 });
    twoQuestions.writeUInt16BE(2, 4);
    const formerr = (await udpExchange(server, twoQuestions))!;
    expect(formerr.readUInt16BE(0)).toBe(7);
    expect(formerr[3]! & 0xf).toBe(1);
    const cutName = buildQuery('app.mesh.internal', 1, { id: 8 }).subarray(0, 20);
    expect((await udpExchange(server, cutName))![3]! & 0xf).toBe(1);
    expect(await udpExchange(server, Buffer.from([1, 2, 3]), 300)).toBeNull();
    const response = buildQuery('app.mesh.internal', 1, { flags: 0x8000 });
    expect(await udpExchange(server, response, 300)).toBeNull();
    expect((await dig(server, ['app.mesh.internal'])).status).toBe('NOERROR');
  });

  it('refuses zone transfers and non-IN classes', async () => {
    const axfr = await runAsync('dig', [`@${server.address}`, '-p', String(server.port), '+tries=1', '+time=3', 'mesh.internal', 'AXFR']);
    expect(axfr.stdout).toContain('Transfer failed');
    expect(axfr.stdout).not.toMatch(/IN\s+A\s/);
    expect((await dig(server, ['-c', 'CH', 'version.bind', 'TXT'])).status).toBe('REFUSED');
  });
});

describe('negative TTL and UDP size, with non-default settings', () => {
  // The defaults (TTL 5, negative TTL 5, UDP 1232) cannot tell min() from either operand, nor
  // "the client's size capped by ours" from "the client's size": servers with other settings can.
  const started: DnsService[] = [];
  const start = async (options: { ttl: number; negativeTtl: number; udpSize?: number }): Promise<{ address: string; port: number }> => {
    const extra = new DnsService({
      topology: new LiveTopology(topologyFileSource(`${work.path}/topology.json`), { watch: false, logger: silentLogger }),
      host: 'h2',
      listen: [{ address: '127.0.0.1', port: 0 }],
      upstreams: [],
        logger: silentLogger,
      ...options,
    });
    await extra.start();
    started.push(extra);
    return extra.addresses[0]!;
  };
  afterAll(() => started.forEach((s) => s.close()));

  it('gives negative answers the TTL min(SOA TTL, SOA minimum), whichever is smaller', async () => {
    for (const { ttl, negativeTtl } of [
      { ttl: 60, negativeTtl: 7 },
      { ttl: 3, negativeTtl: 600 },
    ]) {
      const other = await start({ ttl, negativeTtl });
      const expected = Math.min(ttl, negativeTtl);
      for (const [name, type, status] of [
        ['nothere.mesh.internal', 'A', 'NXDOMAIN'],
        ['h1.mesh.internal', 'MX', 'NOERROR'],
        ['mesh.internal', 'A', 'NOERROR'],
      ] as const) {
        const result = await dig(other, [name, type]);
        expect(result.status, `${name} ${type}`).toBe(status);
        expect(result.answer).toEqual([]);
        expect(result.flags).toContain('aa');
        expect(result.authority, `${name} ${type} with ttl ${ttl}, negative ${negativeTtl}`).toHaveLength(1);
        expect(result.authority[0]).toMatchObject({ name: 'mesh.internal.', type: 'SOA', ttl: expected });
        // The SOA's own MINIMUM field is the negative TTL setting.
        expect(Number(result.authority[0]!.data.split(' ').at(-1))).toBe(negativeTtl);
      }
      // Positive answers and the apex SOA itself keep the answer TTL.
      expect((await dig(other, ['h1.mesh.internal'])).answer[0]!.ttl).toBe(ttl);
      expect((await dig(other, ['mesh.internal', 'SOA'])).answer[0]!.ttl).toBe(ttl);
    }
  });

  it('caps the client\'s EDNS size by ours (--udp-size) and advertises ours', async () => {
    const other = await start({ ttl: 5, negativeTtl: 5, udpSize: 700 });
    // 60 A records (about 1 KB) fit the client's 4096 but not our 700: truncated, OPT echoed with 700.
    const capped = await dig(other, ['+bufsize=4096', '+ignore', 'big.mesh.internal']);
    expect(capped.flags).toContain('tc');
    expect(capped.answer).toEqual([]);
    expect(capped.opt).toEqual({ version: 0, udp: 700 });
    // Without +ignore dig retries over TCP and gets all of them.
    expect(new Set(addressesOf(await dig(other, ['+bufsize=4096', 'big.mesh.internal']))).size).toBe(60);
    const small = await dig(other, ['+bufsize=4096', 'app.mesh.internal']);
    expect(small.flags).not.toContain('tc');
    expect(small.opt).toEqual({ version: 0, udp: 700 });
  });
});

describe('default upstreams', () => {
  it('takes the nameservers of resolv.conf, minus our own listen addresses (no forwarding loop)', () => {
    const file = `${work.path}/resolv.conf`;
    writeFileSync(file, '# comment\nsearch mesh.internal\nnameserver 127.0.0.1\nnameserver 192.0.2.53\nnameserver ::1\noptions edns0\n');
    expect(resolversFromResolvConf(file, [{ address: '127.0.0.1', port: 53 }])).toEqual([
      { address: '192.0.2.53', port: 53 },
      { address: '::1', port: 53 },
    ]);
    // Listening on another port, 127.0.0.1:53 is somebody else: keep it.
    expect(resolversFromResolvConf(file, [{ address: '127.0.0.1', port: 5353 }])).toHaveLength(3);
    expect(resolversFromResolvConf(`${work.path}/missing.conf`, [])).toEqual([]);
  });

  it('keeps the zone of a link-local resolver and refuses zones anywhere else', () => {
    const file = `${work.path}/resolv-scoped.conf`;
    writeFileSync(file, 'nameserver fe80::0053%eth0\nnameserver 2001:db8::53%eth0\nnameserver 192.0.2.1%eth0\nnameserver fe80::1%a%b\n');
    expect(resolversFromResolvConf(file, [])).toEqual([{ address: 'fe80::53%eth0', port: 53 }]);
    expect(parseSocketAddress('[fe80::53%ll0]:5300')).toEqual({ address: 'fe80::53%ll0', port: 5300 });
    expect(() => parseSocketAddress('[2001:db8::53%ll0]:53')).toThrow(/is not an address.*\[fe80::1%eth0\]:53/);
  });
});

describe('big services', () => {
  it('rotates answers between queries', async () => {
    const firsts: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) firsts.push(addressesOf(await dig(server, ['-b', '127.0.10.4', 'app.mesh.internal']))[0]);
    expect(new Set(firsts).size).toBe(4);
  });

  it('caps answers per service and still hands out every instance over successive queries', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const answer = addressesOf((await dig(server, ['capped.mesh.internal'])));
      expect(answer).toHaveLength(5);
      answer.forEach((a) => seen.add(a));
    }
    expect(seen.size).toBe(60);
  });
});

describe('TCP', () => {
  it('answers several pipelined queries on one connection', async () => {
    const queries = ['app', 'h1', 'nothere'].map((name, i) => buildQuery(`${name}.mesh.internal`, 1, { id: 100 + i }));
    const replies = await tcpExchange(server, queries);
    expect(replies.map((r) => r.readUInt16BE(0)).sort()).toEqual([100, 101, 102]);
    expect(replies.map((r) => r[3]! & 0xf).sort()).toEqual([0, 0, 3]);
  });
});

describe('outside the zone', () => {
  it('forwards other names to the upstream and relays its answer', async () => {
    const result = (await dig(server, ['-b', '127.0.10.4', 'app.other.test']));
    expect(result.status).toBe('NOERROR');
    expect(addressesOf(result)).toHaveLength(4);
    // Relayed verbatim: the upstream's own flags (it is authoritative for other.test).
    expect(result.answer.every((r) => r.name === 'app.other.test.')).toBe(true);
    const tcp = (await dig(server, ['+tcp', 'nothere.other.test']));
    expect(tcp.status).toBe('NXDOMAIN');
  });

  it('answers REFUSED when no upstream is set', async () => {
    // The upstream itself has none.
    const result = (await dig(upstream.addresses[0]!, ['app.mesh.internal']));
    expect(result.status).toBe('REFUSED');
    expect(result.flags).not.toContain('aa');
  });
});

describe('metrics', () => {
  it('counts queries by type, rcode and view', async () => {
    (await dig(server, ['-b', '127.0.10.3', 'nothere.mesh.internal', 'AAAA']));
    const text = await registry.metrics();
    expect(text).toMatch(/meshplane_dns_queries_total\{type="AAAA",rcode="NXDOMAIN",view="ovb"\} [1-9]/);
    expect(text).toMatch(/meshplane_dns_queries_total\{type="A",rcode="NOERROR",view="public"\} [1-9]/);
    expect(text).toMatch(/meshplane_dns_request_duration_seconds_count [1-9]/);
    expect(text).toContain('meshplane_dns_views 4');
  });
});
