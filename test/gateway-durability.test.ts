/**
 * What the tunnel must survive: 1 GiB each way with checksums, one-way
 * transfers ended by half-close, 1,000 connections at once, agents and the
 * gateway killed and restarted, 100 reconnect cycles without leaks, and
 * every kind of agent the gateway must refuse.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, DEFAULT_BACKOFF } from '../src/agent/index.js';
import type { AgentOptions } from '../src/agent/testing.js';
import { Gateway, credentialTlsFiles } from '../src/gateway/index.js';
import { LeafSigner, generateKeyPair, initCa, loadCa, makeCsr, revoke } from '../src/pki/index.js';
import { clientSans } from '../src/pki/testing.js';
import { silentLogger } from './support/dns.js';
import { PORTS, metricsUrl, prepareGatewayMesh, registrationPort, startAgent, startDaemon, startDaemonWith, startGateway, stopAllDaemons } from './support/gateway.js';
import type { Daemon, GatewayFixture } from './support/gateway.js';
import { runAsync } from './support/dns.js';
import { CLI, tempDir } from './support/run.js';
import { SOON_MS, waitFor } from './support/wait.js';

const GIB = 1024 * 1024 * 1024;
const work = tempDir('gateway-durability');
let fixture: GatewayFixture;
let bulk: Server;

/**
 * The bulk backend: skips the routing head and the "reply=N" line the
 * client sends first, then hashes everything until the client's FIN, then
 * sends back N bytes of a deterministic stream followed by its tally
 * ("<bytes> <sha256>"), and closes.
 */
function startBulkBackend(): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined);
    let header = '';
    let headerDone = false;
    let wanted = 0;
    const hash = createHash('sha256');
    let received = 0;
    socket.on('data', (chunk: Buffer) => {
      if (!headerDone) {
        header += chunk.toString('latin1');
        const match = /reply=(\d+)\n/.exec(header);
        if (match === null) return;
        headerDone = true;
        wanted = Number(match[1]);
        const rest = Buffer.from(header.slice(match.index + match[0].length), 'latin1');
        received += rest.length;
        hash.update(rest);
        return;
      }
      received += chunk.length;
      hash.update(chunk);
    });
    socket.on('end', () => {
      void sendStream(socket, wanted).then(() => socket.end(`\n${received} ${hash.digest('hex')}\n`));
    });
  });
  return new Promise((resolve) => server.listen(PORTS.bulkBackend, '127.0.0.1', () => resolve(server)));
}

function block(index: number): Buffer {
  const b = Buffer.alloc(64 * 1024);
  b.fill(index & 0xff);
  b.writeUInt32BE(index, 0);
  return b;
}

async function sendStream(socket: Socket, bytes: number): Promise<void> {
  for (let i = 0, sent = 0; sent < bytes; i++) {
    const chunk = block(i).subarray(0, Math.min(64 * 1024, bytes - sent));
    sent += chunk.length;
    if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
  }
}

function expectedHash(bytes: number): string {
  const hash = createHash('sha256');
  for (let i = 0, sent = 0; sent < bytes; i++) {
    const chunk = block(i).subarray(0, Math.min(64 * 1024, bytes - sent));
    sent += chunk.length;
    hash.update(chunk);
  }
  return hash.digest('hex');
}

/** Through the gateway's HTTP front (Host routes to bulk): send `up` bytes, half-close, read `down` bytes + the backend's tally. */
function transfer(up: number, down: number, address = '127.0.0.1', hold: Promise<void> = Promise.resolve()): Promise<{ downHash: string; downBytes: number; backendSaw: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port: PORTS.http, allowHalfOpen: true });
    const hash = createHash('sha256');
    let tail = Buffer.alloc(0);
    let total = 0;
    socket.on('error', reject);
    socket.on('connect', () => {
      void (async () => {
        socket.write(`BULK / HTTP/1.1\r\nHost: bulk.example.test\r\n\r\nreply=${down}\n`);
        await sendStream(socket, up);
        await hold;
        socket.end();
      })();
    });
    socket.on('data', (chunk: Buffer) => {
      total += chunk.length;
      // Keep the last 100 bytes aside: the tally line; hash the rest as it streams.
      const all = Buffer.concat([tail, chunk]);
      const keep = Math.min(all.length, 100);
      hash.update(all.subarray(0, all.length - keep));
      tail = all.subarray(all.length - keep);
    });
    socket.on('end', () => {
      const text = tail.toString('latin1');
      const newline = text.lastIndexOf('\n', text.length - 2);
      hash.update(tail.subarray(0, newline));
      resolve({ downHash: hash.digest('hex'), downBytes: total - (tail.length - newline), backendSaw: text.slice(newline + 1).trim() });
      socket.destroy();
    });
  });
}

