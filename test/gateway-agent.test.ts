/**
 * The agent's side of the contract: it checks whose certificate the gateway
 * shows (mesh CA and the gateway's name) before saying a word, speaks
 * HTTP/2 with no preamble, keeps N tunnels to every gateway it is given
 * (also from the environment, as its systemd unit sets it), backs off
 * exponentially with jitter up to a cap, tunes the HTTP/2 windows, and
 * drains within its deadline. The gateway swaps its certificate and CRL on
 * reload without dropping tunnels.
 */
import { copyFileSync, cpSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Agent } from '../src/agent/index.js';
import { credentialTlsFiles } from '../src/gateway/index.js';
import { HEADER } from '../src/lib/tunnel-io.js';
import { LeafSigner, generateKeyPair, initCa, loadCa, makeCsr, revoke } from '../src/pki/index.js';
import { serverSans } from '../src/pki/testing.js';
import { writeTopology } from '../src/topology/index.js';
import { AUDIT_PORTS as P, auditAgent, clientTlsFor, prepareAuditMesh, startAuditGateway, waitUntil, withSpareHosts } from './support/gateway-audit.js';
import type { AuditMesh } from './support/gateway-audit.js';
import { startDaemonWith, stopAllDaemons } from './support/gateway.js';
import { CLI, tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const work = tempDir('gateway-agent');
let mesh: AuditMesh;

beforeAll(async () => {
  mesh = await prepareAuditMesh(work.path);
}, 60_000);

afterAll(async () => {
  await stopAllDaemons();
  work.remove();
});

/** A logger whose lines the test reads. */
function recordingLogger(): { logger: pino.Logger; lines: () => string } {
  let text = '';
  const logger = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _e, cb) => ((text += chunk.toString()), cb()) }));
  return { logger, lines: () => text };
}

/** A server certificate for the gateway's credential on gw1, signed by `ca`. */
async function gatewayServerCert(signer: LeafSigner): Promise<{ cert: string; key: string; serial: string }> {
  const key = generateKeyPair();
  const credential = mesh.topology.credentials['gateway']!;
  const csr = await makeCsr({ privateKeyPem: key.privateKeyPem, credential: 'gateway', kind: 'server', sans: serverSans(mesh.topology, credential, mesh.topology.hosts['gw1']!) });
  const signed = signer.signCsr(mesh.topology, { csrPem: csr, host: 'gw1', kind: 'server', source: 'test' });
  return { cert: signed.pem, key: key.privateKeyPem, serial: new X509Certificate(signed.pem).serialNumber };
}

/** The serial of the certificate a TLS server shows. */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'gateway.mesh.internal', rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      resolve(socket.getPeerX509Certificate()!.serialNumber);
      socket.destroy();
    });
    socket.on('error', reject);
  });
}

