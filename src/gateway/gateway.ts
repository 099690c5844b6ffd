/**
 * The gateway: the registration listener for agents, the front listeners
 * for clients, the registry of connected backends between them, and the
 * logs and counters of what each did. `reload()` swaps the routing table
 * and certificates without dropping live connections.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { SecureContextOptions } from 'node:tls';
import { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { MeshplaneError } from '../errors.js';
import { readCrl } from '../pki/index.js';
import type { Topology } from '../topology/index.js';
import { credentialFiles } from '../topology/index.js';
import { LogSampler } from '../lib/log-sampler.js';
import type { LogSamplerOptions } from '../lib/log-sampler.js';
import type { AdminEvents, AdminTarget } from './admin.js';
import { Balancer } from './balance.js';
import { DEFAULT_PEEK_TIMEOUT_MS, FrontListeners } from './front.js';
import { HealthMonitor } from './health.js';
import { ConnectionGuard, DEFAULT_HANDSHAKE_TIMEOUT_MS, connectionBudget, openFileLimit, perSourceCap } from './limits.js';
import type { ConnectionBudget, LimitReason, LimitSettings, ListenerLimits } from './limits.js';
import { GatewayMetrics, isServing } from './metrics.js';
import { RegistrationListener } from './registration.js';
import { BackendRegistry } from './registry.js';
import type { Backend } from './registry.js';
import { RoutingTable } from './routes.js';

/** Why a backend is dropped when its (service, host) is no longer an instance. */
const INSTANCE_REMOVED = 'instance removed from the topology';

export interface GatewayTlsFiles {
  /** The mesh CA (ca.pem): agents' client certificates must chain to it. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** CRL in PEM; revoked agents are refused. */
  readonly crl: string | null;
  /** The CRL file may be absent (no CRL yet): read as none until it appears. */
  readonly crlOptional?: boolean;
}

interface GatewayOptions {
  readonly topology: Topology;
  readonly tls: GatewayTlsFiles;
  /** Where agents register, e.g. 0.0.0.0:8443 (port 0 in tests). */
  readonly registration: { readonly address: string; readonly port: number };
  /** Addresses the front ports listen on. */
  readonly frontAddresses: readonly string[];
  readonly peekTimeoutMs?: number;
  /** Connection caps and the TLS handshake deadline; what is absent comes from the descriptor budget. */
  readonly limits?: LimitSettings;
  /** RLIMIT_NOFILE to budget (default: the process's own, from /proc). */
  readonly openFiles?: number | null;
  /** How many refusal lines per reason get logged per interval. */
  readonly logSampling?: LogSamplerOptions;
  readonly registry?: Registry | null;
  readonly logger: Logger;
  /** Accept agent certificates without a workload identity URI (migration aid; default refuse). */
  readonly allowLegacyIdentity?: boolean;
}

/** Credential files of one credential under a credentials root, as the PKI writes them. */
export function credentialTlsFiles(root: string, credential: string, crl: string | null): GatewayTlsFiles {
  const files = credentialFiles(root, credential, 'server');
  return { ca: files.ca, cert: files.cert, key: files.key, crl };
}

