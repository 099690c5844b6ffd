/**
 * Gateway operations as an operator sees them, with the real `meshplane
 * gateway` and `meshplane agent` processes and PKI-issued credentials:
 * health checks through the tunnel steer traffic (least loaded first, never
 * to an unhealthy backend, back when it recovers), client affinity,
 * refusals when no backend is healthy, outlier ejection and return, and the
 * admin API over mutual TLS with curl (kill by id, metrics and logs show it).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeafSigner, generateKeyPair, initCa, loadCa, makeCsr, revoke } from '../src/pki/index.js';
import { clientSans } from '../src/pki/testing.js';
import { runAsync } from './support/dns.js';
import { startDaemon, stopAllDaemons } from './support/gateway.js';
import type { Daemon } from './support/gateway.js';
import { OPS_PORTS, closedPort, prepareOpsMesh, startOpsAgent, startTestBackend } from './support/gateway-ops.js';
import type { OpsFixture, TestBackend } from './support/gateway-ops.js';
import { tempDir } from './support/run.js';
import { SOON_MS, sleep, waitFor as waitUntil, within } from './support/wait.js';

const work = tempDir('gateway-ops');
let fixture: OpsFixture;
let gateway: Daemon;
let adminPort: number;
let metricsUrl: string;
const pool = new Map<string, TestBackend>(); // by host
const others: TestBackend[] = [];
let flakyGood: TestBackend;
let flakyBadHost: string;
const agents: Daemon[] = [];
const flakyAgents: Daemon[] = [];
const LOADS: Record<string, number> = { b1: 1, b2: 5, b3: 20 };
/** Client certificates claiming the gateway-admin credential that must not get in, with their key. */
const impostors: Record<'foreign' | 'expired' | 'revoked', string> = { foreign: '', expired: '', revoked: '' };
let impostorKey: string;

interface BackendJson {
  id: string;
  service: string;
  host: string;
  agent_id: string;
  health: string;
  load: number | null;
  open_connections: number;
  ejected_until: string | null;
  checks: Record<string, { state: string; reason: string | null }>;
}

const adminFiles = (credential: string, host = 'gw1'): { ca: string; cert: string; key: string } => {
  const dir = join(fixture.root(host), 'x509', credential);
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'client', 'cert.pem'), key: join(dir, 'client', 'private_key.pem') };
};

/** The admin API over mutual TLS from Node, as the gateway-admin credential (for polling). */
function admin<T>(method: string, path: string): Promise<{ status: number; body: T }> {
  const files = adminFiles('gateway-admin');
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port: adminPort, method, path, servername: 'gateway.mesh.internal', ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key), agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as T }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const backendsOf = async (service: string): Promise<BackendJson[]> => (await admin<{ backends: BackendJson[] }>('GET', `/backends?service=${service}`)).body.backends;

/** curl over mutual TLS to the admin API, as an operator would (with a credential's client certificate, none, or the given one). */
async function curlAdmin(args: readonly string[], credential: string | null | { cert: string; key: string } = 'gateway-admin', host = 'gw1'): Promise<{ status: number; body: Record<string, unknown> }> {
  const files = adminFiles(typeof credential === 'string' ? credential : 'gateway-admin', host);
  const client = credential === null ? null : typeof credential === 'string' ? files : credential;
  const result = await runAsync('curl', [
    '-sS',
    '--max-time',
    '10',
    '-w',
    '\n%{http_code}',
    '--cacert',
    files.ca,
    ...(client === null ? [] : ['--cert', client.cert, '--key', client.key]),
    '--resolve',
    `gateway.mesh.internal:${adminPort}:127.0.0.1`,
    ...args,
  ]);
  if (result.status !== 0) throw new Error(`curl ${args.join(' ')}: ${result.stderr}`);
  const lines = result.stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  return { status, body: JSON.parse(lines.join('\n')) as Record<string, unknown> };
}

const adminUrl = (path: string): string => `https://gateway.mesh.internal:${adminPort}${path}`;

