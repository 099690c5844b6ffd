/**
 * Limits on what a stranger can reach, against the real `meshplane
 * gateway` process: floods of idle connections on the registration, a
 * front and the admin port under `prlimit --nofile=1024` while the other
 * ports keep serving; absolute TLS-handshake and head deadlines; per-source
 * caps; the TLS policy unchanged by SIGHUP (openssl s_client); refusal logs
 * sampled and counted; bare-LF request heads answered at once.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueMeshCredentials } from '../src/pki/index.js';
import { writeTopology } from '../src/topology/index.js';
import { compileMesh, runAsync } from './support/dns.js';
import { startDaemon, startDaemonWith, stopAllDaemons } from './support/gateway.js';
import type { Daemon } from './support/gateway.js';
import { startTestBackend } from './support/gateway-ops.js';
import type { TestBackend } from './support/gateway-ops.js';
import { CLI, tempDir } from './support/run.js';

const PORTS = { a: 25880, b: 25881 } as const;
const work = tempDir('gateway-limits');
let topologyFile: string;
let stateDir: string;
let backend: TestBackend;
const root = (host: string): string => join(stateDir, 'credentials', host);

interface Ports {
  registration: number;
  admin: number;
  metrics: string;
}

function startGatewayProcess(extra: readonly string[], nofile: number | null = null): Daemon {
  const args = ['gateway', '--topology', topologyFile, '--credentials-root', root('gw1'), '--listen', '127.0.0.1:0', '--front-address', '127.0.0.1', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0', ...extra];
  return nofile === null ? startDaemon(args, 'agents register on') : startDaemonWith('prlimit', [`--nofile=${nofile}`, process.execPath, CLI, ...args], 'agents register on');
}

function portsOf(line: string): Ports {
  return {
    registration: Number(/agents register on [^:]+:(\d+)/.exec(line)![1]),
    admin: Number(/admin API at https:\/\/127\.0\.0\.1:(\d+)\//.exec(line)![1]),
    metrics: /metrics at (\S+)/.exec(line)![1]!,
  };
}

function startAgent(host: string, registration: number): Daemon {
  return startDaemon(
    ['agent', '--topology', topologyFile, '--host', host, '--service', 'web', '--credentials-root', root(host), '--gateway', `127.0.0.1:${registration}`, '--reconnect-max', '0.3', '--backend', `127.0.0.1:${backend.port}`],
    'meshplane agent:',
  );
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs: number, daemon?: Daemon): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${daemon === undefined ? '' : `\n--- gateway ---\n${daemon.output().slice(-3000)}`}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** JSON log lines the gateway wrote so far. */
function logLines(gateway: Daemon): Record<string, unknown>[] {
  return gateway
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

const registrations = (gateway: Daemon, host: string): number => logLines(gateway).filter((l) => l['msg'] === 'backend registered' && l['host'] === host).length;

async function metric(url: string, pattern: RegExp): Promise<number> {
  const text = (await runAsync('curl', ['-sf', '--max-time', '5', url], 10_000)).stdout;
  const match = pattern.exec(text);
  return match === null ? 0 : Number(match[1]);
}

/** A request through a front port with curl, as a client would (bounded). */
async function curlFront(port: number, localAddress = '127.0.0.1'): Promise<string> {
  const result = await runAsync('curl', ['-sS', '--max-time', '5', '--interface', localAddress, '-H', 'Host: web.example.test', `http://127.0.0.1:${port}/`], 10_000);
  return result.status === 0 ? result.stdout.trim() : `curl failed: ${result.stderr.trim()}`;
}

/** GET /healthz on the admin API with curl over mutual TLS, as gateway-admin. */
async function curlAdmin(port: number): Promise<number> {
  const dir = join(root('gw1'), 'x509', 'gateway-admin');
  const result = await runAsync(
    'curl',
    ['-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', join(dir, 'ca.pem'), '--cert', join(dir, 'client', 'cert.pem'), '--key', join(dir, 'client', 'private_key.pem'), '--resolve', `gateway.mesh.internal:${port}:127.0.0.1`, `https://gateway.mesh.internal:${port}/healthz`],
    10_000,
  );
  return Number(result.stdout.trim());
}

interface Flood {
  readonly sockets: Socket[];
  /** Sockets the gateway has not closed. */
  open(): number;
  end(): Promise<void>;
}

/** `count` idle TCP connections from the given source addresses in turn; resolves once each has connected or failed (at most 20 s). */
async function flood(port: number, count: number, sources: readonly string[]): Promise<Flood> {
  const sockets: Socket[] = [];
  const closed = new Set<Socket>();
  await Promise.all(
    Array.from(
      { length: count },
      (_, i) =>
        new Promise<void>((resolve) => {
          const socket = connect({ port, host: '127.0.0.1', localAddress: sources[i % sources.length] });
          sockets.push(socket);
          const timer = setTimeout(resolve, 20_000);
          socket.once('connect', () => {
            clearTimeout(timer);
            resolve();
          });
          socket.on('error', () => undefined);
          socket.once('close', () => {
            closed.add(socket);
            clearTimeout(timer);
            resolve();
          });
        }),
    ),
  );
  return {
    sockets,
    open: () => sockets.length - closed.size,
    end: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => setImmediate(r));
    },
  };
}

