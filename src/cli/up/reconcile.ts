/**
 * What `up` runs, brought in line with each accepted Topology, in an order
 * that keeps clients served: the Topology is written, credentials issued,
 * added instances started (demo backend and agent), the gateway reloaded
 * (new routes in, removed ones out, live connections kept), removed
 * instances drained and stopped, then changed ones restarted. What runs is
 * compared with what the Topology asks for (not replayed from the diff), so
 * a step that failed is tried again on the next edit.
 */
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { AgentMetrics } from '../../agent/index.js';
import type { Gateway } from '../../gateway/index.js';
import { issueMeshCredentials } from '../../pki/index.js';
import { diffTopologies, writeTopology } from '../../topology/index.js';
import type { Topology } from '../../topology/index.js';
import { changeLines } from './changes.js';
import { gatewaySpec, startGateway } from './gateway.js';
import type { GatewaySpec } from './gateway.js';
import { instanceSpecs, startInstance, stopInstance } from './instance.js';
import type { InstanceSpec, RunningInstance } from './instance.js';

interface ReconcilerOptions {
  readonly stateDir: string;
  readonly topologyFile: string;
  readonly logger: Logger;
  /** One line per change, for people (stdout). */
  readonly print: (line: string) => void;
  /** What could not be done (stderr). */
  readonly warn: (line: string) => void;
}

export class UpReconciler {
  private readonly options: ReconcilerOptions;
  private applied: Topology | null = null;
  private gateway: { spec: GatewaySpec; gateway: Gateway; registry: Registry } | null = null;
  private readonly instances = new Map<string, RunningInstance>();
  /** All of up's agents count into one set of agent metrics (their sum: one process). */
  readonly agentRegistry = new Registry();
  private readonly agentMetrics = new AgentMetrics(this.agentRegistry);
  private closed = false;
  /** Instances that get no agent, already reported (each is reported once). */
  private skipped = new Set<string>();
  /** One apply at a time, in order. */
  private queue: Promise<void> = Promise.resolve();

  constructor(options: ReconcilerOptions) {
    this.options = options;
    this.agentMetrics.watch(() => [...this.instances.values()].flatMap((running) => running.agent.tunnels()));
  }

  /** The running gateway's settings, or null when there is none. */
  get gatewaySpec(): GatewaySpec | null {
    return this.gateway?.spec ?? null;
  }

  /** The running gateway's metrics, or null when there is none. */
  get gatewayRegistry(): Registry | null {
    return this.gateway?.registry ?? null;
  }

  /** The running gateway (the admin API asks it at every request: it may have been restarted). */
  get runningGateway(): Gateway | null {
    return this.gateway?.gateway ?? null;
  }

  get topology(): Topology | null {
    return this.applied;
  }

