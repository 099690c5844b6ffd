/**
 * What a stranger can do to the real `meshplane dns` process, and what must
 * still work meanwhile: TCP connections that trickle a query one byte at a
 * time (slowloris), floods of idle connections from one and from several
 * source addresses, and queries padded with trailing garbage. Real peers:
 * `dig` and `dig +tcp`, on loopback; the flood comes from this process, the
 * server is a child process with its own descriptors.
 */
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTopology } from '../src/topology/index.js';
import { LOOPBACK_MESH, addressesOf, buildQuery, compileMesh, dig, startDnsCli, tcpExchange, udpExchange } from './support/dns.js';
import type { DigResult } from './support/dns.js';
import { tempDir } from './support/run.js';

const work = tempDir('dns-limits');
let topologyFile: string;

beforeAll(() => {
  topologyFile = `${work.path}/topology.json`;
  writeTopology(topologyFile, compileMesh(work.path, LOOPBACK_MESH));
});
afterAll(() => work.remove());

interface Cli {
  readonly child: ChildProcess;
  readonly server: { address: string; port: number };
  readonly metricsUrl: string;
  readonly log: { text: string };
}

/** Starts `meshplane dns` on a free loopback port with metrics; resolves once it serves. */
async function startCli(extra: readonly string[] = []): Promise<Cli> {
  const { child, line, log } = await startDnsCli(['--topology', topologyFile, '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward', '--no-watch', '--metrics', '127.0.0.1:0', '--log-level', 'debug', ...extra]);
  return { child, server: { address: '127.0.0.1', port: Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]) }, metricsUrl: /metrics at (\S+)/.exec(line)![1]!, log };
}

async function stopCli(cli: Cli): Promise<void> {
  if (cli.child.exitCode !== null) return;
  cli.child.kill('SIGTERM');
  await new Promise((r) => cli.child.once('exit', r));
}

async function metric(cli: Cli, name: string): Promise<number> {
  const text = await (await fetch(cli.metricsUrl)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface FloodOptions {
  readonly count: number;
  /** Local addresses to connect from, used in turn. */
  readonly sources: readonly string[];
  /** Write one byte of a (never finished) query this often; undefined: stay silent. */
  readonly trickleMs?: number;
  /** Reopen a connection the server closed after this long (an attacker keeps trying). */
  readonly reconnectMs: number;
}

interface Flood {
  /** Connections opened so far (reconnects included), and open right now. */
  readonly stats: { connected: number; open: number; closed: number; everConnected: Set<number> };
  /** Longest any connection stayed open (the ones still open count up to now). */
  longestMs(): number;
  stop(): void;
}

/** Many connections that hold a slot and never complete a query. */
function flood(server: { address: string; port: number }, options: FloodOptions): Flood {
  const query = buildQuery('app.mesh.internal', 1);
  const framed = Buffer.concat([Buffer.from([query.length >> 8, query.length & 0xff]), query]);
  const stats = { connected: 0, open: 0, closed: 0, everConnected: new Set<number>() };
  const sockets = new Map<number, { socket: Socket; openedAt: number | null; timer: NodeJS.Timeout | null }>();
  let longest = 0;
  let stopped = false;
  const open = (slot: number): void => {
    if (stopped) return;
    const socket = connect({ host: server.address, port: server.port, localAddress: options.sources[slot % options.sources.length] });
    const entry = { socket, openedAt: null as number | null, timer: null as NodeJS.Timeout | null };
    sockets.set(slot, entry);
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      entry.openedAt = Date.now();
      stats.connected++;
      stats.open++;
      stats.everConnected.add(slot);
      if (options.trickleMs === undefined) return;
      let sent = 0;
      entry.timer = setInterval(() => {
        // Never the last byte: the query stays incomplete for as long as the server lets it.
        if (sent < framed.length - 1) socket.write(framed.subarray(sent, ++sent));
      }, options.trickleMs);
    });
    socket.on('close', () => {
      if (entry.timer !== null) clearInterval(entry.timer);
      if (entry.openedAt !== null) {
        longest = Math.max(longest, Date.now() - entry.openedAt);
        stats.open--;
        stats.closed++;
      }
      if (sockets.get(slot) === entry) sockets.delete(slot);
      if (!stopped) setTimeout(() => open(slot), options.reconnectMs);
    });
  };
  for (let slot = 0; slot < options.count; slot++) open(slot);
  return {
    stats,
    longestMs() {
      let result = longest;
      for (const entry of sockets.values()) if (entry.openedAt !== null && !entry.socket.destroyed) result = Math.max(result, Date.now() - entry.openedAt);
      return result;
    },
    stop() {
      stopped = true;
      for (const entry of sockets.values()) {
        if (entry.timer !== null) clearInterval(entry.timer);
        entry.socket.destroy();
      }
    },
  };
}

