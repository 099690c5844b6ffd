/**
 * DNS test helpers: a generated mesh (inputs written as YAML, compiled in
 * process), a `dig` runner with a parser for its output, and raw UDP/TCP
 * query helpers for the cases dig will not send.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { compileTopology, loadConfig } from '../../src/config/index.js';
import { DnsService } from '../../src/dns/index.js';
import type { Topology } from '../../src/topology/index.js';
import { LiveTopology, topologyFileSource, writeTopology } from '../../src/topology/index.js';
import { CLI } from './run.js';

export const silentLogger = pino({ level: 'silent' });

export interface MeshHost {
  readonly name: string;
  readonly ips: readonly string[];
  readonly publicIps?: readonly string[];
  readonly overlays?: Readonly<Record<string, string>>;
  readonly shard?: string;
  readonly groups: readonly string[];
}

export interface MeshSpec {
  readonly domain?: string;
  readonly overlays: readonly { name: string; network: string; port: number }[];
  readonly hosts: readonly MeshHost[];
  /** services.yml text. */
  readonly services: string;
}

/** Writes hosts.yml + services.yml for `spec` into `dir` and returns their paths. */
export function writeMesh(dir: string, spec: MeshSpec): { services: string; inventory: string } {
  const groups = new Map<string, string[]>();
  for (const host of spec.hosts) for (const group of host.groups) groups.set(group, [...(groups.get(group) ?? []), host.name]);
  const hostLines = spec.hosts.map((host) => {
    const vars = [`ips: [${host.ips.map((ip) => JSON.stringify(ip)).join(', ')}]`];
    if (host.publicIps !== undefined) vars.push(`public_ips: [${host.publicIps.map((ip) => JSON.stringify(ip)).join(', ')}]`);
    for (const [overlay, address] of Object.entries(host.overlays ?? {})) vars.push(`ip_${overlay}: ${address}`);
    if (host.shard !== undefined) vars.push(`shard_id: ${host.shard}`);
    return `    ${host.name}: {${vars.join(', ')}}`;
  });
  const groupLines = [...groups].map(([group, members]) => `    ${group}:\n      hosts:\n${members.map((m) => `        ${m}:`).join('\n')}`);
  const inventory = `all:
  vars:
    domain: ${spec.domain ?? 'mesh.internal'}
    net_overlays:
${spec.overlays.map((o) => `      - {name: ${o.name}, network: ${o.network}, port: ${o.port}}`).join('\n')}
  hosts:
${hostLines.join('\n')}
  children:
${groupLines.join('\n')}
`;
  const paths = { services: join(dir, 'services.yml'), inventory: join(dir, 'hosts.yml') };
  writeFileSync(paths.inventory, inventory);
  writeFileSync(paths.services, spec.services);
  return paths;
}

export function compileMesh(dir: string, spec: MeshSpec): Topology {
  const paths = writeMesh(dir, spec);
  const config = loadConfig(paths);
  if (!config.ok) throw new Error(config.diagnostics.errors.map((d) => `${d.code} ${d.message}`).join('\n'));
  return compileTopology(config);
}

/**
 * The mesh most DNS tests use, all on loopback so that `dig -b` can ask
 * as any host:
 *   h1 127.0.10.1 + 2001:db8::10:1, overlay ova      shard s1
 *   h2 127.0.10.2, overlays ova and ovb              shard s2
 *   h3 127.0.10.3, overlay ovb
 *   h4 127.0.10.4, no overlay
 *   f01..f60 127.0.11.1-60 (group fleet)
 * Services: app on h1-h4, db on h3+h4 with a master, big on all 60 fleet
 * hosts, capped on the fleet with dns_max_answers: 5.
 */
export const LOOPBACK_MESH: MeshSpec = {
  overlays: [
    { name: 'ova', network: '100.64.10.0/24', port: 6550 },
    { name: 'ovb', network: '100.64.11.0/24', port: 6551 },
  ],
  hosts: [
    { name: 'h1', ips: ['127.0.10.1', '2001:db8::10:1'], overlays: { ova: '100.64.10.1' }, shard: 's1', groups: ['app'] },
    { name: 'h2', ips: ['127.0.10.2'], overlays: { ova: '100.64.10.2', ovb: '100.64.11.2' }, shard: 's2', groups: ['app'] },
    { name: 'h3', ips: ['127.0.10.3'], overlays: { ovb: '100.64.11.3' }, groups: ['app', 'db'] },
    { name: 'h4', ips: ['127.0.10.4'], groups: ['app', 'db'] },
    ...Array.from({ length: 60 }, (_, i) => ({ name: `f${String(i + 1).padStart(2, '0')}`, ips: [`127.0.11.${i + 1}`], groups: ['fleet'] })),
  ],
  services: `app:
  scheduling_group: app
db:
  scheduling_group: db
  num_instances: 2
  master_election: true
big:
  scheduling_group: fleet
capped:
  scheduling_group: fleet
  dns_max_answers: 5
`,
};

