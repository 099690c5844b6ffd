/**
 * Running the example mesh's gateway side on one machine for `meshplane up`:
 * credentials issued under the state directory by the real PKI, a demo
 * backend per exposed service instance, an agent beside each, and the
 * gateway on the gateway host's loopback addresses. Everything in process,
 * no root.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { Agent } from '../agent/index.js';
import { startDemoBackend } from '../demo/index.js';
import { Gateway, credentialTlsFiles } from '../gateway/index.js';
import { issueMeshCredentials } from '../pki/index.js';
import type { Topology } from '../topology/index.js';

export interface LocalMesh {
  /** curl commands that go through each front. */
  readonly examples: readonly string[];
  close(): void;
}

const first = <T>(items: readonly T[]): T | undefined => items[0];

export async function startLocalGateway(topology: Topology, stateDir: string, registry: Registry, logger: Logger): Promise<LocalMesh | null> {
  const gatewayService = topology.services['gateway'];
  const gatewayHost = gatewayService === undefined ? undefined : topology.hosts[gatewayService.instances[0]?.host ?? ''];
  const exposed = Object.values(topology.services).filter((s) => s.gateway_endpoints.length > 0 && s.instances.length > 0);
  if (gatewayService === undefined || gatewayHost === undefined || exposed.length === 0) return null;

  const report = await issueMeshCredentials({ topology, stateDir });
  const rootOf = (host: string): string => report.hosts[host]!.root;
  const registration = { address: first(gatewayHost.ips) ?? '127.0.0.1', port: first(gatewayService.ports) ?? 8443 };
  const fronts = gatewayHost.public_ips.length > 0 ? gatewayHost.public_ips : gatewayHost.ips;
  const gateway = new Gateway({
    topology,
    tls: credentialTlsFiles(rootOf(gatewayHost.name), first(gatewayService.credentials) ?? 'gateway', null),
    registration,
    frontAddresses: fronts,
    registry,
    logger: logger.child({ component: 'gateway' }),
  });
  await gateway.start();

  const backends: Server[] = [];
  const agents: Agent[] = [];
  const examples: string[] = [];
  for (const service of exposed) {
    const credential = service.credentials.map((name) => topology.credentials[name]!).find((c) => c.enable_client);
    const port = first(service.ports);
    if (credential === undefined || port === undefined) continue;
    for (const instance of service.instances) {
      const host = topology.hosts[instance.host]!;
      const address = first(host.ips) ?? '127.0.0.1';
      const dir = join(rootOf(host.name), 'x509', credential.name);
      const read = (path: string): Buffer => readFileSync(join(dir, path));
      backends.push(
        await startDemoBackend({
          service: service.name,
          host: host.name,
          address,
          port,
          tls: credential.enable_server ? { cert: read('server/cert.pem'), key: read('server/private_key.pem') } : undefined,
        }),
      );
      const agent = new Agent({
        credential: credential.name,
        service: service.name,
        host: host.name,
        tls: { ca: read('ca.pem'), cert: read('client/cert.pem'), key: read('client/private_key.pem') },
        gateways: [registration],
        gatewayName: `${gatewayService.name}.${topology.domain}`,
        backend: { address, port },
        proxyProtocol: new Map(service.gateway_endpoints.map((e) => [e.name, e.proxy_protocol])),
        version: 'up',
        logger: logger.child({ component: 'agent', service: service.name, host: host.name }),
      });
      agent.start();
      agents.push(agent);
    }
    const front = first(fronts) ?? '127.0.0.1';
    const caFile = join(rootOf(service.instances[0]!.host), 'x509', credential.name, 'ca.pem');
    for (const endpoint of service.gateway_endpoints) {
      const name = first(endpoint.hostnames) ?? `${service.name}.${topology.domain}`;
      if (endpoint.mode === 'tls') examples.push(`curl --cacert ${caFile} --resolve ${name}:${endpoint.port}:${front} https://${name}:${endpoint.port}/`);
      if (endpoint.mode === 'http') examples.push(`curl --resolve ${name}:${endpoint.port}:${front} http://${name}:${endpoint.port}/`);
      if (endpoint.mode === 'connect') examples.push(`curl --proxytunnel -x http://${front}:${endpoint.port} http://${service.name}.${topology.domain}:${port}/`);
    }
  }
  // Give the agents a moment to register, so the printed commands work at once.
  const deadline = Date.now() + 5000;
  while (gateway.backends.size < agents.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  return {
    examples,
    close() {
      for (const agent of agents) agent.close();
      gateway.close();
      for (const backend of backends) backend.close();
    },
  };
}
