/**
 * A small exposed mesh for gateway tests: one gateway host, one backend
 * host, credentials issued by the real PKI, haproxy as the backend that
 * insists on PROXY protocol, and the real `meshplane gateway` / `meshplane
 * agent` processes.
 *
 *   site  TLS passthrough on :24443 (site.example.test), PROXY v2,
 *         backend haproxy TLS on :24081 with site's server certificate
 *   app   plain HTTP on :24080 (app.example.test), PROXY v1, CONNECT on
 *         :24128 (app.mesh.internal), PROXY v2, and the whole of :24090 (tcp
 *         mode, PROXY v1); backend haproxy :24082
 *   bulk  plain HTTP route (bulk.example.test) to a test-owned TCP backend
 *         (health checks off: it speaks its own protocol, not HTTP)
 *   other a second exposed service, whose credential must not serve app
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { inspectCert, issueMeshCredentials } from '../../src/pki/index.js';
import { writeTopology } from '../../src/topology/index.js';
import type { Topology } from '../../src/topology/index.js';
import { compileMesh } from './dns.js';
import { CLI } from './run.js';
import { SOON_MS } from './wait.js';

export const PORTS = { tls: 24443, http: 24080, connect: 24128, tcp: 24090, siteBackend: 24081, appBackend: 24082, bulkBackend: 24083, otherBackend: 24084 } as const;

export function gatewayMesh(dir: string): Topology {
  return compileMesh(dir, {
    overlays: [{ name: 'gwov', network: '100.64.40.0/24', port: 6570 }],
    hosts: [
      { name: 'gw1', ips: ['127.0.40.1'], groups: ['gateway'] },
      { name: 'b1', ips: ['127.0.40.2'], groups: ['web'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [24400]
  service_credentials:
    - {name: gateway, enable_client: false}
site:
  scheduling_group: web
  ports: [${PORTS.siteBackend}]
  service_credentials: [{name: site, extra_san: [site.example.test]}]
  gateway_endpoints:
    - {name: tls, hostnames: [site.example.test], port: ${PORTS.tls}, mode: tls, proxy_protocol: v2}
app:
  scheduling_group: web
  ports: [${PORTS.appBackend}]
  service_credentials: [{name: app}]
  gateway_endpoints:
    - {name: plain, hostnames: [app.example.test], port: ${PORTS.http}, mode: http, proxy_protocol: v1}
    - {name: tunnel, hostnames: [app.example.test], port: ${PORTS.connect}, mode: connect, proxy_protocol: v2}
    - {name: raw, port: ${PORTS.tcp}, mode: tcp, proxy_protocol: v1}
bulk:
  scheduling_group: web
  ports: [${PORTS.bulkBackend}]
  service_credentials: [{name: bulk}]
  gateway_endpoints:
    - {name: plain, hostnames: [bulk.example.test], port: ${PORTS.http}, mode: http, health: false}
other:
  scheduling_group: web
  ports: [${PORTS.otherBackend}]
  service_credentials: [{name: other}]
  gateway_endpoints:
    - {name: plain, hostnames: [other.example.test], port: ${PORTS.http}, mode: http}
`,
  });
}

export interface GatewayFixture {
  readonly topology: Topology;
  readonly topologyFile: string;
  readonly stateDir: string;
  /** Credentials root of a host: <state>/credentials/<host>. */
  root(host: string): string;
}

export async function prepareGatewayMesh(dir: string): Promise<GatewayFixture> {
  const topology = gatewayMesh(dir);
  const topologyFile = join(dir, 'topology.json');
  writeTopology(topologyFile, topology);
  const stateDir = join(dir, 'state');
  await issueMeshCredentials({ topology, stateDir });
  return { topology, topologyFile, stateDir, root: (host) => join(stateDir, 'credentials', host) };
}

/** haproxy answering each request with what it learnt from the PROXY header. */
export function startHaproxy(dir: string, fixture: GatewayFixture): ChildProcessWithoutNullStreams {
  return startProxyProtocolHaproxy(dir, join(fixture.root('b1'), 'x509', 'site', 'server'), { site: PORTS.siteBackend, app: PORTS.appBackend });
}

