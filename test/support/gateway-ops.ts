/**
 * A mesh for gateway-operations tests: one gateway host and three backend
 * hosts, credentials from the real PKI (including the `gateway-admin`
 * credential the admin API accepts), and test-owned HTTP backends whose
 * health answer (status, body, X-Iconia-Load) a test can change at will.
 *
 *   pool    on b1, b2, b3: http :24580 (pool.example.test, least_load),
 *           (sticky.example.test, balance: source, checks on /ready),
 *           CONNECT :24528; checks every 1 s, rise 2, fall 2
 *   flaky   on two hosts: http :24580 (flaky.example.test), round_robin,
 *           checks off, ejection after 3 failures for 1 s
 *   lonely  on one host: TLS :24543 (lonely.example.test), checks on
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { issueMeshCredentials } from '../../src/pki/index.js';
import { writeTopology } from '../../src/topology/index.js';
import type { Topology } from '../../src/topology/index.js';
import { compileMesh } from './dns.js';
import { startDaemon } from './gateway.js';
import type { Daemon } from './gateway.js';

export const OPS_PORTS = { http: 24580, connect: 24528, tls: 24543 } as const;

// A timeout as long as the interval allows: the backends always answer, so a check that fails
// here is one the machine was too busy to carry in time, and it would steer traffic the tests count.
const CHECKS = '{interval: 1s, timeout: 1s, rise: 2, fall: 2}';
/** Paths a test backend answers as health checks (the sticky endpoint checks /ready). */
const HEALTH_PATHS = new Set(['/health', '/ready']);

export interface OpsFixture {
  readonly topology: Topology;
  readonly topologyFile: string;
  /** The PKI's state (the CA is in ca/). */
  readonly stateDir: string;
  root(host: string): string;
  /** Hosts a service runs on, in the Topology's order. */
  hostsOf(service: string): string[];
}

export async function prepareOpsMesh(dir: string): Promise<OpsFixture> {
  const topology = compileMesh(dir, {
    overlays: [{ name: 'opsov', network: '100.64.41.0/24', port: 6571 }],
    hosts: [
      { name: 'gw1', ips: ['127.0.41.1'], groups: ['gateway'] },
      { name: 'b1', ips: ['127.0.41.2'], groups: ['pool'] },
      { name: 'b2', ips: ['127.0.41.3'], groups: ['pool'] },
      { name: 'b3', ips: ['127.0.41.4'], groups: ['pool'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [24500]
  service_credentials:
    - {name: gateway, enable_client: false}
    - {name: gateway-admin, enable_server: false}
pool:
  scheduling_group: pool
  ports: [24501]
  service_credentials: [{name: pool}]
  gateway_endpoints:
    - {name: lb, hostnames: [pool.example.test], port: ${OPS_PORTS.http}, mode: http, health: ${CHECKS}}
    - {name: sticky, hostnames: [sticky.example.test], port: ${OPS_PORTS.http}, mode: http, balance: source, health: {path: /ready, interval: 1s, timeout: 1s, rise: 2, fall: 2}}
    - {name: tunnel, hostnames: [pool.example.test], port: ${OPS_PORTS.connect}, mode: connect, health: ${CHECKS}}
flaky:
  scheduling_group: pool
  num_instances: 2
  ports: [24502]
  service_credentials: [{name: flaky}]
  gateway_endpoints:
    - {name: lb, hostnames: [flaky.example.test], port: ${OPS_PORTS.http}, mode: http, balance: round_robin, health: false, outlier: {consecutive_errors: 3, ejection_time: 1s}}
lonely:
  scheduling_group: pool
  num_instances: 1
  ports: [24503]
  service_credentials: [{name: lonely}]
  gateway_endpoints:
    - {name: tls, hostnames: [lonely.example.test], port: ${OPS_PORTS.tls}, mode: tls, health: ${CHECKS}}
`,
  });
  const topologyFile = join(dir, 'topology.json');
  writeTopology(topologyFile, topology);
  const stateDir = join(dir, 'state');
  await issueMeshCredentials({ topology, stateDir });
  return {
    topology,
    topologyFile,
    stateDir,
    root: (host) => join(stateDir, 'credentials', host),
    hostsOf: (service) => topology.services[service]!.instances.map((i) => i.host),
  };
}

export interface TestBackend {
  readonly name: string;
  readonly port: number;
  /** Requests other than health checks, since the last reset. */
  hits: number;
  /** What /health answers. */
  health: { status: number; body: string; load: number | null };
  /** Host headers health checks came with. */
  readonly checkHosts: Set<string>;
  /** Paths health checks asked for. */
  readonly checkPaths: Set<string>;
  close(): Promise<void>;
}

/** An HTTP backend answering "backend=<name>", and /health (or /ready) as told. */
export async function startTestBackend(name: string, load: number | null): Promise<TestBackend> {
  const backend: TestBackend = {
    name,
    port: 0,
    hits: 0,
    health: { status: 200, body: 'ok', load },
    checkHosts: new Set(),
    checkPaths: new Set(),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server: Server = createServer((request, response) => {
    if (HEALTH_PATHS.has(request.url ?? '')) {
      backend.checkHosts.add(request.headers.host ?? '');
      backend.checkPaths.add(request.url ?? '');
      const { status, body, load: reported } = backend.health;
      response.writeHead(status, { 'content-type': 'text/plain', ...(reported === null ? {} : { 'x-iconia-load': String(reported) }) });
      response.end(body);
      return;
    }
    backend.hits++;
    response.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    response.end(`backend=${name}\n`);
  });
  server.keepAliveTimeout = 100;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return Object.assign(backend, { port: (server.address() as AddressInfo).port });
}

/** A port nothing listens on (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function startOpsAgent(fixture: OpsFixture, service: string, host: string, gatewayPort: number, backendPort: number): Daemon {
  return startDaemon(
    ['agent', '--topology', fixture.topologyFile, '--host', host, '--service', service, '--credentials-root', fixture.root(host), '--gateway', `127.0.0.1:${gatewayPort}`, '--reconnect-max', '0.3', '--backend', `127.0.0.1:${backendPort}`],
    'meshplane agent:',
  );
}
