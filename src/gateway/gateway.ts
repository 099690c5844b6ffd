/**
 * The gateway: the registration listener for agents, the front listeners
 * for clients, the registry of connected backends between them, and the
 * logs and counters of what each did. `reload()` swaps the routing table
 * and certificates without dropping live connections.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SecureContextOptions } from 'node:tls';
import { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { MeshplaneError } from '../errors.js';
import { readCrl } from '../pki/index.js';
import type { Topology } from '../topology/index.js';
import type { AdminTarget } from './admin.js';
import { Balancer } from './balance.js';
import { DEFAULT_PEEK_TIMEOUT_MS, FrontListeners } from './front.js';
import { HealthMonitor } from './health.js';
import { GatewayMetrics, isServing } from './metrics.js';
import { RegistrationListener } from './registration.js';
import { BackendRegistry } from './registry.js';
import type { Backend } from './registry.js';
import { RoutingTable } from './routes.js';

export interface GatewayTlsFiles {
  /** The mesh CA (ca.pem): agents' client certificates must chain to it. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** CRL in PEM; revoked agents are refused. */
  readonly crl: string | null;
}

export interface GatewayOptions {
  readonly topology: Topology;
  readonly tls: GatewayTlsFiles;
  /** Where agents register, e.g. 0.0.0.0:8443 (port 0 in tests). */
  readonly registration: { readonly address: string; readonly port: number };
  /** Addresses the front ports listen on. */
  readonly frontAddresses: readonly string[];
  readonly peekTimeoutMs?: number;
  readonly registry?: Registry | null;
  readonly logger: Logger;
}

/** Credential files of one credential under a credentials root, as the PKI writes them. */
export function credentialTlsFiles(root: string, credential: string, crl: string | null): GatewayTlsFiles {
  const dir = join(root, 'x509', credential);
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server', 'cert.pem'), key: join(dir, 'server', 'private_key.pem'), crl };
}