/** One request through the HTTP front on a new connection. */
function get(host: string, localAddress = '127.0.0.1'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: OPS_PORTS.http, path: '/', headers: { host }, localAddress, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** A request that fails: a 502, or the connection closed without an answer (the agent refused it after accepting). */
async function fails(host: string): Promise<boolean> {
  try {
    return (await get(host)).status === 502;
  } catch {
    return true;
  }
}

async function spread(host: string, n: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const { status, body } = await get(host);
    const key = status === 200 ? body.trim() : `HTTP ${status}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

async function scrape(): Promise<string> {
  return (await runAsync('curl', ['-sf', metricsUrl])).stdout;
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs = SOON_MS): Promise<void> {
  await waitUntil(check, { what, deadline: timeoutMs, interval: 50, explain: () => `--- gateway ---\n${gateway.output().slice(-4000)}` });
}

/** pino writes asynchronously: wait for the line rather than expect it at once. */
async function logged(pattern: RegExp): Promise<void> {
  await waitFor(() => pattern.test(gateway.output()), `log line ${String(pattern)}`);
}

/** All three pool backends in this state, on every endpoint. */
const allPoolHealth = async (state: string): Promise<boolean> => {
  const list = await backendsOf('pool');
  return list.length === 3 && list.every((b) => b.health === state && Object.values(b.checks).every((c) => c.state === state));
};

beforeAll(async () => {
  fixture = await prepareOpsMesh(work.path);
  // gateway-admin certificates that must be refused: from another CA, expired, revoked (in the CRL the gateway loads).
  const caDir = join(fixture.stateDir, 'ca');
  const ca = loadCa(caDir);
  const key = generateKeyPair();
  const csr = await makeCsr({ privateKeyPem: key.privateKeyPem, credential: 'gateway-admin', kind: 'client', sans: clientSans(fixture.topology, fixture.topology.credentials['gateway-admin']!, fixture.topology.hosts['gw1']!) });
  const signer = new LeafSigner(ca);
  const revoked = signer.signCsr(fixture.topology, { csrPem: csr, host: 'gw1', kind: 'client', source: 'test' });
  await revoke(ca, revoked.serial, 'keyCompromise');
  const expired = signer.signCsr(fixture.topology, { csrPem: csr, host: 'gw1', kind: 'client', source: 'test', now: new Date(Date.now() - 400 * 86_400_000) });
  const otherCa = await initCa({ caDir: join(work.path, 'other-ca'), topology: fixture.topology });
  const foreign = new LeafSigner(otherCa.ca).signCsr(fixture.topology, { csrPem: csr, host: 'gw1', kind: 'client', source: 'test' });
  impostorKey = join(work.path, 'impostor-key.pem');
  writeFileSync(impostorKey, key.privateKeyPem);
  for (const [name, cert] of [['foreign', foreign], ['expired', expired], ['revoked', revoked]] as const) {
    impostors[name] = join(work.path, `impostor-${name}.pem`);
    writeFileSync(impostors[name], cert.pem);
  }
  gateway = startDaemon(
    ['gateway', '--topology', fixture.topologyFile, '--credentials-root', fixture.root('gw1'), '--crl', join(caDir, 'crl.pem'), '--listen', '127.0.0.1:0', '--front-address', '127.0.0.1', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0'],
    'agents register on',
  );
  const line = await gateway.ready;
  const registration = Number(/agents register on [^:]+:(\d+)/.exec(line)![1]);
  adminPort = Number(/admin API at https:\/\/127\.0\.0\.1:(\d+)\//.exec(line)![1]);
  metricsUrl = /metrics at (\S+)/.exec(line)![1]!;
  for (const host of fixture.hostsOf('pool')) {
    const backend = await startTestBackend(host, LOADS[host]!);
    pool.set(host, backend);
    agents.push(startOpsAgent(fixture, 'pool', host, registration, backend.port));
  }
  const [goodHost, badHost] = fixture.hostsOf('flaky') as [string, string];
  flakyGood = await startTestBackend(`flaky-${goodHost}`, null);
  others.push(flakyGood);
  flakyBadHost = badHost;
  flakyAgents.push(startOpsAgent(fixture, 'flaky', goodHost, registration, flakyGood.port));
  flakyAgents.push(startOpsAgent(fixture, 'flaky', badHost, registration, await closedPort()));
  agents.push(...flakyAgents);
  const lonely = await startTestBackend('lonely', null);
  lonely.health = { status: 503, body: 'maintenance', load: null };
  others.push(lonely);
  agents.push(startOpsAgent(fixture, 'lonely', fixture.hostsOf('lonely')[0]!, registration, lonely.port));
  await waitFor(async () => (await allPoolHealth('healthy')) && (await backendsOf('flaky')).length === 2 && (await backendsOf('lonely')).length === 1, 'agents registered and pool healthy');
}, 60_000);

afterAll(async () => {
  await stopAllDaemons();
  for (const backend of [...pool.values(), ...others]) await backend.close();
  work.remove();
});

describe('health checks steer traffic', () => {
  it('checks each backend through its tunnel with Host iconia-healthcheck on each endpoint\'s path, and keeps the load it reports', async () => {
    for (const backend of pool.values()) {
      expect([...backend.checkHosts]).toEqual(['iconia-healthcheck']);
      expect([...backend.checkPaths].sort()).toEqual(['/health', '/ready']);
    }
    const loads = Object.fromEntries((await backendsOf('pool')).map((b) => [b.host, b.load]));
    expect(loads).toEqual({ b1: 1, b2: 5, b3: 20 });
    const text = await scrape();
    expect(text).toMatch(/meshplane_gateway_backend_load\{service="pool",host="b[1-3]",slot="0"\} 20/);
    expect(text).toMatch(/meshplane_gateway_health_check_duration_seconds_count\{service="pool",host="b[1-3]",slot="0",endpoint="lb"\} [1-9]/);
    expect(text).toMatch(/meshplane_gateway_health_checks_total\{service="pool",host="b[1-3]",slot="0",endpoint="lb",result="pass"\} [1-9]/);
  });

  it('skews traffic to the least loaded of three backends', async () => {
    for (const backend of pool.values()) backend.hits = 0;
    const counts = await spread('pool.example.test', 300);
    expect(counts['backend=b1']! / 300).toBeGreaterThan(0.5);
    expect(counts['backend=b2'] ?? 0).toBeGreaterThan(counts['backend=b3'] ?? 0);
    expect(counts['backend=b3'] ?? 0).toBeLessThan(30);
    expect(pool.get('b1')!.hits + pool.get('b2')!.hits + pool.get('b3')!.hits).toBe(300);
  });

  it('sends no new connection to a backend that turns unhealthy, keeps the reason, and sends traffic again once it recovers', async () => {
    const b1 = pool.get('b1')!;
    b1.health = { status: 503, body: 'disk full', load: 1 };
    await waitFor(async () => (await backendsOf('pool')).find((b) => b.host === 'b1')?.checks['lb']?.state === 'unhealthy', 'b1 unhealthy');
    const view = (await backendsOf('pool')).find((b) => b.host === 'b1')!;
    expect(view.checks['lb']).toMatchObject({ state: 'unhealthy', reason: 'HTTP 503: disk full' });
    expect(await scrape()).toMatch(new RegExp(`meshplane_gateway_backend_healthy\\{service="pool",host="${view.host}",slot="0",endpoint="lb"\\} 0`));
    await logged(new RegExp(`"backend":"${view.id}".*"endpoint":"lb","from":"healthy","to":"unhealthy","reason":"HTTP 503: disk full".*"msg":"backend health changed"`));

    b1.hits = 0;
    const counts = await spread('pool.example.test', 100);
    expect(b1.hits).toBe(0);
    expect((counts['backend=b2'] ?? 0) + (counts['backend=b3'] ?? 0)).toBe(100);

    b1.health = { status: 200, body: 'ok', load: 1 };
    await waitFor(async () => (await backendsOf('pool')).find((b) => b.host === 'b1')?.health === 'healthy', 'b1 healthy again');
    await logged(new RegExp(`"backend":"${view.id}".*"from":"unhealthy","to":"healthy"`));
    const back = await spread('pool.example.test', 100);
    expect(back['backend=b1']).toBeGreaterThan(40);
  });

  it('keeps a client on one backend with balance: source, whichever other backend goes', async () => {
    const clients = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 10}`);
    const home = new Map<string, string>();
    for (const client of clients) {
      const seen = new Set<string>();
      for (let i = 0; i < 8; i++) seen.add((await get('sticky.example.test', client)).body.trim());
      expect(seen.size).toBe(1);
      home.set(client, [...seen][0]!);
    }
    expect(new Set(home.values()).size).toBeGreaterThan(1);
    // Kill a backend that one client does not use: that client stays where it was.
    const [client, host] = [...home][0]!;
    const victim = (await backendsOf('pool')).find((b) => `backend=${b.host}` !== host)!;
    expect((await admin('DELETE', `/backends/${victim.id}`)).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await get('sticky.example.test', client)).body.trim()).toBe(host);
    await waitFor(() => allPoolHealth('healthy'), 'the killed agent back');
  });
});