/**
 * haproxy as the backend that insists on PROXY protocol and says which
 * client it learnt from it: `site` speaks TLS with the certificate in
 * `serverDir`, `app` plain HTTP (and echoes the path).
 */
export function startProxyProtocolHaproxy(dir: string, serverDir: string, ports: { readonly site: number; readonly app: number }): ChildProcessWithoutNullStreams {
  const pem = join(dir, 'site-haproxy.pem');
  writeFileSync(pem, readFileSync(join(serverDir, 'cert.pem'), 'utf8') + readFileSync(join(serverDir, 'private_key.pem'), 'utf8'));
  const config = join(dir, 'haproxy.cfg');
  writeFileSync(
    config,
    `global
  maxconn 5000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend site
  bind 127.0.0.1:${ports.site} accept-proxy ssl crt ${pem}
  http-request return status 200 content-type text/plain lf-string "site client=%[src] port=%[src_port]\\n"
frontend app
  bind 127.0.0.1:${ports.app} accept-proxy
  http-request return status 200 content-type text/plain lf-string "app client=%[src] port=%[src_port] path=%[path]\\n"
`,
  );
  return spawn('haproxy', ['-db', '-f', config]);
}

export interface Daemon {
  readonly child: ChildProcessWithoutNullStreams;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** The line "… on ADDR:PORT" it printed when ready. */
  readonly ready: Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Every daemon started, so that a failed test still stops them all (stopAllDaemons in afterAll). */
const started = new Set<ChildProcessWithoutNullStreams>();

export async function stopAllDaemons(): Promise<void> {
  await Promise.all(
    [...started].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
  started.clear();
}

export function startDaemon(args: readonly string[], readyText: string): Daemon {
  return startDaemonWith(process.execPath, [CLI, ...args], readyText);
}

/** Like startDaemon, with any command line (e.g. the CLI wrapped in unshare). */
export function startDaemonWith(command: string, args: readonly string[], readyText: string): Daemon {
  const child = spawn(command, [...args]);
  started.add(child);
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const ready = new Promise<string>((resolve, reject) => {
    // A ceiling for starting node and the CLI on a busy machine; ready as soon as the line is out.
    const timer = setTimeout(() => reject(new Error(`"${readyText}" not printed within ${SOON_MS} ms:\n${out}`)), SOON_MS);
    const check = (): void => {
      const line = out.split('\n').find((l) => l.includes(readyText));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve(line);
      }
    };
    child.stdout.on('data', check);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before "${readyText}":\n${out}`));
    });
  });
  ready.catch(() => undefined);
  return {
    child,
    output: () => out,
    ready,
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill(signal);
      }),
  };
}

export function startGateway(fixture: GatewayFixture, extra: readonly string[] = []): Daemon {
  return startDaemon(
    ['gateway', '--topology', fixture.topologyFile, '--credentials-root', fixture.root('gw1'), '--listen', '127.0.0.1:0', '--front-address', '127.0.0.1', '--front-address', '::1', '--metrics', '127.0.0.1:0', ...extra],
    'agents register on',
  );
}

export function registrationPort(readyLine: string): number {
  return Number(/agents register on [^:]+:(\d+)/.exec(readyLine)![1]);
}

export function metricsUrl(readyLine: string): string {
  return /metrics at (\S+)/.exec(readyLine)![1]!;
}

export function startAgent(fixture: GatewayFixture, service: string, gatewayPort: number, extra: readonly string[] = []): Daemon {
  return startDaemon(['agent', '--topology', fixture.topologyFile, '--host', 'b1', '--service', service, '--credentials-root', fixture.root('b1'), '--gateway', `127.0.0.1:${gatewayPort}`, '--reconnect-max', '0.5', ...extra], 'meshplane agent:');
}

/** The serial (normalized, as the PKI writes it) of the certificate the gateway shows on a new handshake. */
export function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'gateway.mesh.internal', rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      resolve(inspectCert(socket.getPeerX509Certificate()!.toString(), 'served').serial);
      socket.destroy();
    });
    socket.on('error', reject);
  });
}

/** The serial of a certificate file. */
export const serialOf = (file: string): string => inspectCert(readFileSync(file, 'utf8'), file).serial;

/** How many times `needle` occurs in a daemon's output. */
export const count = (text: string, needle: string): number => text.split(needle).length - 1;
