/**
 * SRV and PTR against the real `dig`: SRV records per instance and port with
 * the targets' addresses (as each asker's view gives them) in the additional
 * section, capped and rotated like A answers, TC then TCP when too big; PTR
 * for every address the topology knows, per view, and forwarding for the
 * reverse names it does not know.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsService } from '../src/dns/index.js';
import { LiveTopology, topologyFileSource, writeTopology } from '../src/topology/index.js';
import { SRV_MESH, UPSTREAM_MESH, additional, addressesOf, compileMesh, dig, silentLogger, startUpstreamDns } from './support/dns.js';
import type { DigResult } from './support/dns.js';
import { tempDir } from './support/run.js';

const work = tempDir('dns-srv-ptr');
let service: DnsService;
let upstream: DnsService;
let server: { address: string; port: number };
let upstreamServer: { address: string; port: number };

beforeAll(async () => {
  writeTopology(`${work.path}/topology.json`, compileMesh(work.path, SRV_MESH));
  ({ service: upstream, udp: upstreamServer } = await startUpstreamDns(`${work.path}/other`, UPSTREAM_MESH));
  service = new DnsService({
    topology: new LiveTopology(topologyFileSource(`${work.path}/topology.json`), { watch: false, logger: silentLogger }),
    host: 'h2',
    listen: [{ address: '127.0.0.1', port: 0 }],
    upstreams: [upstreamServer],
    logger: silentLogger,
  });
  await service.start();
  server = service.addresses.find((a) => a.transport === 'udp')!;
});

afterAll(() => {
  service?.close();
  upstream?.close();
  work.remove();
});

const srvData = (result: DigResult): string[] => result.answer.filter((r) => r.type === 'SRV').map((r) => r.data).sort();

describe('SRV', () => {
  it('answers one record per instance and port, targets host.svc, priority 1 and weight 1 as Consul', async () => {
    const result = await dig(server, ['-b', '127.0.10.4', '_app._tcp.mesh.internal', 'SRV']);
    expect(result.status).toBe('NOERROR');
    expect(result.flags).toContain('aa');
    expect(srvData(result)).toEqual(['h1', 'h2', 'h3', 'h4'].flatMap((h) => [`1 1 8080 ${h}.app.mesh.internal.`, `1 1 8443 ${h}.app.mesh.internal.`]).sort());
    expect(result.answer.every((r) => r.name === '_app._tcp.mesh.internal.' && r.ttl === 5)).toBe(true);
  });

  it('puts each target’s addresses in the additional section as the A/AAAA answer for that name gives them to the asker', async () => {
    for (const asker of ['127.0.10.1', '127.0.10.3', '127.0.10.4', '127.0.0.1']) {
      const result = await dig(server, ['-b', asker, '_app._tcp.mesh.internal', 'SRV']);
      const extra = additional(result);
      for (const host of ['h1', 'h2', 'h3', 'h4']) {
        const name = `${host}.app.mesh.internal`;
        const expected = [...addressesOf(await dig(server, ['-b', asker, name, 'A'])), ...addressesOf(await dig(server, ['-b', asker, name, 'AAAA']))].sort();
        expect(extra.filter((r) => r.name === `${name}.`).map((r) => r.data).sort(), `${name} as seen from ${asker}`).toEqual(expected);
      }
    }
    // The views differ: h1 reaches h1 over ova; h4 (no overlay) gets h1's own IPv4 and IPv6.
    const fromH1 = additional(await dig(server, ['-b', '127.0.10.1', '_app._tcp.mesh.internal', 'SRV']));
    expect(fromH1.filter((r) => r.name === 'h1.app.mesh.internal.').map((r) => r.data)).toEqual(['100.64.10.1']);
    const fromH4 = additional(await dig(server, ['-b', '127.0.10.4', '_app._tcp.mesh.internal', 'SRV']));
    expect(fromH4.filter((r) => r.name === 'h1.app.mesh.internal.').map((r) => `${r.type} ${r.data}`).sort()).toEqual(['A 127.0.10.1', 'AAAA 2001:db8::10:1']);
  });

  it('caps with dns_max_answers and rotates by a whole window, handing out every instance', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const result = await dig(server, ['-b', '127.0.10.4', '_capped._tcp.mesh.internal', 'SRV']);
      expect(result.answer).toHaveLength(5);
      expect(additional(result)).toHaveLength(5);
      for (const record of srvData(result)) seen.add(record);
    }
    expect(seen.size).toBe(60);
  });

  it('sets TC over UDP when the answer is too big for the asker, and answers in full over TCP', async () => {
    const udp = await dig(server, ['+ignore', '+bufsize=1232', '_big._tcp.mesh.internal', 'SRV']);
    expect(udp.flags).toContain('tc');
    expect(udp.answer).toHaveLength(0);
    const retried = await dig(server, ['+bufsize=1232', '_big._tcp.mesh.internal', 'SRV']);
    expect(retried.transport).toBe('TCP');
    expect(retried.answer).toHaveLength(60);
    expect(additional(retried)).toHaveLength(60);
    // Without EDNS the classic 512 bytes apply.
    const classic = await dig(server, ['+ignore', '+noedns', '_big._tcp.mesh.internal', 'SRV']);
    expect(classic.flags).toContain('tc');
    const small = await dig(server, ['+noedns', '_db._tcp.mesh.internal', 'SRV']);
    expect(small.flags).not.toContain('tc');
    expect(srvData(small)).toEqual(['1 1 5432 h3.db.mesh.internal.', '1 1 5432 h4.db.mesh.internal.']);
  });

  it('answers ports written N/udp under _udp, the others under _tcp', async () => {
    expect(srvData(await dig(server, ['_resolver._udp.mesh.internal', 'SRV']))).toEqual(['1 1 53 h3.resolver.mesh.internal.', '1 1 53 h4.resolver.mesh.internal.']);
    expect(srvData(await dig(server, ['_resolver._tcp.mesh.internal', 'SRV']))).toEqual(['1 1 853 h3.resolver.mesh.internal.', '1 1 853 h4.resolver.mesh.internal.']);
  });

  it('answers NODATA for a service without ports, for _udp without UDP ports, for _tcp itself and for other types; NXDOMAIN for an unknown service', async () => {
    for (const [name, type] of [
      ['_noports._tcp.mesh.internal', 'SRV'],
      ['_app._udp.mesh.internal', 'SRV'],
      ['_tcp.mesh.internal', 'SRV'],
      ['_app._tcp.mesh.internal', 'A'],
      ['_app._tcp.mesh.internal', 'TXT'],
    ] as const) {
      const result = await dig(server, [name, type]);
      expect(result.status, `${name} ${type}`).toBe('NOERROR');
      expect(result.answer, `${name} ${type}`).toHaveLength(0);
      expect(result.authority.map((r) => r.type)).toEqual(['SOA']);
    }
    const unknown = await dig(server, ['_nothere._tcp.mesh.internal', 'SRV']);
    expect(unknown.status).toBe('NXDOMAIN');
    // And SRV at an address name is NODATA.
    expect((await dig(server, ['app.mesh.internal', 'SRV'])).answer).toHaveLength(0);
  });
});

describe('PTR', () => {
  const ptr = async (asker: string, address: string): Promise<DigResult> => dig(server, ['-b', asker, '-x', address]);

  it('names the host of every ip and public ip, IPv4 and IPv6, for every asker', async () => {
    for (const asker of ['127.0.10.1', '127.0.10.4', '127.0.0.1', '127.0.99.99']) {
      const v4 = await ptr(asker, '127.0.10.3');
      expect(v4.status).toBe('NOERROR');
      expect(v4.flags).toContain('aa');
      expect(v4.answer.map((r) => `${r.name} ${r.type} ${r.data}`)).toEqual(['3.10.0.127.in-addr.arpa. PTR h3.mesh.internal.']);
      expect((await ptr(asker, '127.0.30.9')).answer.map((r) => r.data)).toEqual(['p1.mesh.internal.']);
      const v6 = await ptr(asker, '2001:db8::10:1');
      expect(v6.answer.map((r) => `${r.name} ${r.type} ${r.data}`)).toEqual(['1.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR h1.mesh.internal.']);
    }
  });

  it('names overlay addresses only to askers on that overlay; others get NXDOMAIN without claiming the reverse zone', async () => {
    expect((await ptr('127.0.10.1', '100.64.10.2')).answer.map((r) => r.data)).toEqual(['h2.mesh.internal.']);
    expect((await ptr('127.0.10.3', '100.64.11.2')).answer.map((r) => r.data)).toEqual(['h2.mesh.internal.']);
    // Unowned loopback askers see --host h2's view: on ova and ovb.
    expect((await ptr('127.0.0.1', '100.64.11.3')).answer.map((r) => r.data)).toEqual(['h3.mesh.internal.']);
    for (const [asker, address] of [
      ['127.0.10.3', '100.64.10.1'],
      ['127.0.10.4', '100.64.10.1'],
      ['127.0.10.4', '100.64.11.2'],
    ] as const) {
      const hidden = await ptr(asker, address);
      expect(hidden.status, `${address} asked by ${asker}`).toBe('NXDOMAIN');
      expect(hidden.flags).toContain('aa');
      expect(hidden.authority).toHaveLength(0);
    }
  });

  it('answers NODATA (no SOA) for other types at a known address, and keeps the asker’s case', async () => {
    const txt = await dig(server, ['3.10.0.127.in-addr.arpa', 'TXT']);
    expect(txt.status).toBe('NOERROR');
    expect(txt.answer).toHaveLength(0);
    expect(txt.authority).toHaveLength(0);
    expect(txt.flags).toContain('aa');
    const upper = await dig(server, ['3.10.0.127.IN-ADDR.ARPA', 'PTR']);
    expect(upper.answer.map((r) => `${r.name} ${r.data}`)).toEqual(['3.10.0.127.IN-ADDR.ARPA. h3.mesh.internal.']);
  });

  it('forwards reverse names of addresses it does not know, and refuses them without upstreams', async () => {
    const forwarded = await ptr('127.0.10.4', '127.0.20.1');
    expect(forwarded.status).toBe('NOERROR');
    expect(forwarded.answer.map((r) => r.data)).toEqual(['u1.other.test.']);
    const tcp = await dig(server, ['+tcp', '-x', '127.0.20.1']);
    expect(tcp.answer.map((r) => r.data)).toEqual(['u1.other.test.']);
    // The upstream has no upstream: names it does not know are REFUSED, as before; its own it answers.
    const refused = await dig(upstreamServer, ['-x', '127.0.10.1']);
    expect(refused.status).toBe('REFUSED');
    expect(refused.flags).not.toContain('aa');
    // No whole reverse zone is claimed: no SOA for 127.in-addr.arpa.
    expect((await dig(upstreamServer, ['127.in-addr.arpa', 'SOA'])).status).toBe('REFUSED');
  });
});