describe('when no backend can take a client', () => {
  it('answers 503 on HTTP fronts and closes CONNECT and TLS connections, counted and logged', async () => {
    for (const backend of pool.values()) backend.health = { status: 500, body: 'down for the test', load: null };
    await waitFor(() => allPoolHealth('unhealthy'), 'pool unhealthy');
    const http = await get('pool.example.test');
    expect(http.status).toBe(503);
    expect(http.body).toMatch(/no healthy backend for service pool/);

    const connectAnswer = await new Promise<string>((resolve) => {
      const socket = connect(OPS_PORTS.connect, '127.0.0.1');
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', () => undefined);
      socket.write('CONNECT pool.mesh.internal:24501 HTTP/1.1\r\nHost: pool.mesh.internal:24501\r\n\r\n');
    });
    expect(connectAnswer).toBe('');

    const tlsError = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: OPS_PORTS.tls, servername: 'lonely.example.test', rejectUnauthorized: false });
      socket.on('secureConnect', () => resolve('handshake completed'));
      socket.on('error', (err: Error) => resolve(err.message));
    });
    expect(tlsError).toMatch(/socket disconnected|ECONNRESET|socket hang up/);

    const text = await scrape();
    for (const port of [OPS_PORTS.http, OPS_PORTS.connect, OPS_PORTS.tls]) expect(text).toMatch(new RegExp(`meshplane_gateway_connections_total\\{port="${port}",result="no_healthy_backend"\\} [1-9]`));
    await logged(/"connection":"[0-9a-z]+","port":24543,"peer":"127\.0\.0\.1:\d+","reason":"no_healthy_backend","detail":"no healthy backend for service lonely.*"msg":"client connection refused"/);
    for (const backend of pool.values()) backend.health = { status: 200, body: 'ok', load: backend.name === 'b1' ? 1 : backend.name === 'b2' ? 5 : 20 };
    await waitFor(() => allPoolHealth('healthy'), 'pool healthy again');
  });
});