export function readTlsFiles(files: GatewayTlsFiles): SecureContextOptions {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new MeshplaneError('GW_ERR_TLS_FILES', `cannot read the gateway's ${what} ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  const crl = files.crl === null || (files.crlOptional === true && !existsSync(files.crl)) ? null : files.crl;
  return { ca: read(files.ca, 'CA certificate'), cert: read(files.cert, 'certificate'), key: read(files.key, 'private key'), ...(crl === null ? {} : { crl: read(crl, 'CRL') }) };
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
  private readonly sampler: LogSampler;
  private readonly registrationGuard: ConnectionGuard;
  private budget: ConnectionBudget;
  readonly startedAt = new Date();

  constructor(options: GatewayOptions) {
    this.options = options;
    this.topology = options.topology;
    this.logger = options.logger;
    this.sampler = new LogSampler(this.logger, options.logSampling);
    this.budget = this.computeBudget(this.topology);
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
          this.sampler.log('warn', reason, { peer, reason, detail }, 'agent refused');
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
      { allowLegacyIdentity: options.allowLegacyIdentity ?? false },
    );
    this.fronts = new FrontListeners(
      new RoutingTable(this.topology),
      this.balancer,
      { addresses: options.frontAddresses, peekTimeoutMs: options.peekTimeoutMs ?? DEFAULT_PEEK_TIMEOUT_MS, domain: this.topology.domain, limits: this.frontLimits() },
      {
        routed: (route) => this.metrics.connection(route.endpoint.port, 'routed'),
        refused: (port, reason, peer, detail, connection) => {
          this.metrics.connection(port, reason);
          this.sampler.log('info', reason, { connection, port, peer, reason, detail }, 'client connection refused');
        },
        limited: (port, reason, peer) => this.limited('front', port, reason, peer),
        failed: (route, backend) => this.balancer.failed(backend, route.endpoint),
        firstByte: (backend, seconds) => {
          this.balancer.succeeded(backend);
          this.metrics.firstByte(backend, seconds);
        },
      },
      this.logger,
    );
    this.registrationGuard = new ConnectionGuard('registration', this.registrationLimits(), (reason, socket) =>
      this.limited('registration', this.registrationPort, reason, `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`),
    );
  }

  /** Splits the descriptor limit between the listeners (the front ports' share depends on how many there are). */
  private computeBudget(topology: Topology): ConnectionBudget {
    return connectionBudget(this.options.openFiles === undefined ? openFileLimit() : this.options.openFiles, new RoutingTable(topology).ports.size, this.options.limits);
  }

  private listenerLimits(cap: number, deadlineMs: number | null): ListenerLimits {
    return { maxConnections: cap, maxPerSource: perSourceCap(cap, this.options.limits ?? {}), deadlineMs };
  }

  private frontLimits(): ListenerLimits {
    // The routable head's deadline is the front's own (peekTimeoutMs), with its own refusal.
    return this.listenerLimits(this.budget.front, null);
  }

  private registrationLimits(): ListenerLimits {
    return this.listenerLimits(this.budget.registration, this.options.limits?.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  }

  /** The admin API's caps and handshake deadline (the CLI hands them to the AdminServer, again after a reload). */
  adminLimits(): ListenerLimits {
    return this.listenerLimits(this.budget.admin, this.options.limits?.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  }

  /** What the admin API reports: counted and logged like the other listeners' refusals. */
  adminEvents(port: () => number): AdminEvents {
    return {
      limited: (reason, peer) => this.limited('admin', port(), reason, peer),
      refused: (code, peer, detail) => {
        this.metrics.adminRefused(code);
        this.sampler.log('warn', code, { peer, code, detail }, 'admin request refused');
      },
    };
  }

  private limited(listener: string, port: number, reason: LimitReason, peer: string): void {
    this.metrics.limited(listener, port, reason);
    this.sampler.log('warn', `${listener}:${reason}`, { listener, port, peer, reason }, 'connection closed at a limit');
  }

  private logLimits(): void {
    const b = this.budget;
    this.logger.info(
      {
        open_files: b.openFiles,
        reserve: b.reserve,
        front_per_port: this.frontLimits(),
        registration: this.registrationLimits(),
        admin: this.adminLimits(),
        head_timeout_ms: this.options.peekTimeoutMs ?? DEFAULT_PEEK_TIMEOUT_MS,
      },
      'connection limits',
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
      this.registrationPort = await this.registration.listen(tls, this.options.registration.address, this.options.registration.port, this.registrationGuard);
      await this.fronts.apply(new RoutingTable(this.topology));
    } catch (err) {
      this.close();
      const error = err as NodeJS.ErrnoException;
      if (error.code !== undefined && /^E[A-Z]+$/.test(error.code)) {
        throw new MeshplaneError('GW_ERR_LISTEN', `cannot listen: ${error.message}${error.code === 'EACCES' ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : ''}`, { cause: err });
      }
      throw err;
    }
    this.logLimits();
    this.metrics.listening('registration', this.registrationPort);
    for (const port of this.fronts.ports) this.metrics.listening('front', port);
    this.logger.info({ registration: `${this.options.registration.address}:${this.registrationPort}`, fronts: this.fronts.ports }, 'gateway ready');
  }

  /**
   * New topology and certificates. Listeners for new front ports open,
   * removed ones close; live tunnels and connections are not touched,
   * except those of agents the topology no longer authorizes (or no longer
   * lists as an instance of their service on their host) or the new CRL
   * revokes. Throws (and changes nothing) when the certificates or the
   * CRL cannot be read.
   */
  async reload(topology: Topology): Promise<void> {
    const tls = readTlsFiles(this.options.tls);
    const revoked = tls.crl === undefined ? new Set<string>() : readCrl(tls.crl.toString(), this.options.tls.crl ?? 'CRL').serials;
    this.registration.setSecureContext(tls);
    this.topology = topology;
    this.registration.setTopology(topology);
    this.health.setTopology(topology);
    this.budget = this.computeBudget(topology);
    this.fronts.setLimits(this.frontLimits());
    this.registrationGuard.setLimits(this.registrationLimits());
    await this.fronts.apply(new RoutingTable(topology));
    // Backends whose service no longer lists their credential, or whose certificate the new CRL
    // revokes, lose their tunnel (an agent the CRL refuses could otherwise serve until it reconnects).
    // Backends of an instance the topology moved or removed go too: requests must stop reaching them
    // (registration refuses their redials). Other backends and their connections are not touched.
    for (const backend of this.backends.all()) {
      const service = topology.services[backend.service];
      if (service === undefined || !service.credentials.includes(backend.credential) || service.gateway_endpoints.length === 0) this.kill(backend.id, 'no longer authorized by the topology');
      else if (!service.instances.some((instance) => instance.host === backend.host)) this.kill(backend.id, INSTANCE_REMOVED);
      else if (revoked.has(backend.certificateSerial)) this.kill(backend.id, `certificate ${backend.certificateSerial} revoked by the CRL`);
    }
    this.logLimits();
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
    this.sampler.close();
    this.health.close();
    this.registration.close();
    this.fronts.close();
    for (const backend of this.backends.all()) {
      this.backends.remove(backend.id);
      backend.session.destroy();
    }
  }
}