const floodSources = Array.from({ length: 100 }, (_, i) => `127.0.43.${i + 1}`);

/** How long until the gateway closes this connection (ms), or null if it is still open after `limitMs`; `poke` writes now and then. */
function timeToClose(port: number, limitMs: number, poke?: (socket: Socket, n: number) => void, localAddress = '127.0.0.1'): Promise<number | null> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    let n = 0;
    const poker = poke === undefined ? null : setInterval(() => poke(socket, n++), 200);
    const give = setTimeout(() => {
      if (poker !== null) clearInterval(poker);
      socket.destroy();
      resolve(null);
    }, limitMs);
    socket.once('close', () => {
      clearTimeout(give);
      if (poker !== null) clearInterval(poker);
      resolve(Date.now() - started);
    });
  });
}

/** A raw exchange on a front port: what came back before the gateway closed, or null if nothing came within `limitMs`. */
function rawExchange(port: number, request: string, limitMs: number, localAddress = '127.0.0.1'): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress }, () => socket.write(request));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => undefined);
    const give = setTimeout(() => {
      socket.destroy();
      resolve(text === '' ? null : text);
    }, limitMs);
    socket.on('close', () => {
      clearTimeout(give);
      resolve(text === '' ? null : text);
    });
  });
}

interface Negotiated {
  ok: boolean;
  protocol: string;
  cipher: string;
  alpn: string;
}

/** openssl s_client's handshake with the given extra options: protocol, cipher and ALPN, or ok false. */
function sClient(port: number, options: readonly string[]): Promise<Negotiated> {
  return new Promise((resolve) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'gateway.mesh.internal', ...options], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('close', () => {
      clearTimeout(timer);
      const session = /New, (\S+), Cipher is (\S+)/.exec(out);
      const protocol = session?.[1] ?? '';
      const cipher = session?.[2] ?? '';
      const alpn = /ALPN protocol: (\S+)/.exec(out)?.[1] ?? 'none';
      resolve({ ok: cipher !== '' && cipher !== '(NONE)' && cipher !== '0000', protocol, cipher, alpn });
    });
  });
}