describe('outlier ejection', () => {
  it('ejects a backend after consecutive connection failures, brings it back after the base time, and ejects it longer on a repeat', async () => {
    const bad = (await backendsOf('flaky')).find((b) => b.host === flakyBadHost)!;
    let failures = 0;
    for (let i = 0; i < 20 && failures < 3; i++) if (await fails('flaky.example.test')) failures++;
    expect(failures).toBe(3);
    // The gateway learns of the last failure as the tunnelled stream closes, a moment after the client.
    await logged(new RegExp(`"backend":"${bad.id}","service":"flaky","failures":3,"ejected_ms":1000,"reason":"consecutive_failures","msg":"backend ejected"`));
    expect((await backendsOf('flaky')).find((b) => b.id === bad.id)!.ejected_until).not.toBeNull();
    expect(await scrape()).toMatch(/meshplane_gateway_ejections_total\{service="flaky"\} 1/);
    // Ejected: every connection reaches the good one.
    const during = await spread('flaky.example.test', 10);
    expect(during).toEqual({ [`backend=flaky-${fixture.hostsOf('flaky')[0]}`]: 10 });
    // After the base time it is tried again, fails again, and is ejected for twice as long.
    const until = Date.parse(String((await backendsOf('flaky')).find((b) => b.id === bad.id)!.ejected_until));
    await sleep(Math.max(0, until - Date.now()) + 10);
    expect((await backendsOf('flaky')).find((b) => b.id === bad.id)!.ejected_until).toBeNull();
    let again = 0;
    for (let i = 0; i < 20 && again < 3; i++) if (await fails('flaky.example.test')) again++;
    expect(again).toBe(3);
    expect(await scrape()).toMatch(/meshplane_gateway_connections_total\{port="24580",result="routed"\} [1-9]/);
    await logged(new RegExp(`"backend":"${bad.id}","service":"flaky","failures":3,"ejected_ms":2000`));
  });
});