/** An in-process gateway with its issued credential, registration on a free port, no fronts. */
async function inProcessGateway(): Promise<Gateway> {
  const gateway = new Gateway({
    topology: fixture.topology,
    tls: credentialTlsFiles(fixture.root('gw1'), 'gateway', null),
    registration: { address: '127.0.0.1', port: 0 },
    frontAddresses: [],
    logger: silentLogger,
  });
  await gateway.start();
  return gateway;
}

/** An in-process agent for service bulk on b1 with its issued credential; `overrides` change the rest. */
function bulkAgent(overrides: Partial<AgentOptions> & Pick<AgentOptions, 'gateways'>): Agent {
  const dir = join(fixture.root('b1'), 'x509', 'bulk');
  return new Agent({
    credential: 'bulk',
    service: 'bulk',
    host: 'b1',
    tls: { ca: readFileSync(join(dir, 'ca.pem')), cert: readFileSync(join(dir, 'client', 'cert.pem')), key: readFileSync(join(dir, 'client', 'private_key.pem')) },
    gatewayName: 'gateway.mesh.internal',
    backend: { address: '127.0.0.1', port: PORTS.bulkBackend },
    proxyProtocol: new Map(),
    version: 'test',
    logger: silentLogger,
    ...overrides,
  });
}

beforeAll(async () => {
  fixture = await prepareGatewayMesh(work.path);
  bulk = await startBulkBackend();
}, 60_000);

afterAll(async () => {
  await stopAllDaemons();
  bulk?.close();
  work.remove();
});