export function readTlsFiles(files: GatewayTlsFiles): SecureContextOptions {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new MeshplaneError('GW_ERR_TLS_FILES', `cannot read the gateway's ${what} ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { ca: read(files.ca, 'CA certificate'), cert: read(files.cert, 'certificate'), key: read(files.key, 'private key'), ...(files.crl === null ? {} : { crl: read(files.crl, 'CRL') }) };
}

export class Gateway {
  readonly backends = new BackendRegistry();
  private readonly options: GatewayOptions;
  private readonly logger: Logger;
  private readonly registration: RegistrationListener;
  private readonly fronts: FrontListeners;
  private topology: Topology;
  private registrationPort = 0;
  readonly metrics: GatewayMetrics;
  readonly balancer: Balancer;
  private readonly health: HealthMonitor;
  readonly startedAt = new Date();

  constructor(options: GatewayOptions) {
    this.options = options;
    this.topology = options.topology;
    this.logger = options.logger;
    // Without a registry to report to, metrics still have somewhere to go.
    this.metrics = new GatewayMetrics(options.registry ?? new Registry(), this.backends, () =>
      Object.entries(this.topology.services)
        .filter(([, service]) => service.gateway_endpoints.length > 0)
        .map(([name]) => name),
    );
    this.balancer = new Balancer(this.backends, {
      ejected: (backend, forMs, failures) => {
        this.metrics.ejected(backend);
        this.logger.warn({ backend: backend.id, service: backend.service, failures, ejected_ms: forMs, reason: 'consecutive_failures' }, 'backend ejected');
      },
    });
    this.health = new HealthMonitor(this.topology, {
      checked: (backend, endpoint, result) => this.metrics.healthChecked(backend, endpoint, result),
      changed: (backend, endpoint, from, to, reason) => {
        const entry = { backend: backend.id, service: backend.service, endpoint, from, to, reason: reason ?? 'check passed' };
        if (to === 'unhealthy') this.logger.warn(entry, 'backend health changed');
        else this.logger.info(entry, 'backend health changed');
      },
    });
    this.registration = new RegistrationListener(
      this.topology,
      this.backends,
      {
        refused: (reason, peer, detail) => {
          this.metrics.authFailure(reason);
          this.logger.warn({ peer, reason, detail }, 'agent refused');
        },
        registered: (backend, replaced) => {
          if (replaced !== undefined) this.forget(replaced);
          this.health.add(backend);
          this.logger.info({ backend: backend.id, service: backend.service, credential: backend.credential, agent: backend.agentId, host: backend.host, peer: backend.peer, replaced: replaced?.id }, 'backend registered');
        },
        deregistered: (backend, why) => {
          this.forget(backend);
          this.logger.info({ backend: backend.id, service: backend.service, agent: backend.agentId, peer: backend.peer, reason: why }, 'backend deregistered');
        },
      },
      this.logger,
    );
    this.fronts = new FrontListeners(
      new RoutingTable(this.topology),
      this.balancer,
      { addresses: options.frontAddresses, peekTimeoutMs: options.peekTimeoutMs ?? DEFAULT_PEEK_TIMEOUT_MS, domain: this.topology.domain },
      {
        routed: (route) => this.metrics.connection(route.endpoint.port, 'routed'),
        refused: (port, reason, peer, detail, connection) => {
          this.metrics.connection(port, reason);
          this.logger.info({ connection, port, peer, reason, detail }, 'client connection refused');
        },
        failed: (route, backend) => this.balancer.failed(backend, route.endpoint),
        firstByte: (backend, seconds) => {
          this.balancer.succeeded(backend);
          this.metrics.firstByte(backend, seconds);
        },
      },
      this.logger,
    );
  }

  get port(): number {
    return this.registrationPort;
  }

  get frontPorts(): number[] {
    return this.fronts.ports;
  }

  async start(): Promise<void> {
    const tls = readTlsFiles(this.options.tls);
    try {
      this.registrationPort = await this.registration.listen(tls, this.options.registration.address, this.options.registration.port);
      await this.fronts.apply(new RoutingTable(this.topology));
    } catch (err) {
      this.close();
      const error = err as NodeJS.ErrnoException;
      if (error.code !== undefined && /^E[A-Z]+$/.test(error.code)) {
        throw new MeshplaneError('GW_ERR_LISTEN', `cannot listen: ${error.message}${error.code === 'EACCES' ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : ''}`, { cause: err });
      }
      throw err;
    }
    this.logger.info({ registration: `${this.options.registration.address}:${this.registrationPort}`, fronts: this.fronts.ports }, 'gateway ready');
  }

  /**
   * New topology and certificates. Listeners for new front ports open,
   * removed ones close; live tunnels and connections are not touched,
   * except those of agents the topology no longer authorises or the new
   * CRL revokes. Throws (and changes nothing) when the certificates or the
   * CRL cannot be read.
   */
  async reload(topology: Topology): Promise<void> {
    const tls = readTlsFiles(this.options.tls);
    const revoked = tls.crl === undefined ? new Set<string>() : readCrl(tls.crl.toString(), this.options.tls.crl ?? 'CRL').serials;
    this.registration.setSecureContext(tls);
    this.topology = topology;
    this.registration.setTopology(topology);
    this.health.setTopology(topology);
    await this.fronts.apply(new RoutingTable(topology));
    // Backends whose service no longer lists their credential, or whose certificate the new CRL
    // revokes, lose their tunnel (an agent the CRL refuses could otherwise serve until it reconnects).
    for (const backend of this.backends.all()) {
      const service = topology.services[backend.service];
      if (service === undefined || !service.credentials.includes(backend.credential) || service.gateway_endpoints.length === 0) this.kill(backend.id, 'no longer authorised by the topology');
      else if (revoked.has(backend.certificateSerial)) this.kill(backend.id, `certificate ${backend.certificateSerial} revoked by the CRL`);
    }
    this.logger.info({ fronts: this.fronts.ports, backends: this.backends.size }, 'gateway reloaded');
  }

  /** Closes a backend's tunnel and every stream in it; the agent may reconnect as a new backend. */
  kill(id: string, why: string): Backend | undefined {
    const backend = this.backends.get(id);
    if (backend === undefined) return undefined;
    this.backends.remove(id);
    this.forget(backend);
    backend.session.destroy();
    this.metrics.killed(backend);
    this.logger.info({ backend: id, service: backend.service, agent: backend.agentId, peer: backend.peer, reason: why }, 'backend killed');
    return backend;
  }

  /** What the admin API sees and does. */
  adminTarget(): AdminTarget {
    return {
      backends: () => this.backends.all(),
      backend: (id) => this.backends.get(id),
      kill: (id, why) => this.kill(id, why),
      status: () => ({
        started_at: this.startedAt.toISOString(),
        registration_port: this.registrationPort,
        front_ports: this.fronts.ports,
        backends: this.backends.size,
        serving: this.backends.all().filter(isServing).length,
      }),
    };
  }

  /** A backend left the registry: no more checks, and its metric series go. */
  private forget(backend: Backend): void {
    this.health.remove(backend);
    this.metrics.forget(backend);
  }

  close(): void {
    this.health.close();
    this.registration.close();
    this.fronts.close();
    for (const backend of this.backends.all()) {
      this.backends.remove(backend.id);
      backend.session.destroy();
    }
  }
}