describe('admin API over mutual TLS', () => {
  it('refuses curl without a client certificate, and with a certificate that is not an admin credential', async () => {
    const none = await curlAdmin([adminUrl('/backends')], null);
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ code: 'GW_ERR_ADMIN_UNAUTHENTICATED' });
    const agentCert = await curlAdmin([adminUrl('/backends')], 'pool', 'b1');
    expect(agentCert.status).toBe(403);
    expect(agentCert.body).toMatchObject({ code: 'GW_ERR_ADMIN_FORBIDDEN', message: expect.stringContaining('"pool" is not an admin credential') as unknown });
    // Every route, unknown ones too, and the kill above all.
    for (const args of [[adminUrl('/')], [adminUrl('/healthz')], [adminUrl('/nope')], ['-X', 'DELETE', adminUrl(`/backends/${(await backendsOf('pool'))[0]!.id}`)]]) {
      expect(await curlAdmin(args, null)).toMatchObject({ status: 401, body: { code: 'GW_ERR_ADMIN_UNAUTHENTICATED' } });
    }
    expect(await backendsOf('pool')).toHaveLength(3);
  });

  it('refuses curl with a gateway-admin certificate from another CA, an expired one and a revoked one', async () => {
    const reasons = { foreign: /client certificate refused: [A-Z_]+/, expired: /client certificate refused: CERT_HAS_EXPIRED/, revoked: /client certificate refused: CERT_REVOKED/ };
    for (const name of ['foreign', 'expired', 'revoked'] as const) {
      const refused = await curlAdmin([adminUrl('/backends')], { cert: impostors[name], key: impostorKey });
      expect({ name, status: refused.status, code: refused.body['code'] }).toEqual({ name, status: 401, code: 'GW_ERR_ADMIN_UNAUTHENTICATED' });
      expect(refused.body['message']).toMatch(reasons[name]);
    }
  });

  it('lists, shows and kills a backend by id with curl: its tunnel and open connections close at once, it leaves the API and the metrics, and the agent returns as a new id', async () => {
    const healthz = await curlAdmin([adminUrl('/healthz')]);
    expect(healthz).toMatchObject({ status: 200, body: { status: 'ok', backends: 6 } });
    const list = (await curlAdmin([adminUrl('/backends?service=pool')])).body as unknown as { backends: BackendJson[] };
    expect(list.backends.map((b) => b.host).sort()).toEqual(['b1', 'b2', 'b3']);
    expect(list.backends.every((b) => b.service === 'pool')).toBe(true);
    const all = (await curlAdmin([adminUrl('/backends')])).body as unknown as { backends: BackendJson[] };
    expect(all.backends.map((b) => b.service).sort()).toEqual(['flaky', 'flaky', 'lonely', 'pool', 'pool', 'pool']);

    // A client connection held open through the CONNECT front: the backend carrying it is the one to kill.
    const client = connect(OPS_PORTS.connect, '127.0.0.1');
    client.on('error', () => undefined);
    const clientClosed = new Promise<void>((resolve) => client.on('close', () => resolve()));
    let answer = '';
    client.on('data', (c: Buffer) => (answer += c.toString()));
    client.write('CONNECT pool.mesh.internal:24501 HTTP/1.1\r\nHost: pool.mesh.internal:24501\r\n\r\n');
    await waitFor(() => answer.startsWith('HTTP/1.1 200'), 'the CONNECT tunnel up');
    await waitFor(async () => (await backendsOf('pool')).some((b) => b.open_connections === 1), 'the tunnelled connection counted');
    const victim = (await backendsOf('pool')).find((b) => b.open_connections === 1)!;

    const one = await curlAdmin([adminUrl(`/backends/${victim.id}`)]);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({
      id: victim.id,
      service: 'pool',
      credential: 'pool',
      agent_id: `${victim.host}/pool/0`,
      agent_address: expect.stringMatching(/^127\.0\.0\.1:\d+$/) as unknown,
      health: 'healthy',
      load: LOADS[victim.host],
      open_connections: 1,
    });
    expect(Date.now() - Date.parse(String(one.body['connected_since']))).toBeGreaterThan(0);
    expect(Object.keys(one.body).sort()).toEqual(['agent_address', 'agent_id', 'checks', 'connected_since', 'credential', 'ejected_until', 'health', 'host', 'id', 'load', 'open_connections', 'rtt_ms', 'service']);
    expect(await scrape()).toMatch(new RegExp(`meshplane_gateway_backend_open_connections\\{service="pool",host="${victim.host}",slot="0"\\} 1\n`));
    // RTT arrives with the first PING (every 3 s), in the metrics and the API.
    await waitFor(async () => new RegExp(`meshplane_gateway_backend_rtt_seconds\\{service="pool",host="${victim.host}",slot="0"\\} [0-9.e-]+`).test(await scrape()), 'an RTT for the victim');
    expect((await curlAdmin([adminUrl(`/backends/${victim.id}`)])).body['rtt_ms']).toEqual(expect.any(Number));
    expect(await scrape()).toMatch(/meshplane_gateway_backend_first_byte_seconds_count\{service="pool",host="b[1-3]",slot="0"\} [1-9]/);

    const killed = await curlAdmin(['-X', 'DELETE', adminUrl(`/backends/${victim.id}`)]);
    expect(killed).toMatchObject({ status: 200, body: { killed: { id: victim.id } } });
    const text = await scrape();
    // The connection id is never a label (its agent may be back on the same host and slot already).
    expect(text).not.toContain(victim.id);
    expect(text).toMatch(/meshplane_gateway_kills_total\{service="pool"\} [1-9]/);
    const gone = await curlAdmin([adminUrl(`/backends/${victim.id}`)]);
    expect(gone).toMatchObject({ status: 404, body: { code: 'GW_ERR_BACKEND_NOT_FOUND' } });
    // The client's connection went with the tunnel.
    await within(clientClosed, { what: 'the tunnelled client connection closed after the kill' });
    await logged(new RegExp(`"backend":"${victim.id}".*"reason":"killed through the admin API by gateway-admin from 127\\.0\\.0\\.1".*"msg":"backend killed"`));
    await waitFor(async () => (await backendsOf('pool')).some((b) => b.host === victim.host && b.id !== victim.id), `${victim.host} back as a new connection id`);
  });
});

