/**
 * One exposed service instance as `up` runs it: the demo backend on the
 * host's first address and the service's first port, and an agent beside
 * it whose settings come from `agentSettings` (the same function the
 * `agent` command uses), pointed at the local gateway.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import type { Logger } from 'pino';
import { Agent, agentSettings, readAgentTls } from '../../agent/index.js';
import type { AgentMetrics } from '../../agent/index.js';
import type { AgentSettings } from '../../agent/index.js';
import { startDemoBackend } from '../../demo/index.js';
import { GATEWAY_SERVICE, credentialFiles, stateCredentialsRoot } from '../../topology/index.js';
import type { Topology } from '../../topology/index.js';
import type { GatewaySpec } from './gateway.js';

export interface InstanceSpec {
  /** `<service>@<host>` */
  readonly key: string;
  readonly service: string;
  readonly host: string;
  readonly settings: AgentSettings;
  /** The server certificate and key the demo backend terminates TLS with, if the credential has them. */
  readonly serverFiles: { readonly cert: string; readonly key: string } | null;
  /** Equal fingerprints: nothing to restart. */
  readonly fingerprint: string;
}

export interface RunningInstance {
  readonly spec: InstanceSpec;
  readonly agent: Agent;
  readonly backend: Server;
}

/** How long a removed instance's open connections get to finish. */
const INSTANCE_DRAIN_MS = 5000;

const instanceKey = (service: string, host: string): string => `${service}@${host}`;

/**
 * Every instance of an exposed service that has a client credential and a
 * port; `skipped` says why the others get no agent.
 */
export function instanceSpecs(topology: Topology, stateDir: string, gateway: GatewaySpec): { specs: Map<string, InstanceSpec>; skipped: string[] } {
  const specs = new Map<string, InstanceSpec>();
  const skipped: string[] = [];
  for (const service of Object.values(topology.services)) {
    if (service.gateway_endpoints.length === 0) continue;
    for (const instance of service.instances) {
      const host = topology.hosts[instance.host];
      const port = service.ports[0];
      if (host === undefined || port === undefined) continue;
      const root = stateCredentialsRoot(stateDir, host.name);
      let settings: AgentSettings;
      try {
        settings = agentSettings(topology, {
          host: host.name,
          service: service.name,
          credentialsRoot: root,
          gateways: [gateway.registration],
          gatewayService: GATEWAY_SERVICE,
          gatewayName: gateway.name,
          backend: { address: host.ips[0] ?? '127.0.0.1', port },
        });
      } catch (err) {
        skipped.push(`${service.name} on ${host.name}: ${(err as Error).message}`);
        continue;
      }
      const credential = topology.credentials[settings.credential];
      const server = credentialFiles(root, settings.credential, 'server');
      const serverFiles = credential?.enable_server === true ? { cert: server.cert, key: server.key } : null;
      const fingerprint = JSON.stringify([settings.credential, settings.files, settings.gatewayName, settings.backend, [...settings.proxyProtocol], settings.gateways, serverFiles]);
      specs.set(instanceKey(service.name, host.name), { key: instanceKey(service.name, host.name), service: service.name, host: host.name, settings, serverFiles, fingerprint });
    }
  }
  return { specs, skipped };
}

export async function startInstance(spec: InstanceSpec, logger: Logger, metrics?: AgentMetrics): Promise<RunningInstance> {
  const { settings } = spec;
  const backend = await startDemoBackend({
    service: spec.service,
    host: spec.host,
    address: settings.backend.address,
    port: settings.backend.port,
    tls: spec.serverFiles === null ? undefined : { cert: readFileSync(spec.serverFiles.cert), key: readFileSync(spec.serverFiles.key) },
  });
  let agent: Agent;
  try {
    agent = new Agent({
      credential: settings.credential,
      service: spec.service,
      host: spec.host,
      tls: readAgentTls(settings.files),
      gateways: settings.gateways ?? [],
      gatewayName: settings.gatewayName,
      backend: settings.backend,
      backendPorts: settings.backendPorts,
      proxyProtocol: settings.proxyProtocol,
      version: 'up',
      logger: logger.child({ component: 'agent', service: spec.service, host: spec.host }),
      metrics,
    });
  } catch (err) {
    backend.close();
    throw err;
  }
  agent.start();
  return { spec, agent, backend };
}

/**
 * Drains the agent (the gateway stops sending it connections at once), then
 * closes the backend: it stops listening at once (its port is free for a
 * restart); connections still open are not waited for beyond `drainMs`.
 */
export async function stopInstance(running: RunningInstance, drainMs: number = INSTANCE_DRAIN_MS): Promise<void> {
  await running.agent.drain(drainMs);
  let timer: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve) => {
    running.backend.close(() => resolve());
    timer = setTimeout(resolve, drainMs);
  });
  clearTimeout(timer);
}