  /**
   * Brings everything in line with `current`. The first call starts
   * everything and prints no change lines (the caller prints a summary);
   * each later one prints a line per change and ends with "topology written".
   * Throws only when the Topology cannot be written or credentials cannot be
   * issued; what fails for one instance or the gateway is reported through
   * `warn` and the rest goes on.
   */
  apply(current: Topology): Promise<void> {
    const run = this.queue.then(() => this.applyNow(current));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyNow(current: Topology): Promise<void> {
    if (this.closed || current === this.applied) return;
    const { stateDir, logger } = this.options;
    const previous = this.applied;
    const lines: string[] = [];
    writeTopology(this.options.topologyFile, current);
    const report = await issueMeshCredentials({ topology: current, stateDir });
    // A reissued client or server certificate is read only when an agent or backend starts.
    const reissued = new Set<string>();
    for (const [host, { results }] of Object.entries(report.hosts)) {
      const issued = results.filter((r) => r.action === 'issued');
      for (const result of issued) reissued.add(`${host}/${result.credential}`);
      if (previous !== null && issued.length > 0) lines.push(`credentials issued on ${host}: ${issued.map((r) => `${r.credential} ${r.kind}`).join(', ')}`);
    }
    this.applied = current;

    const spec = gatewaySpec(current, stateDir);
    if (this.gateway !== null && (spec === null || spec.fingerprint !== this.gateway.spec.fingerprint)) {
      this.gateway.gateway.close();
      lines.push(`- gateway on ${this.gateway.spec.host}`);
      this.gateway = null;
    }
    let reload = this.gateway !== null;
    if (spec !== null && this.gateway === null) {
      try {
        this.gateway = { spec, ...(await startGateway(spec, current, logger)) };
        lines.push(`+ gateway on ${spec.host} (agents register on ${spec.registration.address}:${spec.registration.port}, fronts on ${spec.fronts.join(' ')})`);
      } catch (err) {
        this.options.warn(`gateway on ${spec.host} not started: ${describe(err)}`);
      }
      reload = false;
    }

    const wanted = spec === null ? { specs: new Map<string, InstanceSpec>(), skipped: [] } : instanceSpecs(current, stateDir, spec);
    const desired = wanted.specs;
    for (const skipped of wanted.skipped) if (!this.skipped.has(skipped)) this.options.warn(`no agent for ${skipped}`);
    this.skipped = new Set(wanted.skipped);
    const handled = new Set<string>();
    const added = [...desired.values()].filter((s) => !this.instances.has(s.key));
    const removed = [...this.instances.values()].filter((r) => !desired.has(r.spec.key));
    const changed = [...desired.values()].filter((s) => {
      const running = this.instances.get(s.key);
      return running !== undefined && (running.spec.fingerprint !== s.fingerprint || reissued.has(`${s.host}/${s.settings.credential}`));
    });

    for (const instance of added) {
      handled.add(instance.key);
      const line = await this.start(instance);
      if (line !== null) lines.push(`+ ${instance.service} on ${instance.host} (${line})`);
    }
    if (reload && this.gateway !== null) {
      try {
        await this.gateway.gateway.reload(current);
      } catch (err) {
        this.options.warn(`gateway on ${this.gateway.spec.host} not reloaded, still routing the previous topology: ${describe(err)}`);
      }
    }
    await Promise.all(
      removed.map(async (running) => {
        handled.add(running.spec.key);
        this.instances.delete(running.spec.key);
        await stopInstance(running);
        lines.push(`- ${running.spec.service} on ${running.spec.host} (agent and backend stopped)`);
      }),
    );
    for (const instance of changed) {
      handled.add(instance.key);
      const running = this.instances.get(instance.key)!;
      this.instances.delete(instance.key);
      await stopInstance(running);
      const why = running.spec.fingerprint !== instance.fingerprint ? 'settings changed' : 'certificate reissued';
      const line = await this.start(instance);
      if (line !== null) lines.push(`~ ${instance.service} on ${instance.host} (restarted, ${why}: ${line})`);
    }

    if (previous === null) return;
    lines.push(...changeLines(previous, current, diffTopologies(previous, current), handled));
    lines.push(`topology written (${Object.keys(current.services).length} services, ${Object.keys(current.hosts).length} hosts)`);
    for (const line of lines) this.options.print(line);
  }

  /** Starts one instance; null (and a warning) when it cannot. */
  private async start(instance: InstanceSpec): Promise<string | null> {
    if (this.closed) return null;
    try {
      this.instances.set(instance.key, await startInstance(instance, this.options.logger, this.agentMetrics));
      const { address, port } = instance.settings.backend;
      return `agent, backend ${address}:${port}`;
    } catch (err) {
      this.options.warn(`${instance.service} on ${instance.host} not started: ${describe(err)}`);
      return null;
    }
  }

  /** Resolves once every running agent is registered with the gateway, or `deadlineMs` passed. */
  async registered(deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    while (this.gateway !== null && this.gateway.gateway.backends.size < this.instances.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  }

  /** Immediate stop of everything (Ctrl-C). */
  close(): void {
    this.closed = true;
    for (const running of this.instances.values()) {
      running.agent.close();
      running.backend.close();
    }
    this.instances.clear();
    this.gateway?.gateway.close();
    this.gateway = null;
  }
}

function describe(err: unknown): string {
  const error = err as Error & { code?: string };
  return error.code !== undefined && /_ERR_/.test(error.code) ? `${error.code}: ${error.message}` : error.message;
}
