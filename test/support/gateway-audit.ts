/**
 * A second small exposed mesh, on ports of its own (246xx) so that its tests
 * never meet the ones of support/gateway.ts, run with an in-process gateway
 * (short peek timeout, metrics on a registry the test reads) and in-process
 * agents with the credentials the real PKI issued.
 *
 *   site  TLS passthrough on :24643 (site.audit.test), PROXY v2, backend
 *         haproxy (accept-proxy, TLS with site's certificate) on :24681
 *   app   plain HTTP on :24680 (app.audit.test), PROXY v1, and CONNECT on
 *         :24628 (app.mesh.internal), PROXY v2; backend haproxy :24682
 *   pipe  plain HTTP route (pipe.audit.test) to a test-owned TCP backend on
 *         :24683, no PROXY header; a second service port :24684, reached by
 *         CONNECT pipe.mesh.internal:24684 on :24628
 *
 * Health checks are off everywhere: a backend serves as soon as its agent
 * registers (the checks have tests of their own).
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { Agent } from '../../src/agent/index.js';
import type { AgentOptions } from '../../src/agent/testing.js';
import { Gateway, credentialTlsFiles } from '../../src/gateway/index.js';
import type { GatewayTlsFiles } from '../../src/gateway/testing.js';
import { LeafSigner, generateKeyPair, issueMeshCredentials, loadCa, makeCsr } from '../../src/pki/index.js';
import type { Topology } from '../../src/topology/index.js';
import { compileMesh, silentLogger } from './dns.js';
import { startProxyProtocolHaproxy } from './gateway.js';
import { SOON_MS, waitFor } from './wait.js';

export const AUDIT_PORTS = { registration: 24600, tls: 24643, http: 24680, connect: 24628, siteBackend: 24681, appBackend: 24682, pipeBackend: 24683, pipeSecondPort: 24684 } as const;

export interface AuditMesh {
  readonly topology: Topology;
  readonly stateDir: string;
  /** Credentials root of a host: <state>/credentials/<host>. */
  root(host: string): string;
}