describe("the gateway's certificate, checked by the agent", () => {
  /**
   * A stand-in gateway that shows `cert` and records what each agent
   * connection sends after the handshake (nothing, when the agent refused it).
   */
  async function fakeGateway(cert: string | Buffer, key: string | Buffer): Promise<{ server: Server; port: number; accepted: () => number; received: Buffer[] }> {
    let accepted = 0;
    const received: Buffer[] = [];
    const server = createTlsServer({ cert, key, ALPNProtocols: ['h2'] }, (socket) => {
      const index = received.push(Buffer.alloc(0)) - 1;
      socket.on('data', (chunk: Buffer) => (received[index] = Buffer.concat([received[index]!, chunk])));
      socket.on('error', () => undefined);
    });
    server.on('connection', () => accepted++);
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { server, port: (server.address() as AddressInfo).port, accepted: () => accepted, received };
  }

  /** Runs an agent against `port` until `done` (given its log so far) holds; returns its log. */
  async function dialUntil(port: number, what: string, done: (log: string) => boolean): Promise<string> {
    const log = recordingLogger();
    const agent = auditAgent(mesh, 'pipe', { gateways: [{ address: '127.0.0.1', port }], backoff: { initialMs: 50, maxMs: 100 }, logger: log.logger });
    agent.start();
    try {
      await waitFor(() => done(log.lines()), { what, explain: () => log.lines() });
    } finally {
      agent.close();
    }
    return log.lines();
  }
  /** Dials that ended, by the agent's own account. */
  const failedDials = (log: string): number => log.split('\n').filter((line) => line.includes('"msg":"cannot reach the gateway"')).length;

  it('speaks HTTP/2 at once (server SETTINGS, no preamble) to a gateway with the mesh CA certificate and name', async () => {
    const dir = join(mesh.root('gw1'), 'x509', 'gateway', 'server');
    const fake = await fakeGateway(readFileSync(join(dir, 'cert.pem')), readFileSync(join(dir, 'private_key.pem')));
    try {
      await dialUntil(fake.port, 'a first HTTP/2 frame from the agent', () => (fake.received[0]?.length ?? 0) >= 9);
      const first = fake.received[0];
      expect(first).toBeDefined();
      expect(first!.length).toBeGreaterThanOrEqual(9);
      // An HTTP/2 frame header: length, type 4 (SETTINGS), flags 0, stream 0. The agent is the HTTP/2 server, so no client preface either.
      expect(first![3]).toBe(4);
      expect(first!.readUInt32BE(5)).toBe(0);
      expect(first!.readUIntBE(0, 3) % 6).toBe(0); // SETTINGS entries are 6 bytes each
      expect(first!.toString('latin1')).not.toContain('PRI * HTTP/2.0');
    } finally {
      fake.server.close();
    }
  });

  it('refuses a gateway whose certificate comes from another CA, though it carries the right name', async () => {
    const other = await initCa({ caDir: join(work.path, 'other-ca'), topology: mesh.topology });
    const forged = await gatewayServerCert(new LeafSigner(other.ca));
    expect(new X509Certificate(forged.cert).checkHost('gateway.mesh.internal')).toBe('gateway.mesh.internal');
    const fake = await fakeGateway(forged.cert, forged.key);
    try {
      // Two dials refused by the agent itself: it kept trying...
      const log = await dialUntil(fake.port, 'two refused dials', (text) => failedDials(text) >= 2 && fake.accepted() >= 2);
      expect(fake.received.every((bytes) => bytes.length === 0)).toBe(true); // ...and never spoke
      expect(log).toMatch(/"err":"[^"]*(self.signed|unable to (get|verify)|certificate)[^"]*","msg":"cannot reach the gateway"/i);
    } finally {
      fake.server.close();
    }
  });

  it('refuses a mesh certificate that is not the gateway (a backend host impersonating it)', async () => {
    const dir = join(mesh.root('b1'), 'x509', 'site', 'server');
    const fake = await fakeGateway(readFileSync(join(dir, 'cert.pem')), readFileSync(join(dir, 'private_key.pem')));
    try {
      const log = await dialUntil(fake.port, 'two refused dials', (text) => failedDials(text) >= 2 && fake.accepted() >= 2);
      expect(fake.received.every((bytes) => bytes.length === 0)).toBe(true);
      expect(log).toMatch(/does not match certificate's altnames/);
    } finally {
      fake.server.close();
    }
  });
});

describe('tunnels', () => {
  it('keeps N tunnels to every gateway listed, each slot a backend of its own', async () => {
    const one = await startAuditGateway(mesh, { fronts: [] });
    const two = await startAuditGateway(mesh, { fronts: [] });
    const agent = auditAgent(mesh, 'pipe', { gateways: [{ address: '127.0.0.1', port: one.gateway.port }, { address: '127.0.0.1', port: two.gateway.port }], connections: 3 });
    agent.start();
    try {
      await waitUntil(() => one.gateway.backends.size === 3 && two.gateway.backends.size === 3, 'three tunnels to each gateway');
      for (const gw of [one, two]) expect(gw.gateway.backends.all().map((b) => b.agentId).sort()).toEqual(['b1/pipe/0', 'b1/pipe/1', 'b1/pipe/2']);
      expect(agent.connected).toBe(6);
    } finally {
      agent.close();
      one.gateway.close();
      two.gateway.close();
    }
  });

  it('takes its settings from the environment, as its unit gives them: two gateways, two tunnels each, gateway from MESHPLANE_GATEWAY', async () => {
    const topologyFile = join(work.path, 'topology.json');
    writeTopology(topologyFile, mesh.topology);
    const one = await startAuditGateway(mesh, { fronts: [] });
    const two = await startAuditGateway(mesh, { fronts: [] });
    const agent = startDaemonWith(
      'env',
      [
        `MESHPLANE_TOPOLOGY=${topologyFile}`,
        'MESHPLANE_HOST=b1',
        'MESHPLANE_SERVICE=pipe',
        'MESHPLANE_CREDENTIAL=pipe',
        `MESHPLANE_CREDENTIALS_ROOT=${mesh.root('b1')}`,
        `MESHPLANE_GATEWAY=127.0.0.1:${one.gateway.port},127.0.0.1:${two.gateway.port}`,
        process.execPath,
        CLI,
        'agent',
        '--connections',
        '2',
      ],
      'meshplane agent:',
    );
    try {
      const line = await agent.ready;
      expect(line).toContain(`backend 127.0.0.1:${P.pipeBackend}`); // the service's port, from the Topology
      await waitUntil(() => one.gateway.backends.size === 2 && two.gateway.backends.size === 2, 'two tunnels to each gateway');
      expect(one.gateway.backends.all().every((b) => b.credential === 'pipe' && b.service === 'pipe' && b.host === 'b1')).toBe(true);
    } finally {
      await agent.stop('SIGINT');
      one.gateway.close();
      two.gateway.close();
    }
  });

  it('reconnects with exponential backoff, full jitter and a cap', async () => {
    // A gateway address that takes TCP connections and drops them at once.
    const attempts: number[] = [];
    const server = createServer((socket) => {
      attempts.push(performance.now());
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const initial = 20;
    const cap = 320;
    const range = (k: number): number => Math.min(cap, initial * 2 ** k);
    // The agent waits random() x min(cap, initial x 2^attempt) before dial k+1. Its draws are
    // pinned, so that the test knows each wait it chose and checks the time it actually waited
    // against that, with bounds a busy machine cannot break: a timer never fires early (lower
    // bounds per wait), and ceilings only on totals, far from what a wrong backoff would take.
    // First HIGH draws at the top of the range, then LOW draws near the bottom.
    const HIGH = 12;
    const LOW = 40;
    const original = Math.random.bind(Math);
    let draws = 0;
    const random = vi.spyOn(Math, 'random').mockImplementation(() => {
      if (!(new Error().stack ?? '').includes('dialLoop')) return original();
      return draws++ < HIGH ? 0.999 : 0.02;
    });
    const agent = auditAgent(mesh, 'pipe', { gateways: [{ address: '127.0.0.1', port: (server.address() as AddressInfo).port }], backoff: { initialMs: initial, maxMs: cap } });
    try {
      const highStarted = performance.now();
      agent.start();
      // Capped, the HIGH waits take 20+40+80+160+320x8 = 2.9 s; uncapped, 20 x (2^12 - 1) ms = 82 s.
      const uncapped = 0.999 * initial * (2 ** HIGH - 1);
      await waitFor(() => attempts.length >= HIGH + 1, { what: `${HIGH + 1} dials`, deadline: uncapped / 2 });
      expect(performance.now() - highStarted).toBeLessThan(uncapped / 2);
      // Exponential, then capped: each wait lasted at least what the agent drew.
      const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
      for (let k = 0; k < HIGH; k++) expect(gaps[k], `wait ${k}`).toBeGreaterThanOrEqual(0.999 * range(k) - 2);
      // Full jitter: with low draws the waits shrink to a fiftieth of the cap. Without jitter the
      // LOW waits would take LOW x cap = 12.8 s; jittered, 0.26 s (the ceiling is half of 12.8 s).
      const lowFrom = attempts.length - 1;
      await waitFor(() => attempts.length >= lowFrom + LOW + 1, { what: `${LOW} more dials` });
      expect(attempts[lowFrom + LOW]! - attempts[lowFrom]!).toBeLessThan((LOW * cap) / 2);
    } finally {
      agent.close();
      server.close();
      random.mockRestore();
    }
  }, 60_000);

  it('raises the HTTP/2 windows on both ends above the 64 KiB defaults', async () => {
    const gw = await startAuditGateway(mesh, { fronts: [] });
    const agent = auditAgent(mesh, 'pipe', { gateways: [{ address: '127.0.0.1', port: gw.gateway.port }] });
    agent.start();
    try {
      await waitUntil(() => gw.gateway.backends.size === 1, 'registered');
      const session = gw.gateway.backends.all()[0]!.session;
      const least = 256 * 1024;
      // Stream windows: what the gateway receives (its settings) and what the agent receives (its settings, as the gateway sees them).
      expect(session.localSettings.initialWindowSize).toBeGreaterThanOrEqual(least);
      await waitUntil(() => (session.remoteSettings.initialWindowSize ?? 0) >= least, "agent's stream window");
      // Connection windows, both ways: the gateway's own, and the agent's as it announced it in WINDOW_UPDATE.
      await waitUntil(() => (session.state.effectiveLocalWindowSize ?? 0) >= least, "gateway's connection window");
      await waitUntil(() => (session.state.remoteWindowSize ?? 0) >= least, "agent's connection window");
      expect(session.remoteSettings.maxFrameSize).toBeGreaterThanOrEqual(16384);
    } finally {
      agent.close();
      gw.gateway.close();
    }
  });

  it('drains within its deadline: a connection that never ends is cut, and drain() returns', async () => {
    const gw = await startAuditGateway(mesh, { fronts: [] });
    let backendSockets = 0;
    const backend = createServer({ allowHalfOpen: true }, (socket) => {
      backendSockets++;
      socket.on('error', () => undefined); // takes the connection, never ends it
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const agent = auditAgent(mesh, 'pipe', { gateways: [{ address: '127.0.0.1', port: gw.gateway.port }], backend: { address: '127.0.0.1', port: (backend.address() as AddressInfo).port } });
    agent.start();
    try {
      await waitUntil(() => gw.gateway.backends.size === 1, 'registered');
      // A tunnelled connection, opened on the tunnel as a front would.
      const stream = gw.gateway.backends.all()[0]!.session.request({ ':method': 'CONNECT', ':authority': 'pipe.mesh.internal:1', [HEADER.endpoint]: 'plain' }, { endStream: false });
      stream.on('error', () => undefined);
      const streamClosed = new Promise((r) => stream.on('close', r));
      stream.write('idle');
      await waitUntil(() => backendSockets === 1, 'backend connection open');
      const started = Date.now();
      await agent.drain(700);
      const took = Date.now() - started;
      // Not before the deadline (its timer never fires early); after it, only as late as a busy
      // machine makes it: the connection never ends, so without the cut drain() never would.
      expect(took).toBeGreaterThanOrEqual(600);
      expect(took).toBeLessThan(700 + 10_000);
      await streamClosed;
      await waitUntil(() => gw.gateway.backends.size === 0, 'backend gone');
    } finally {
      agent.close();
      gw.gateway.close();
      backend.close();
    }
  });

  it('drains at once when no connection is open', async () => {
    const gw = await startAuditGateway(mesh, { fronts: [] });
    const agent = auditAgent(mesh, 'pipe', { gateways: [{ address: '127.0.0.1', port: gw.gateway.port }] });
    agent.start();
    try {
      await waitUntil(() => gw.gateway.backends.size === 1, 'registered');
      // Nothing to wait for: it returns long before its deadline, however busy the machine.
      const deadline = 30_000;
      const started = Date.now();
      await agent.drain(deadline);
      expect(Date.now() - started).toBeLessThan(deadline / 2);
    } finally {
      agent.close();
      gw.gateway.close();
    }
  });
});

describe('certificates swapped on reload', () => {
  it('serves a new certificate and CRL after reload(): tunnels that were up stay up, but a newly revoked one is dropped', async () => {
    // The gateway reads its files from a copy we can overwrite.
    const root = join(work.path, 'gw-root');
    cpSync(mesh.root('gw1'), root, { recursive: true });
    const caDir = join(mesh.stateDir, 'ca');
    const crl = join(work.path, 'gateway-crl.pem');
    copyFileSync(join(caDir, 'crl.pem'), crl);
    const tls = credentialTlsFiles(root, 'gateway', crl);
    const gw = await startAuditGateway(mesh, { fronts: [], tls });
    const ca = loadCa(caDir);
    // The spare certificate's agents claim hosts b8 and b9, so the test can tell them apart: the
    // gateway takes registrations only from instances of the service on the host the certificate
    // names, so the topology lists them, and the certificate is b8's.
    const withSpares = withSpareHosts(mesh.topology, 'pipe', ['b8', 'b9']);
    // A second client certificate for "pipe", good until the CRL below says otherwise.
    const spareTls = await clientTlsFor(mesh, withSpares, 'pipe', 'b8');
    const spare = { serial: spareTls.serial };
    const agents: Agent[] = [];
    await gw.gateway.reload(withSpares);
    try {
      const oldSerial = await servedSerial(gw.gateway.port);
      const live = auditAgent(mesh, 'pipe', { gateways: [{ address: '127.0.0.1', port: gw.gateway.port }] });
      agents.push(live);
      live.start();
      await waitUntil(() => gw.gateway.backends.size === 1, 'registered');
      const liveBackend = gw.gateway.backends.all()[0]!;

      // Before the new CRL, the spare certificate is accepted.
      const early = auditAgent(mesh, 'pipe', { host: 'b8', gateways: [{ address: '127.0.0.1', port: gw.gateway.port }], tls: spareTls });
      agents.push(early);
      early.start();
      await waitUntil(() => gw.gateway.backends.all().some((b) => b.host === 'b8'), 'spare certificate accepted before the CRL');

      const fresh = await gatewayServerCert(new LeafSigner(ca));
      writeFileSync(join(root, 'x509', 'gateway', 'server', 'cert.pem'), fresh.cert);
      writeFileSync(join(root, 'x509', 'gateway', 'server', 'private_key.pem'), fresh.key);
      await revoke(ca, spare.serial, 'keyCompromise');
      copyFileSync(join(caDir, 'crl.pem'), crl);
      await gw.gateway.reload(withSpares);

      // The tunnel of the certificate the new CRL revokes is dropped at once; its redials are refused.
      expect(gw.gateway.backends.all().some((b) => b.host === 'b8')).toBe(false);
      expect(fresh.serial).not.toBe(oldSerial);
      expect(await servedSerial(gw.gateway.port)).toBe(fresh.serial);
      // The tunnel from before is the same connection, still serving.
      expect(gw.gateway.backends.get(liveBackend.id)).toBe(liveBackend);
      expect(liveBackend.session.destroyed).toBe(false);
      expect(live.connected).toBe(1);
      // A new agent checks the new certificate against the CA and name, and gets in.
      const second = auditAgent(mesh, 'pipe', { gateways: [{ address: '127.0.0.1', port: gw.gateway.port }], connections: 2 });
      agents.push(second);
      second.start();
      await waitUntil(() => gw.gateway.backends.all().some((b) => b.agentId === 'b1/pipe/1'), 'new agent registered against the new certificate');
      // The new CRL applies: the spare certificate is refused as revoked.
      const refusedBefore = Number(/meshplane_gateway_auth_failures_total\{reason="revoked"\} (\d+)/.exec(await gw.metrics())?.[1] ?? 0);
      const revoked = auditAgent(mesh, 'pipe', { host: 'b9', gateways: [{ address: '127.0.0.1', port: gw.gateway.port }], tls: spareTls });
      agents.push(revoked);
      revoked.start();
      await waitUntil(async () => Number(/meshplane_gateway_auth_failures_total\{reason="revoked"\} (\d+)/.exec(await gw.metrics())?.[1] ?? 0) > refusedBefore, 'revoked certificate refused');
      expect(gw.gateway.backends.all().some((b) => b.host === 'b9')).toBe(false);
    } finally {
      for (const agent of agents) agent.close();
      gw.gateway.close();
    }
  });
});