describe('data through one tunnel', () => {
  let gateway: Daemon;
  let agent: Daemon;
  let metrics: string;
  beforeAll(async () => {
    // 1,000 connections at once from one loopback address: above the default per-source cap (a tenth of the port's).
    gateway = startGateway(fixture, ['--max-connections', '4000', '--max-connections-per-source', '4000']);
    const line = await gateway.ready;
    metrics = metricsUrl(line);
    const port = registrationPort(line);
    agent = startAgent(fixture, 'bulk', port);
    await agent.ready;
    // Ready once its tunnel is registered (the agent prints its line before it dials).
    await waitUntil(async () => /meshplane_gateway_backends\{service="bulk"\} 1/.test((await runAsync('curl', ['-sf', metrics])).stdout));
  });
  afterAll(async () => {
    await agent.stop();
    await gateway.stop();
  });

  it('carries 1 GiB each way intact, and a one-way upload ended by half-close still gets its answer', async () => {
    const both = await transfer(GIB, GIB);
    expect(both.backendSaw).toBe(`${GIB} ${expectedHash(GIB)}`);
    expect(both.downBytes).toBe(GIB);
    expect(both.downHash).toBe(expectedHash(GIB));
    const upOnly = await transfer(10 * 1024 * 1024, 0);
    expect(upOnly.backendSaw).toBe(`${10 * 1024 * 1024} ${expectedHash(10 * 1024 * 1024)}`);
  }, 240_000);

  it('serves 1,000 connections at once', async () => {
    // Every connection stays open (no FIN, so the backend has not answered) until the gateway counts all 1,000 open at once.
    let release!: () => void;
    const hold = new Promise<void>((resolve) => (release = resolve));
    const pending = Array.from({ length: 1000 }, (_, i) => transfer(1000 + i, 2000 + i, '127.0.0.1', hold));
    const open = async (): Promise<number> =>
      [...(await runAsync('curl', ['-sf', metrics])).stdout.matchAll(/^meshplane_gateway_backend_open_connections\{service="bulk",[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    await waitUntil(async () => (await open()) === 1000, 60_000, async () => `open: ${await open()}`);
    release();
    const results = await Promise.all(pending);
    results.forEach((result, i) => {
      expect(result.backendSaw).toBe(`${1000 + i} ${expectedHash(1000 + i)}`);
      expect(result.downHash).toBe(expectedHash(2000 + i));
    });
  }, 120_000);
});

describe('restarts', () => {
  it('brings agents back after the agent or the gateway is killed, with no stale backend', async () => {
    let gateway = startGateway(fixture, ['--listen', '127.0.0.1:24401']);
    const line = await gateway.ready;
    const metrics = metricsUrl(line);
    const backendsOf = async (url: string): Promise<number> => Number(/meshplane_gateway_backends\{service="bulk"\} (\d+)/.exec((await runAsync('curl', ['-sf', url])).stdout)?.[1] ?? 0);
    let agent = startAgent(fixture, 'bulk', 24401);
    await waitUntil(async () => (await backendsOf(metrics)) === 1);
    // Agent killed outright: its backend goes at once; a new agent registers.
    await agent.stop('SIGKILL');
    await waitUntil(async () => (await backendsOf(metrics)) === 0);
    agent = startAgent(fixture, 'bulk', 24401);
    await waitUntil(async () => (await backendsOf(metrics)) === 1);
    expect((await transfer(1000, 1000)).downHash).toBe(expectedHash(1000));
    // Gateway killed and started again on the same port: the agent comes back by itself.
    await gateway.stop('SIGKILL');
    const killedAt = Date.now();
    gateway = startGateway(fixture, ['--listen', '127.0.0.1:24401']);
    const metrics2 = metricsUrl(await gateway.ready);
    // The agent's next dial comes within its current backoff: with full jitter and doubling,
    // never more than the time it has been retrying plus the first delay (and at most the cap).
    // A slow start of the new gateway on a busy machine makes that longer, never shorter.
    const down = Date.now() - killedAt;
    await waitUntil(async () => (await backendsOf(metrics2)) === 1, Math.min(DEFAULT_BACKOFF.maxMs, 2 * down + DEFAULT_BACKOFF.initialMs) + 10_000);
    expect((await transfer(1000, 1000)).downHash).toBe(expectedHash(1000));
    await agent.stop();
    await gateway.stop();
  }, 120_000);

  it('survives 100 reconnect cycles without leaking tunnels, sockets or memory', async () => {
    const gateway = await inProcessGateway();
    const agent = bulkAgent({ gateways: [{ address: '127.0.0.1', port: gateway.port }], backoff: { initialMs: 5, maxMs: 20 } });
    agent.start();
    try {
      await waitUntil(() => gateway.backends.size === 1);
      const cycle = async (): Promise<void> => {
        const [backend] = gateway.backends.all();
        gateway.kill(backend!.id, 'test');
        await waitUntil(() => gateway.backends.size === 1 && gateway.backends.all()[0]!.id !== backend!.id);
      };
      for (let i = 0; i < 10; i++) await cycle();
      await collectGarbage();
      const handlesBefore = process.getActiveResourcesInfo().length;
      const heapBefore = process.memoryUsage().heapUsed;
      // Every tunnel that was replaced must become garbage: the gateway keeps nothing of it.
      const gone: WeakRef<object>[] = [];
      for (let i = 0; i < 100; i++) {
        gone.push(new WeakRef(gateway.backends.all()[0]!.session));
        await cycle();
      }
      // The last replaced tunnels close a moment after their replacement is up: wait until
      // what is gone has been collected, rather than for a fixed time.
      const alive = (): number => gone.filter((ref) => ref.deref() !== undefined).length;
      await waitFor(
        async () => {
          await collectGarbage();
          return alive() <= 2 && process.getActiveResourcesInfo().length <= handlesBefore + 2;
        },
        { what: 'the replaced tunnels collected', interval: 100, explain: () => `${alive()} tunnels alive, ${process.getActiveResourcesInfo().length} handles (${handlesBefore} before)` },
      );
      expect(gateway.backends.size).toBe(1);
      expect(agent.connected).toBe(1);
      expect(process.getActiveResourcesInfo().length).toBeLessThanOrEqual(handlesBefore + 2);
      expect(gone.filter((ref) => ref.deref() !== undefined).length).toBeLessThanOrEqual(2);
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(8 * 1024 * 1024);
    } finally {
      agent.close();
      gateway.close();
    }
  }, 60_000);
});

describe('finding the gateway', () => {
  it('resolves gateway.<domain> through mesh DNS when no --gateway is given', async () => {
    const gateway = startGateway(fixture, ['--listen', '127.0.40.1:24400']);
    const metrics = metricsUrl(await gateway.ready);
    const dns = startDaemon(['dns', '--topology', fixture.topologyFile, '--listen', '127.0.53.53:53', '--no-forward'], 'serving on');
    await dns.ready;
    const resolv = join(work.path, 'resolv-agent.conf');
    writeFileSync(resolv, 'nameserver 127.0.53.53\n');
    // The agent's resolv.conf points at meshplane dns (as the Ansible role sets it up), in a private mount namespace.
    const agent = startDaemonWith('unshare', ['-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv, process.execPath, CLI, 'agent', '--topology', fixture.topologyFile, '--host', 'b1', '--service', 'bulk', '--credentials-root', fixture.root('b1')], 'meshplane agent:');
    const line = await agent.ready;
    expect(line).toContain('gateway 127.0.40.1:24400');
    await waitUntil(async () => /meshplane_gateway_backends\{service="bulk"\} 1/.test((await runAsync('curl', ['-sf', metrics])).stdout));
    await agent.stop();
    await dns.stop();
    await gateway.stop();
  }, 60_000);
});

describe('stale registrations', () => {
  it('replaces an agent\'s old tunnel at once when the same agent connects again', async () => {
    const gateway = await inProcessGateway();
    // Two agents with the same identity (host b1, service bulk, slot 0): a restart whose old process hangs on.
    const old = bulkAgent({ gateways: [{ address: '127.0.0.1', port: gateway.port }] });
    const fresh = bulkAgent({ gateways: [{ address: '127.0.0.1', port: gateway.port }], backoff: { initialMs: 60_000, maxMs: 60_000 } });
    try {
      old.start();
      await waitUntil(() => gateway.backends.size === 1);
      const first = gateway.backends.all()[0]!;
      fresh.start();
      await waitUntil(() => gateway.backends.all()[0]?.id !== first.id);
      expect(gateway.backends.size).toBe(1);
      expect(gateway.backends.get(first.id)).toBeUndefined();
      expect(first.session.closed || first.session.destroyed).toBe(true);
    } finally {
      old.close();
      fresh.close();
      gateway.close();
    }
  });
});

describe('refused agents', () => {
  it('refuses no certificate, another CA, expired, revoked, and a valid certificate for another service', async () => {
    // The gateway's CRL revokes one extra "bulk" certificate.
    const caDir = join(fixture.stateDir, 'ca');
    const ca = loadCa(caDir);
    const signer = new LeafSigner(ca);
    const key = generateKeyPair();
    const csr = await makeCsr({ privateKeyPem: key.privateKeyPem, credential: 'bulk', kind: 'client', sans: clientSans(fixture.topology, fixture.topology.credentials['bulk']!, fixture.topology.hosts['b1']!) });
    const revokedCert = signer.signCsr(fixture.topology, { csrPem: csr, host: 'b1', kind: 'client', source: 'test' });
    const expiredCert = signer.signCsr(fixture.topology, { csrPem: csr, host: 'b1', kind: 'client', source: 'test', now: new Date(Date.now() - 400 * 86_400_000) });
    await revoke(ca, revokedCert.serial, 'keyCompromise');
    const otherCa = await initCa({ caDir: join(work.path, 'other-ca'), topology: fixture.topology });
    const foreignCert = new LeafSigner(otherCa.ca).signCsr(fixture.topology, { csrPem: csr, host: 'b1', kind: 'client', source: 'test' });

    const gateway = startGateway(fixture, ['--crl', join(caDir, 'crl.pem')]);
    const line = await gateway.ready;
    const port = registrationPort(line);
    const metrics = metricsUrl(line);
    const refusals = async (): Promise<string> => (await runAsync('curl', ['-sf', metrics])).stdout;
    const dir = join(fixture.root('b1'), 'x509');
    const caPem = readFileSync(join(dir, 'bulk', 'ca.pem'));
    const refused = async (reason: string): Promise<boolean> => new RegExp(`meshplane_gateway_auth_failures_total\\{reason="${reason}"\\} [1-9]`).test(await refusals());
    // Each agent runs until the gateway has counted its refusal (not for a guessed time).
    const tryAgent = async (reason: string, service: string, credential: string, cert: string | Buffer, keyPem: string | Buffer): Promise<void> => {
      const agent = bulkAgent({ service, credential, tls: { ca: caPem, cert: Buffer.from(cert), key: Buffer.from(keyPem) }, gateways: [{ address: '127.0.0.1', port }], backoff: { initialMs: 1000, maxMs: 1000 } });
      agent.start();
      try {
        await waitFor(() => refused(reason), { what: `a refusal counted as ${reason}`, explain: async () => `${(await refusals()).split('\n').filter((l) => l.includes('auth_failures')).join('\n')}\n${gateway.output()}` });
      } finally {
        agent.close();
      }
    };
    try {
      // openssl without a certificate: the gateway closes on it (the count below shows why).
      await runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'gateway.mesh.internal', '-CAfile', join(dir, 'bulk', 'ca.pem')], 10_000);
      await tryAgent('unknown_ca', 'bulk', 'bulk', foreignCert.pem, key.privateKeyPem);
      await tryAgent('expired', 'bulk', 'bulk', expiredCert.pem, key.privateKeyPem);
      await tryAgent('revoked', 'bulk', 'bulk', revokedCert.pem, key.privateKeyPem);
      // "other" is a real, valid credential: just not one that service bulk lists.
      await tryAgent('not_authorized', 'bulk', 'other', readFileSync(join(dir, 'other', 'client', 'cert.pem')), readFileSync(join(dir, 'other', 'client', 'private_key.pem')));
      await waitUntil(async () => {
        const text = await refusals();
        return ['no_certificate', 'unknown_ca', 'expired', 'revoked', 'not_authorized'].every((reason) => new RegExp(`meshplane_gateway_auth_failures_total\\{reason="${reason}"\\} [1-9]`).test(text));
      }, 10_000, async () => `${(await refusals()).split('\n').filter((l) => l.includes('auth_failures')).join('\n')}\n${gateway.output()}`);
      expect(await refusals()).not.toMatch(/meshplane_gateway_backends\{service="bulk"\} [1-9]/);
      const log = gateway.output();
      expect(log).toMatch(/"reason":"not_authorized".*credential .*other.* is not listed by service .*bulk/);
      expect(log).toMatch(/"peer":"127\.0\.0\.1:\d+"/);
    } finally {
      await gateway.stop();
    }
  }, 60_000);
});

/** A real full garbage collection (vitest workers do not run with --expose-gc). */
async function collectGarbage(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) {
    // WeakRefs are only cleared between jobs: let the event loop turn.
    await new Promise((r) => setTimeout(r, 20));
    gc();
  }
}

async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs = SOON_MS, explain: () => Promise<string> | string = () => ''): Promise<void> {
  await waitFor(check, { deadline: timeoutMs, what: 'condition not reached', explain });
}

describe('drain and dead peers', () => {
  it('drains on SIGTERM: no new connections, the open one finishes, then the agent exits', async () => {
    const gateway = startGateway(fixture);
    const line = await gateway.ready;
    const port = registrationPort(line);
    const metrics = metricsUrl(line);
    const backendsNow = async (): Promise<number> => Number(/meshplane_gateway_backends\{service="bulk"\} (\d+)/.exec((await runAsync('curl', ['-sf', metrics])).stdout)?.[1] ?? 0);
    const agent = startAgent(fixture, 'bulk', port);
    await waitUntil(async () => (await backendsNow()) === 1);

    // An upload in progress: the head and part of the body, the rest after SIGTERM.
    const socket = connect({ host: '127.0.0.1', port: PORTS.http, allowHalfOpen: true });
    let reply = '';
    socket.on('data', (chunk: Buffer) => (reply += chunk.toString('latin1')));
    const ended = new Promise((r) => socket.on('end', r));
    await new Promise((r) => socket.on('connect', r));
    socket.write('BULK / HTTP/1.1\r\nHost: bulk.example.test\r\n\r\nreply=0\n');
    socket.write(Buffer.alloc(1000, 1));
    // In progress once the gateway has it open on the agent's tunnel.
    const openNow = async (): Promise<number> => Number(/meshplane_gateway_backend_open_connections\{service="bulk",[^}]*\} (\d+)/.exec((await runAsync('curl', ['-sf', metrics])).stdout)?.[1] ?? 0);
    await waitUntil(async () => (await openNow()) === 1);

    const exited = agent.stop('SIGTERM');
    await waitUntil(async () => (await backendsNow()) === 0);
    // New connections are refused meanwhile (503: no backend)...
    const fresh = await runAsync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--resolve', `bulk.example.test:${PORTS.http}:127.0.0.1`, `http://bulk.example.test:${PORTS.http}/`]);
    expect(fresh.stdout).toBe('503');
    // ...while the open one completes.
    socket.end(Buffer.alloc(1000, 1));
    await ended;
    const tally = createHash('sha256').update(Buffer.alloc(2000, 1)).digest('hex');
    expect(reply.trim()).toBe(`2000 ${tally}`);
    expect(await exited).toBe(0);
    await gateway.stop();
  }, 60_000);

  it('cuts what is still open at --drain-timeout and exits', async () => {
    const gateway = startGateway(fixture);
    const line = await gateway.ready;
    const metrics = metricsUrl(line);
    const openNow = async (): Promise<number> => Number(/meshplane_gateway_backend_open_connections\{service="bulk",[^}]*\} (\d+)/.exec((await runAsync('curl', ['-sf', metrics])).stdout)?.[1] ?? 0);
    const agent = startAgent(fixture, 'bulk', registrationPort(line), ['--drain-timeout', '1']);
    await waitUntil(async () => /meshplane_gateway_backends\{service="bulk"\} 1/.test((await runAsync('curl', ['-sf', metrics])).stdout));
    // An upload that never ends: the backend answers only after the client's FIN, which never comes.
    const socket = connect({ host: '127.0.0.1', port: PORTS.http, allowHalfOpen: true });
    socket.on('error', () => undefined);
    // Cut: the gateway resets the client's connection (a FIN alone would leave this half-open
    // client waiting); the client itself never ends its side.
    const closed = new Promise((r) => socket.on('close', r));
    socket.write('BULK / HTTP/1.1\r\nHost: bulk.example.test\r\n\r\nreply=0\n');
    await waitUntil(async () => (await openNow()) === 1);
    const started = Date.now();
    expect(await agent.stop('SIGTERM')).toBe(0);
    const took = Date.now() - started;
    // Not before the 1 s drain timeout (its timer never fires early), and well before the
    // 30 s default or never (the upload never ends): the margin is for a busy machine.
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(1000 + 10_000);
    await closed;
    await gateway.stop();
  }, 60_000);

  it('finds a dead gateway and a dead agent by PING, and comes back when they do', async () => {
    const gateway = startGateway(fixture);
    const line = await gateway.ready;
    const metrics = metricsUrl(line);
    const backendsNow = async (): Promise<number> => Number(/meshplane_gateway_backends\{service="bulk"\} (\d+)/.exec((await runAsync('curl', ['-sf', metrics])).stdout)?.[1] ?? 0);
    const pingMs = 300;
    const agent = bulkAgent({ gateways: [{ address: '127.0.0.1', port: registrationPort(line) }], pingIntervalMs: pingMs, backoff: { initialMs: 50, maxMs: 200 } });
    agent.start();
    try {
      await waitUntil(() => agent.connected === 1);
      // A frozen gateway keeps its TCP connection open but answers nothing.
      gateway.child.kill('SIGSTOP');
      const frozenAt = Date.now();
      await waitUntil(() => agent.connected === 0);
      // Two PING intervals (600 ms) on a quiet machine; a few seconds' margin for a busy one is
      // still nothing like TCP's keepalive, which would take hours to notice.
      expect(Date.now() - frozenAt).toBeLessThan(2 * pingMs + 5000);
      gateway.child.kill('SIGCONT');
      await waitUntil(async () => agent.connected === 1 && (await backendsNow()) === 1);
    } finally {
      agent.close();
    }

    // The other way round: a frozen agent process is dropped by the gateway within two PING intervals.
    const frozenAgent = startAgent(fixture, 'bulk', registrationPort(line));
    await waitUntil(async () => (await backendsNow()) === 1);
    frozenAgent.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    await waitUntil(async () => (await backendsNow()) === 0);
    // The gateway PINGs every 3 s and drops a tunnel whose PING the next one finds unanswered:
    // 6 s on a quiet machine, with a margin for a busy one.
    expect(Date.now() - stoppedAt).toBeLessThan(2 * 3000 + 6000);
    frozenAgent.child.kill('SIGCONT');
    await frozenAgent.stop('SIGKILL');
    await gateway.stop();
  }, 60_000);
});