export async function prepareAuditMesh(dir: string): Promise<AuditMesh> {
  const P = AUDIT_PORTS;
  const topology = compileMesh(dir, {
    overlays: [{ name: 'auov', network: '100.64.46.0/24', port: 6580 }],
    hosts: [
      { name: 'gw1', ips: ['127.0.46.1'], groups: ['gateway'] },
      { name: 'b1', ips: ['127.0.46.2'], groups: ['web'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [${P.registration}]
  service_credentials:
    - {name: gateway, enable_client: false}
site:
  scheduling_group: web
  ports: [${P.siteBackend}]
  service_credentials: [{name: site, extra_san: [site.audit.test]}]
  gateway_endpoints:
    - {name: tls, hostnames: [site.audit.test], port: ${P.tls}, mode: tls, proxy_protocol: v2, health: false}
app:
  scheduling_group: web
  ports: [${P.appBackend}]
  service_credentials: [{name: app}]
  gateway_endpoints:
    - {name: plain, hostnames: [app.audit.test], port: ${P.http}, mode: http, proxy_protocol: v1, health: false}
    - {name: tunnel, hostnames: [app.audit.test], port: ${P.connect}, mode: connect, proxy_protocol: v2, health: false}
pipe:
  scheduling_group: web
  ports: [${P.pipeBackend}, ${P.pipeSecondPort}]
  service_credentials: [{name: pipe}]
  gateway_endpoints:
    - {name: plain, hostnames: [pipe.audit.test], port: ${P.http}, mode: http, health: false}
    - {name: tunnel, hostnames: [pipe.audit.test], port: ${P.connect}, mode: connect, health: false}
`,
  });
  const stateDir = join(dir, 'state');
  await issueMeshCredentials({ topology, stateDir });
  return { topology, stateDir, root: (host) => join(stateDir, 'credentials', host) };
}

/** haproxy as the backend that insists on PROXY protocol and says which client it learnt from it. */
export function startAuditHaproxy(dir: string, mesh: AuditMesh): ChildProcessWithoutNullStreams {
  return startProxyProtocolHaproxy(dir, join(mesh.root('b1'), 'x509', 'site', 'server'), { site: AUDIT_PORTS.siteBackend, app: AUDIT_PORTS.appBackend });
}

export interface AuditGateway {
  readonly gateway: Gateway;
  readonly registry: Registry;
  /** The Prometheus text of the gateway's metrics right now. */
  metrics(): Promise<string>;
}

/** An in-process gateway with gw1's credential; fronts on 127.0.0.1 and ::1 unless told otherwise. */
export async function startAuditGateway(
  mesh: AuditMesh,
  options: { registrationPort?: number; fronts?: readonly string[]; peekTimeoutMs?: number; tls?: GatewayTlsFiles; logger?: Logger; allowLegacyIdentity?: boolean } = {},
): Promise<AuditGateway> {
  const registry = new Registry();
  const gateway = new Gateway({
    topology: mesh.topology,
    tls: options.tls ?? credentialTlsFiles(mesh.root('gw1'), 'gateway', null),
    registration: { address: '127.0.0.1', port: options.registrationPort ?? 0 },
    frontAddresses: options.fronts ?? ['127.0.0.1', '::1'],
    peekTimeoutMs: options.peekTimeoutMs,
    registry,
    logger: options.logger ?? silentLogger,
    allowLegacyIdentity: options.allowLegacyIdentity,
  });
  await gateway.start();
  return { gateway, registry, metrics: () => registry.metrics() };
}

/** The files of a credential's client certificate on b1. */
export function clientTls(mesh: AuditMesh, credential: string): AgentOptions['tls'] {
  const dir = join(mesh.root('b1'), 'x509', credential);
  return { ca: readFileSync(join(dir, 'ca.pem')), cert: readFileSync(join(dir, 'client', 'cert.pem')), key: readFileSync(join(dir, 'client', 'private_key.pem')) };
}

/** An in-process agent on b1 for `service`, its backend the service's port, as the Topology says. */
export function auditAgent(mesh: AuditMesh, service: string, overrides: Partial<AgentOptions> & Pick<AgentOptions, 'gateways'>): Agent {
  const topologyService = mesh.topology.services[service]!;
  return new Agent({
    credential: service,
    service,
    host: 'b1',
    tls: clientTls(mesh, service),
    gatewayName: `gateway.${mesh.topology.domain}`,
    backend: { address: '127.0.0.1', port: topologyService.ports[0]! },
    backendPorts: topologyService.ports,
    proxyProtocol: new Map(topologyService.gateway_endpoints.map((e) => [e.name, e.proxy_protocol])),
    backoff: { initialMs: 20, maxMs: 200 },
    version: 'test',
    logger: silentLogger,
    ...overrides,
  });
}

/** Polls `check` until it holds (see waitFor in ./wait.ts: the deadline is a ceiling for a busy machine). */
export async function waitUntil(check: () => Promise<boolean> | boolean, what: string, timeoutMs = SOON_MS): Promise<void> {
  await waitFor(check, { what, deadline: timeoutMs, interval: 20 });
}

/** The value of one series in Prometheus text, 0 when absent. */
export function series(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/**
 * `topology` with more hosts running `service` (copies of b1 under other
 * names, listed by the service's credential too): hosts that may hold a
 * certificate of their own, for tests that tell hosts apart.
 */
export function withSpareHosts(topology: Topology, service: string, names: readonly string[]): Topology {
  const b1 = topology.hosts['b1']!;
  const svc = topology.services[service]!;
  const credential = topology.credentials[service]!;
  return {
    ...topology,
    hosts: { ...topology.hosts, ...Object.fromEntries(names.map((name) => [name, { ...b1, name, fqdn: `${name}.${topology.domain}` }])) },
    services: { ...topology.services, [service]: { ...svc, instances: [...svc.instances, ...names.map((host) => ({ ...svc.instances[0]!, host }))] } },
    credentials: { ...topology.credentials, [service]: { ...credential, hosts: [...credential.hosts, ...names].sort() } },
  };
}

/** A client certificate of `service`'s credential for `host` of `topology`, signed by the mesh CA, as agent TLS options. */
export async function clientTlsFor(mesh: AuditMesh, topology: Topology, service: string, host: string): Promise<AgentOptions['tls'] & { serial: string }> {
  const key = generateKeyPair();
  const csr = await makeCsr({ privateKeyPem: key.privateKeyPem, credential: service, kind: 'client', sans: [] });
  const signed = new LeafSigner(loadCa(join(mesh.stateDir, 'ca'))).signCsr(topology, { csrPem: csr, host, kind: 'client', source: 'test' });
  return { ...clientTls(mesh, service), cert: Buffer.from(signed.pem), key: Buffer.from(key.privateKeyPem), serial: signed.serial };
}