/** `dig +tcp` for app (4 instances); null when it got no answer. */
async function digTcp(server: { address: string; port: number }, source = '127.0.0.1'): Promise<DigResult | null> {
  try {
    return await dig(server, ['+tcp', '-b', source, 'app.mesh.internal']);
  } catch {
    return null;
  }
}

function answeredApp(result: DigResult | null): boolean {
  return result !== null && result.status === 'NOERROR' && result.transport === 'TCP' && addressesOf(result).length === 4;
}

/** Runs `total` digs, `parallel` at a time; returns how many got the full answer. */
async function digMany(server: { address: string; port: number }, total: number, parallel: number): Promise<number> {
  let answered = 0;
  for (let done = 0; done < total; done += parallel) {
    const batch = await Promise.all(Array.from({ length: Math.min(parallel, total - done) }, () => digTcp(server)));
    answered += batch.filter(answeredApp).length;
  }
  return answered;
}

describe('TCP floods', () => {
  beforeAll(() => {
    // The flood's sockets are ours (the server is another process): 1,000 plus dig's and vitest's need room.
    const limit = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
    if (Number.isFinite(limit) && limit < 2500) throw new Error(`ulimit -n is ${limit}; these tests open 1,000+ sockets: raise it to 2500 or more`);
  });

  it('answers 20 dig +tcp queries while 300 connections trickle one byte every 2 s, and holds no trickler past the query timeout', async () => {
    const cli = await startCli();
    // Five attacker addresses, 60 connections each: 300 > the 256 cap, no source over the per-source cap.
    const attack = flood(cli.server, { count: 300, sources: ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6'], trickleMs: 2000, reconnectMs: 250 });
    try {
      const started = Date.now();
      await waitFor(() => attack.stats.everConnected.size === 300, 20_000, 'all 300 trickling connections to connect once');
      const answered = await digMany(cli.server, 20, 4);
      // Keep the flood on past the query timeout (5 s by default), so that every trickler has met it.
      await waitFor(() => Date.now() - started > 8000, 20_000, 'the flood to run 8 s');
      const longest = attack.longestMs();
      expect(answered).toBe(20);
      // Default --tcp-query-timeout 5 s from the opening; a busy machine gets 2.5 s of slack.
      expect(longest).toBeLessThan(7500);
      // 300 attackers for 256 slots: the ones that come back push out the oldest tricklers before their deadline.
      expect(await metric(cli, 'meshplane_dns_tcp_closed_total{reason="evicted_global"}')).toBeGreaterThan(0);
      expect(await metric(cli, 'meshplane_dns_tcp_connections')).toBeLessThanOrEqual(256);
    } finally {
      attack.stop();
      await stopCli(cli);
    }
    // Logged, but sampled: far fewer lines than closed connections.
    const lines = cli.log.text.split('\n').filter((l) => l.includes('DNS TCP connection closed by a limit'));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThan(60);
    expect(cli.log.text).toMatch(/"reason":"evicted_global"/);
  }, 90_000);

  it('closes a trickling query at the query timeout and a silent answered connection at the idle timeout', async () => {
    const cli = await startCli(['--tcp-query-timeout', '1', '--tcp-idle-timeout', '1.5']);
    try {
      // 20 tricklers, well under every cap: only the deadline can close them.
      const attack = flood(cli.server, { count: 20, sources: ['127.0.0.7'], trickleMs: 200, reconnectMs: 60_000 });
      await waitFor(() => attack.stats.closed === 20, 10_000, 'the tricklers to be closed');
      expect(attack.longestMs()).toBeGreaterThanOrEqual(900);
      expect(attack.longestMs()).toBeLessThan(3000);
      attack.stop();
      expect(await metric(cli, 'meshplane_dns_tcp_closed_total{reason="query_timeout"}')).toBe(20);

      // Answered, then silent: closed by the idle timeout, counted from the answer.
      const socket = connect(cli.server.port, cli.server.address);
      const query = buildQuery('app.mesh.internal', 1);
      let answeredAt = 0;
      const closedAt = await new Promise<number>((resolve) => {
        socket.on('connect', () => socket.write(Buffer.concat([Buffer.from([0, query.length]), query])));
        socket.on('data', () => (answeredAt ||= Date.now()));
        socket.on('close', () => resolve(Date.now()));
      });
      expect(answeredAt).toBeGreaterThan(0);
      expect(closedAt - answeredAt).toBeGreaterThanOrEqual(1300);
      expect(closedAt - answeredAt).toBeLessThan(4000);
      expect(await metric(cli, 'meshplane_dns_tcp_closed_total{reason="idle"}')).toBe(1);
    } finally {
      await stopCli(cli);
    }
  }, 60_000);

  for (const [label, sources] of [
    ['one source, the asker\'s own (127.0.0.1)', ['127.0.0.1']],
    ['four other sources (127.0.0.2-5)', ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']],
  ] as const) {
    it(`answers dig +tcp during 1,000 idle connections from ${label}`, async () => {
      const cli = await startCli();
      // Closed ones come back after a second: the flood keeps its pressure while dig asks.
      const attack = flood(cli.server, { count: 1000, sources, reconnectMs: 1000 });
      try {
        await waitFor(() => attack.stats.connected >= 1000, 30_000, '1,000 idle connections to connect');
        const held = await metric(cli, 'meshplane_dns_tcp_connections');
        expect(held).toBeLessThanOrEqual(sources.length === 1 ? 64 : 256);
        expect(attack.stats.open).toBeGreaterThan(0);
        const answered = await digMany(cli.server, 5, 1);
        expect(answered).toBe(5);
        const evicted = (await metric(cli, 'meshplane_dns_tcp_closed_total{reason="evicted_source"}')) + (await metric(cli, 'meshplane_dns_tcp_closed_total{reason="evicted_global"}'));
        expect(evicted).toBeGreaterThan(0);
      } finally {
        attack.stop();
        await stopCli(cli);
      }
    }, 90_000);
  }
});

describe('trailing garbage', () => {
  let cli: Cli;
  beforeAll(async () => {
    cli = await startCli();
  });
  afterAll(() => stopCli(cli));

  const rcode = (reply: Buffer): number => reply[3]! & 0xf;

  it('answers FORMERR over UDP to a query with 65 KB after the question, echoing ID and question', async () => {
    const query = buildQuery('app.mesh.internal', 1, { id: 0x4242 });
    const reply = await udpExchange(cli.server, Buffer.concat([query, Buffer.alloc(65_000, 0x41)]), 3000);
    expect(reply).not.toBeNull();
    expect(reply!.readUInt16BE(0)).toBe(0x4242);
    expect(rcode(reply!)).toBe(1);
    expect(reply!.readUInt16BE(4)).toBe(1);
    expect(reply!.subarray(12)).toEqual(query.subarray(12));
  });

  it('answers FORMERR over TCP to a query with garbage after the question or after the OPT', async () => {
    const plain = buildQuery('app.mesh.internal', 1);
    const withOpt = buildQuery('app.mesh.internal', 1, { edns: { udp: 1232 } });
    const replies = await tcpExchange(cli.server, [Buffer.concat([plain, Buffer.alloc(65_400, 0x41)]), Buffer.concat([withOpt, Buffer.from([0])]), plain], 3, 5000);
    expect(replies.map(rcode)).toEqual([1, 1, 0]);
    // The OPT of the second was readable: it comes back (RFC 6891 7).
    expect(replies[1]!.readUInt16BE(10)).toBe(1);
  });

  it('still answers queries with EDNS options (cookie, NSID, ECS, padding) over UDP and TCP', async () => {
    for (const transport of ['+notcp', '+tcp']) {
      const result = await dig(cli.server, [transport, '+cookie', '+nsid', '+subnet=192.0.2.0/24', '+padding=128', 'app.mesh.internal']);
      expect(result.status).toBe('NOERROR');
      expect(addressesOf(result)).toHaveLength(4);
    }
    // A cookie option built by hand: OPT RDATA = code 10, length 8, client cookie.
    const query = buildQuery('app.mesh.internal', 1, { edns: { udp: 1232 } });
    const cookie = Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    query.writeUInt16BE(cookie.length, query.length - 2);
    const reply = await udpExchange(cli.server, Buffer.concat([query, cookie]), 3000);
    expect(rcode(reply!)).toBe(0);
    expect(reply!.readUInt16BE(6)).toBe(4);
  });
});