beforeAll(async () => {
  const topology = compileMesh(work.path, {
    overlays: [{ name: 'limov', network: '100.64.42.0/24', port: 6572 }],
    hosts: [
      { name: 'gw1', ips: ['127.0.42.1'], groups: ['gateway'] },
      { name: 'b1', ips: ['127.0.42.2'], groups: ['web'] },
      { name: 'b2', ips: ['127.0.42.3'], groups: ['web'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [25800]
  service_credentials:
    - {name: gateway, enable_client: false}
    - {name: gateway-admin, enable_server: false}
web:
  scheduling_group: web
  ports: [25801]
  service_credentials: [{name: web}]
  gateway_endpoints:
    - {name: a, hostnames: [web.example.test], port: ${PORTS.a}, mode: http, health: false}
    - {name: b, hostnames: [web.example.test], port: ${PORTS.b}, mode: http, health: false}
`,
  });
  topologyFile = join(work.path, 'topology.json');
  writeTopology(topologyFile, topology);
  stateDir = join(work.path, 'state');
  await issueMeshCredentials({ topology, stateDir });
  backend = await startTestBackend('b', null);
}, 60_000);

afterAll(async () => {
  await stopAllDaemons();
  await backend.close();
  work.remove();
});

describe('a flood on one port leaves the others serving (prlimit --nofile=1024)', () => {
  let gateway: Daemon;
  let ports: Ports;
  let caps: Record<string, number>;

  beforeAll(async () => {
    gateway = startGatewayProcess([], 1024);
    ports = portsOf(await gateway.ready);
    await waitFor(() => logLines(gateway).some((l) => l['msg'] === 'connection limits'), 'limits logged', 5000, gateway);
    const limits = logLines(gateway).find((l) => l['msg'] === 'connection limits')!;
    expect(limits['open_files']).toBe(1024);
    const cap = (key: string): number => (limits[key] as { maxConnections: number }).maxConnections;
    caps = { front: cap('front_per_port'), registration: cap('registration'), admin: cap('admin') };
    startAgent('b1', ports.registration);
    await waitFor(() => registrations(gateway, 'b1') > 0, 'agent b1 registered', 20_000, gateway);
    await waitFor(async () => (await curlFront(PORTS.a)) === 'backend=b', 'routed through front a', 10_000, gateway);
  }, 60_000);

  afterAll(async () => {
    await gateway.stop();
  });

  it('budgets the descriptors: the caps and the kept-back reserve fit in 1,024', () => {
    expect(caps['registration']! + 2 * caps['front']! + caps['admin']!).toBeLessThanOrEqual(1024 - 64);
  });

  it('1,100 idle connections on the registration port: capped, and fronts and admin still answer', async () => {
    const attack = await flood(ports.registration, 1100, floodSources);
    try {
      expect(await curlFront(PORTS.a)).toBe('backend=b');
      expect(await curlAdmin(ports.admin)).toBe(200);
      await waitFor(() => attack.open() <= caps['registration']!, `at most ${caps['registration']} flood connections open (now ${attack.open()})`, 10_000, gateway);
      expect(await metric(ports.metrics, /meshplane_gateway_connections_limited_total\{listener="registration",port="\d+",reason="listener_full"\} (\d+)/)).toBeGreaterThan(0);
    } finally {
      await attack.end();
    }
  }, 60_000);

  it('1,100 idle connections on a front port: capped, and the other front, a new agent and admin still answer', async () => {
    const attack = await flood(PORTS.a, 1100, floodSources);
    let agent: Daemon | null = null;
    try {
      expect(await curlFront(PORTS.b)).toBe('backend=b');
      agent = startAgent('b2', ports.registration);
      await waitFor(() => registrations(gateway, 'b2') > 0, 'agent b2 registered during the flood', 10_000, gateway);
      expect(await curlAdmin(ports.admin)).toBe(200);
      await waitFor(() => attack.open() <= caps['front']!, `at most ${caps['front']} flood connections open (now ${attack.open()})`, 10_000, gateway);
      expect(await metric(ports.metrics, new RegExp(`meshplane_gateway_connections_limited_total\\{listener="front",port="${PORTS.a}",reason="listener_full"\\} (\\d+)`))).toBeGreaterThan(0);
    } finally {
      await attack.end();
      await agent?.stop();
    }
  }, 60_000);

  it('1,100 idle connections on the admin port: capped, and the fronts and a new agent still answer', async () => {
    const before = registrations(gateway, 'b2');
    const attack = await flood(ports.admin, 1100, floodSources);
    let agent: Daemon | null = null;
    try {
      expect(await curlFront(PORTS.a)).toBe('backend=b');
      agent = startAgent('b2', ports.registration);
      await waitFor(() => registrations(gateway, 'b2') > before, 'agent b2 registered during the flood', 10_000, gateway);
      await waitFor(() => attack.open() <= caps['admin']!, `at most ${caps['admin']} flood connections open (now ${attack.open()})`, 10_000, gateway);
      expect(await metric(ports.metrics, /meshplane_gateway_connections_limited_total\{listener="admin",port="\d+",reason="listener_full"\} (\d+)/)).toBeGreaterThan(0);
    } finally {
      await attack.end();
      await agent?.stop();
    }
  }, 60_000);
});

describe('deadlines and the TLS policy (--handshake-timeout 1 --head-timeout 1 --admin-request-timeout 1)', () => {
  let gateway: Daemon;
  let ports: Ports;

  beforeAll(async () => {
    gateway = startGatewayProcess(['--handshake-timeout', '1', '--head-timeout', '1', '--admin-request-timeout', '1']);
    ports = portsOf(await gateway.ready);
  }, 30_000);

  afterAll(async () => {
    await gateway.stop();
  });

  /** A TLS record header and then a ClientHello's first bytes, one byte per poke: never a whole hello. */
  const dribbleHello = (socket: Socket, n: number): void => void socket.write(Buffer.from([[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc][Math.min(n, 8)]!]));

  it('closes a registration connection that never finishes its handshake by the deadline, however it dribbles', async () => {
    const idle = timeToClose(ports.registration, 5000);
    const dribbling = timeToClose(ports.registration, 5000, dribbleHello);
    for (const ms of [await idle, await dribbling]) {
      expect(ms).not.toBeNull();
      expect(ms!).toBeGreaterThanOrEqual(900);
      expect(ms!).toBeLessThan(3500);
    }
    await waitFor(async () => (await metric(ports.metrics, /meshplane_gateway_connections_limited_total\{listener="registration",port="\d+",reason="handshake_timeout"\} (\d+)/)) >= 2, 'handshake timeouts counted', 5000, gateway);
  }, 20_000);

  it('closes an admin connection that never finishes its handshake by the deadline', async () => {
    const idle = timeToClose(ports.admin, 5000);
    const dribbling = timeToClose(ports.admin, 5000, dribbleHello);
    for (const ms of [await idle, await dribbling]) {
      expect(ms).not.toBeNull();
      expect(ms!).toBeLessThan(3500);
    }
  }, 20_000);

  it('closes an admin connection whose request does not arrive whole by the deadline, however it dribbles (or if it sends nothing)', async () => {
    const afterHandshake = (dribble: boolean): Promise<number | null> => new Promise<number | null>((resolve) => {
      const started = Date.now();
      const socket = tlsConnect({ port: ports.admin, host: '127.0.0.1', servername: 'gateway.mesh.internal', rejectUnauthorized: false }, () => dribble && socket.write('GET /healthz HTTP/1.1\r\n'));
      socket.on('error', () => undefined);
      socket.on('data', () => undefined);
      const poker = setInterval(() => dribble && socket.write('X'), 200);
      const give = setTimeout(() => {
        clearInterval(poker);
        socket.destroy();
        resolve(null);
      }, 6000);
      socket.once('close', () => {
        clearTimeout(give);
        clearInterval(poker);
        resolve(Date.now() - started);
      });
    });
    for (const ms of await Promise.all([afterHandshake(true), afterHandshake(false)])) {
      expect(ms).not.toBeNull();
      expect(ms!).toBeLessThan(4000);
    }
  }, 20_000);

  it('closes a front connection whose head does not arrive by the deadline, however it dribbles', async () => {
    const ms = await timeToClose(PORTS.a, 5000, (socket, n) => void socket.write(n === 0 ? 'GET / HTTP/1.1\r\n' : 'X'));
    expect(ms).not.toBeNull();
    expect(ms!).toBeLessThan(3500);
  }, 20_000);

  it('negotiates the same TLS before and after SIGHUP, and never a CBC suite (registration and admin)', async () => {
    const probe = async (port: number, alpn: string): Promise<Negotiated[]> => [
      await sClient(port, ['-alpn', alpn]),
      await sClient(port, ['-tls1_2']),
      await sClient(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA']),
      await sClient(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA384']),
      await sClient(port, ['-tls1_1']),
    ];
    const before = { registration: await probe(ports.registration, 'h2'), admin: await probe(ports.admin, 'http/1.1') };
    const reloads = (): number => logLines(gateway).filter((l) => l['msg'] === 'gateway reloaded').length;
    gateway.child.kill('SIGHUP');
    await waitFor(() => reloads() === 1, 'gateway reloaded', 10_000, gateway);
    const after = { registration: await probe(ports.registration, 'h2'), admin: await probe(ports.admin, 'http/1.1') };
    for (const side of [before, after]) {
      expect(side.registration[0]).toMatchObject({ ok: true, protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', alpn: 'h2' });
      expect(side.admin[0]).toMatchObject({ ok: true, protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', alpn: 'http/1.1' });
      for (const probes of [side.registration, side.admin]) {
        expect(probes[1]).toMatchObject({ ok: true, protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
        expect(probes.slice(2).map((p) => p.ok)).toEqual([false, false, false]);
      }
    }
    expect(after).toEqual(before);
  }, 60_000);
});

describe('per-source caps, sampled refusal logs, bare-LF heads', () => {
  let gateway: Daemon;
  let ports: Ports;

  beforeAll(async () => {
    gateway = startGatewayProcess(['--max-connections-per-source', '4', '--head-timeout', '30', '--log-refusals', '5', '--log-refusals-interval', '1']);
    ports = portsOf(await gateway.ready);
    startAgent('b1', ports.registration);
    await waitFor(() => registrations(gateway, 'b1') > 0, 'agent b1 registered', 20_000, gateway);
  }, 30_000);

  afterAll(async () => {
    await gateway.stop();
  });

  it('closes a source\'s fifth connection at once on each port, while another source is served', async () => {
    for (const [listener, port] of [['front', PORTS.a], ['registration', ports.registration], ['admin', ports.admin]] as const) {
      const attack = await flood(port, 7, ['127.0.44.1']);
      try {
        await waitFor(() => attack.open() === 4, `${listener}: 4 of 7 open (now ${attack.open()})`, 5000, gateway);
        if (listener === 'front') expect(await curlFront(PORTS.a, '127.0.44.2')).toBe('backend=b');
        if (listener === 'admin') expect(await curlAdmin(ports.admin)).toBe(200);
        expect(await metric(ports.metrics, new RegExp(`meshplane_gateway_connections_limited_total\\{listener="${listener}",port="${port}",reason="source_full"\\} (\\d+)`))).toBe(3);
      } finally {
        await attack.end();
      }
    }
  }, 60_000);

  it('answers a head with bare LF line endings with 400 at once (and the same head with CRLF is routed)', async () => {
    const started = Date.now();
    const bare = await rawExchange(PORTS.a, 'GET / HTTP/1.1\nHost: web.example.test\n\n', 5000);
    expect(bare).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*line ending other than CRLF/);
    expect(Date.now() - started).toBeLessThan(3000);
    const mixed = await rawExchange(PORTS.a, 'GET / HTTP/1.1\r\nX-A: 1\nHost: other.example.test\r\nHost: web.example.test\r\n\r\n', 5000);
    expect(mixed).toMatch(/^HTTP\/1\.1 400 /);
    const crlf = await rawExchange(PORTS.a, 'GET / HTTP/1.1\r\nHost: web.example.test\r\nConnection: close\r\n\r\n', 5000);
    expect(crlf).toMatch(/^HTTP\/1\.1 200 [\s\S]*backend=b/);
  }, 20_000);

  it('logs at most 5 refusals per reason per second and counts the rest in a summary line; the metrics count them all', async () => {
    const N = 300;
    const started = Date.now();
    for (let i = 0; i < N; i += 20) {
      // From 20 addresses: the per-source cap (4) is not what this counts.
      await Promise.all(Array.from({ length: 20 }, (_, j) => rawExchange(PORTS.a, 'GET / HTTP/1.1\r\nHost: nowhere.example.test\r\n\r\n', 5000, `127.0.45.${j + 1}`)));
    }
    // Registration: TCP connections that close before any TLS (a port scanner).
    for (let i = 0; i < N; i += 20) {
      await Promise.all(
        Array.from(
          { length: 20 },
          (_, j) =>
            new Promise<void>((resolve) => {
              const socket = connect({ port: ports.registration, host: '127.0.0.1', localAddress: `127.0.45.${j + 1}` }, () => socket.end());
              socket.on('error', () => undefined);
              socket.on('close', () => resolve());
            }),
        ),
      );
    }
    const seconds = Math.ceil((Date.now() - started) / 1000);
    const counted = {
      front: await metric(ports.metrics, new RegExp(`meshplane_gateway_connections_total\\{port="${PORTS.a}",result="no_route"\\} (\\d+)`)),
      registration: await metric(ports.metrics, /meshplane_gateway_auth_failures_total\{reason="tls_error"\} (\d+)/),
    };
    expect(counted.front).toBe(N);
    expect(counted.registration).toBeGreaterThan(N * 0.9);
    const tally = (msg: string, reason: string): { written: number; suppressed: number } => {
      const lines = logLines(gateway);
      return {
        written: lines.filter((l) => l['msg'] === msg && l['reason'] === reason).length,
        suppressed: lines.filter((l) => l['msg'] === 'log lines suppressed' && l['event'] === msg && l['reason'] === reason).reduce((sum, l) => sum + (l['suppressed'] as number), 0),
      };
    };
    await waitFor(() => {
      const front = tally('client connection refused', 'no_route');
      const agents = tally('agent refused', 'tls_error');
      return front.written + front.suppressed === counted.front && agents.written + agents.suppressed === counted.registration;
    }, 'every refusal either logged or counted in a summary line', 10_000, gateway);
    const front = tally('client connection refused', 'no_route');
    const agents = tally('agent refused', 'tls_error');
    // At most 5 per one-second window; the flood spans `seconds` seconds (and windows start at the first line).
    expect(front.written).toBeLessThanOrEqual(5 * (seconds + 2));
    expect(agents.written).toBeLessThanOrEqual(5 * (seconds + 2));
    expect(front.suppressed).toBeGreaterThan(0);
    expect(agents.suppressed).toBeGreaterThan(0);
  }, 60_000);
});