/**
 * LOOPBACK_MESH's hosts and p1 (behind NAT: a public address of its own),
 * with ports on the services (SRV), a UDP port, and `noports` without any.
 */
export const SRV_MESH: MeshSpec = {
  ...LOOPBACK_MESH,
  hosts: [...LOOPBACK_MESH.hosts, { name: 'p1', ips: ['127.0.10.9'], publicIps: ['127.0.30.9'], groups: ['edge'] }],
  services: `app:
  scheduling_group: app
  ports: [8080, 8443]
db:
  scheduling_group: db
  num_instances: 2
  master_election: true
  ports: [5432]
big:
  scheduling_group: fleet
  ports: [9000]
capped:
  scheduling_group: fleet
  dns_max_answers: 5
  ports: [9001]
noports:
  scheduling_group: db
resolver:
  scheduling_group: db
  ports: [53/udp, 853]
`,
};

/** Another mesh, on addresses SRV_MESH does not know: an upstream for names and PTRs outside the mesh. */
export const UPSTREAM_MESH: MeshSpec = {
  domain: 'other.test',
  overlays: [],
  hosts: [{ name: 'u1', ips: ['127.0.20.1'], groups: ['g'] }],
  services: 'svc:\n  scheduling_group: g\n',
};

export interface DigRecord {
  readonly name: string;
  readonly ttl: number;
  readonly type: string;
  readonly data: string;
}

export interface DigResult {
  readonly status: string;
  readonly flags: readonly string[];
  readonly id: number;
  readonly question: string;
  readonly answer: readonly DigRecord[];
  readonly authority: readonly DigRecord[];
  /** EDNS version and UDP size from the OPT pseudosection; null when the reply had none. */
  readonly opt: { readonly version: number; readonly udp: number } | null;
  /** "UDP" or "TCP": how the final answer came. */
  readonly transport: string;
  readonly raw: string;
}

/** Runs dig against a server and parses its answer; fails the test when dig gets no reply. */
export async function dig(server: { address: string; port: number }, args: readonly string[]): Promise<DigResult> {
  // +time: a ceiling for an answer that should come, on a busy machine too.
  const result = await runAsync('dig', [`@${server.address}`, '-p', String(server.port), '+tries=1', '+time=10', ...args]);
  if (result.status !== 0) throw new Error(`dig ${args.join(' ')} failed (${result.status}): ${result.stdout}${result.stderr}`);
  return parseDig(result.stdout);
}

/** Like run(), without blocking the event loop (servers under test may live in this process). */
export function runAsync(command: string, args: readonly string[], timeoutMs = 60_000): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, [...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const status = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ status, stdout, stderr });
    });
  });
}

export function parseDig(text: string): DigResult {
  const header = /->>HEADER<<- opcode: \S+, status: (\S+), id: (\d+)/.exec(text);
  const flags = /;; flags:([^;]*);/.exec(text);
  if (header === null || flags === null) throw new Error(`dig printed no reply:\n${text}`);
  const section = (title: string): DigRecord[] => {
    const start = text.indexOf(`;; ${title} SECTION:\n`);
    if (start < 0) return [];
    const body = text.slice(start).split('\n').slice(1);
    const records: DigRecord[] = [];
    for (const line of body) {
      if (line.trim() === '') break;
      const [name = '', ttl = '0', , type = '', ...data] = line.split(/\s+/);
      records.push({ name, ttl: Number(ttl), type, data: data.join(' ') });
    }
    return records;
  };
  const opt = /; EDNS: version: (\d+), flags:[^;]*; udp: (\d+)/.exec(text);
  const question = /;; QUESTION SECTION:\n;(\S+)/.exec(text);
  const server = /;; SERVER: .*\((UDP|TCP)\)/.exec(text);
  return {
    status: header[1]!,
    id: Number(header[2]),
    flags: flags[1]!.trim().split(/\s+/).filter(Boolean),
    question: question?.[1] ?? '',
    answer: section('ANSWER'),
    authority: section('AUTHORITY'),
    opt: opt === null ? null : { version: Number(opt[1]), udp: Number(opt[2]) },
    transport: server?.[1] ?? '',
    raw: text,
  };
}