describe('logs', () => {
  it('logs each registration and deregistration with the connection id, counts a service left without backends as 0, and never logs a private key', async () => {
    const flaky = await backendsOf('flaky');
    expect(flaky).toHaveLength(2);
    for (const b of flaky) await logged(new RegExp(`"backend":"${b.id}","service":"flaky","credential":"flaky","agent":"${b.agent_id}",.*"msg":"backend registered"`));
    for (const agent of flakyAgents) await agent.stop();
    for (const b of flaky) await logged(new RegExp(`"backend":"${b.id}","service":"flaky","agent":"${b.agent_id}","peer":"127\\.0\\.0\\.1:\\d+","reason":"[a-z ]+".*"msg":"backend deregistered"`));
    await waitFor(async () => /meshplane_gateway_backends\{service="flaky"\} 0\n/.test(await scrape()), 'flaky counted as 0 connected backends');
    expect(await scrape()).toMatch(/meshplane_gateway_backends_serving\{service="flaky"\} 0\n/);
    expect(await scrape()).toMatch(/meshplane_gateway_backends\{service="pool"\} 3\n/);

    const logs = [gateway.output(), ...agents.map((a) => a.output())].join('\n');
    expect(logs).not.toMatch(/PRIVATE KEY/);
    const keyFiles = [
      join(fixture.root('gw1'), 'x509', 'gateway', 'server', 'private_key.pem'),
      adminFiles('gateway-admin').key,
      ...fixture.hostsOf('pool').map((host) => adminFiles('pool', host).key),
      ...fixture.hostsOf('flaky').map((host) => adminFiles('flaky', host).key),
    ];
    const flat = logs.replace(/\\n|\s/g, '');
    for (const file of keyFiles) {
      const body = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('-----')).join('');
      expect(body.length).toBeGreaterThan(40);
      expect(flat.includes(body.slice(0, 40)), file).toBe(false);
    }
  });
});