/** The records of the ADDITIONAL section (dig prints the OPT apart). */
export function additional(result: DigResult): DigRecord[] {
  const start = result.raw.indexOf(';; ADDITIONAL SECTION:\n');
  if (start < 0) return [];
  const records: DigRecord[] = [];
  for (const line of result.raw.slice(start).split('\n').slice(1)) {
    if (line.trim() === '') break;
    const [name = '', ttl = '0', , type = '', ...data] = line.split(/\s+/);
    records.push({ name, ttl: Number(ttl), type, data: data.join(' ') });
  }
  return records;
}

export const addressesOf = (result: DigResult): string[] => result.answer.filter((r) => r.type === 'A' || r.type === 'AAAA').map((r) => r.data);

/**
 * One raw UDP exchange; resolves null when nothing comes back within `timeoutMs`.
 * The default is a ceiling for an answer that should come (on a busy machine too); a test
 * that expects no answer passes a short time of its own.
 */
export function udpExchange(server: { address: string; port: number }, packet: Uint8Array, timeoutMs = 10_000): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const socket = createSocket(server.address.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      socket.close();
      resolve(null);
    }, timeoutMs);
    socket.on('message', (message) => {
      clearTimeout(timer);
      socket.close();
      resolve(message);
    });
    socket.send(packet, server.port, server.address);
  });
}

/** Sends several length-prefixed queries on one TCP connection (one write) and collects `expect` replies; fails when the server closes first. */
export function tcpExchange(server: { address: string; port: number }, packets: readonly Uint8Array[], expect = packets.length, timeoutMs = 10_000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: server.address, port: server.port });
    const replies: Buffer[] = [];
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`got ${replies.length} of ${expect} TCP replies`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(Buffer.concat(packets.map((p) => Buffer.concat([Buffer.from([p.length >> 8, p.length & 0xff]), p])))));
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        replies.push(buffered.subarray(2, 2 + buffered.readUInt16BE(0)));
        buffered = buffered.subarray(2 + buffered.readUInt16BE(0));
      }
      if (replies.length >= expect) {
        clearTimeout(timer);
        socket.destroy();
        resolve(replies);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`closed after ${replies.length} of ${expect} TCP replies`));
    });
  });
}

/** A plain query in wire form: ID, RD set, one question, optional OPT. */
export function buildQuery(name: string, type: number, options: { id?: number; edns?: { udp: number; version?: number }; flags?: number } = {}): Buffer {
  const labels = name.split('.').filter(Boolean);
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(options.id ?? 0x1234, 0);
  header.writeUInt16BE(options.flags ?? 0x0100, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(options.edns === undefined ? 0 : 1, 10);
  const question = Buffer.alloc(4);
  question.writeUInt16BE(type, 0);
  question.writeUInt16BE(1, 2);
  const parts = [header, qname, question];
  if (options.edns !== undefined) {
    const opt = Buffer.alloc(11);
    opt.writeUInt16BE(41, 1);
    opt.writeUInt16BE(options.edns.udp, 3);
    opt[6] = options.edns.version ?? 0;
    parts.push(opt);
  }
  return Buffer.concat(parts);
}

/** Starts the built `meshplane dns` with `args`; resolves with its first stdout line once it serves (stderr, the log, in `log.text`). */
export async function startDnsCli(args: readonly string[]): Promise<{ child: ChildProcess; line: string; log: { text: string } }> {
  const child = spawn(process.execPath, [CLI, 'dns', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = { text: '' };
  child.stderr.on('data', (chunk: Buffer) => (log.text += chunk.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(out);
    });
    child.on('exit', (code) => reject(new Error(`dns exited ${code}: ${log.text}`)));
  });
  return { child, line, log };
}

/**
 * A second meshplane DNS server, for `spec` compiled in `dir`, on 127.0.0.1
 * with no upstream of its own: the real DNS server a test's server forwards
 * names (and PTRs) outside its mesh to.
 */
export async function startUpstreamDns(dir: string, spec: MeshSpec): Promise<{ service: DnsService; udp: { address: string; port: number } }> {
  mkdirSync(dir);
  writeTopology(join(dir, 'topology.json'), compileMesh(dir, spec));
  const service = new DnsService({
    topology: new LiveTopology(topologyFileSource(join(dir, 'topology.json')), { watch: false, logger: silentLogger }),
    host: null,
    listen: [{ address: '127.0.0.1', port: 0 }],
    upstreams: [],
    logger: silentLogger,
  });
  await service.start();
  return { service, udp: service.addresses.find((a) => a.transport === 'udp')! };
}
