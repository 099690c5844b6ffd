/**
 * The agent's Prometheus metrics and the counters its /status shows, on a
 * registry the caller owns. One AgentMetrics outlives the Agent objects a
 * redial replaces, so counters never restart within a process; the tunnel
 * gauge reads whichever agent is current at scrape time.
 * Every name is listed in src/agent/README.md.
 */
import type { Socket } from 'node:net';
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';

export type TunnelState = 'connecting' | 'up' | 'down';

/** One (gateway, slot) dial loop as /status shows it. */
export interface TunnelStatus {
  readonly gateway: string;
  readonly slot: number;
  readonly state: TunnelState;
  /** When it entered this state. */
  readonly since: Date;
}

interface AgentCounters {
  readonly reconnects: number;
  readonly streams_opened: number;
  readonly streams_active: number;
  readonly backend_connect_errors: number;
  readonly bytes_to_backend: number;
  readonly bytes_from_backend: number;
  readonly health_checks: { readonly pass: number; readonly fail: number };
}

export class AgentMetrics {
  private tunnels: () => readonly TunnelStatus[] = () => [];
  private reconnectCount = 0;
  private opened = 0;
  private connectErrors = 0;
  private readonly healthCounts = { pass: 0, fail: 0 };
  /** Bytes of backend connections already closed; open ones are read live at scrape time. */
  private closedBytes = { to: 0, from: 0 };
  private readonly open = new Set<Socket>();
  private readonly reconnects: Counter<'gateway'>;
  private readonly healthChecks: Counter<'result'>;

  constructor(registry: Registry) {
    const registers = [registry];
    // The collect() callbacks get the metric as `this`; they read the counts through these.
    const self = { tunnels: () => this.tunnels(), opened: () => this.opened, active: () => this.active(), connectErrors: () => this.connectErrors, bytes: () => this.bytes() };
    new Gauge({
      name: 'meshplane_agent_tunnels_up',
      help: 'Tunnels registered with each gateway right now (of --connections per gateway)',
      labelNames: ['gateway'],
      registers,
      collect() {
        this.reset();
        for (const t of self.tunnels()) this.inc({ gateway: t.gateway }, t.state === 'up' ? 1 : 0);
      },
    });
    this.reconnects = new Counter({ name: 'meshplane_agent_reconnects_total', help: 'Dials to a gateway after a tunnel closed or a dial failed', labelNames: ['gateway'], registers });
    new Counter({
      name: 'meshplane_agent_streams_opened_total',
      help: 'Tunnelled client connections the gateway opened to this backend',
      registers,
      collect() {
        this.reset();
        this.inc(self.opened());
      },
    });
    new Gauge({
      name: 'meshplane_agent_streams_active',
      help: 'Tunnelled client connections open right now',
      registers,
      collect() {
        this.set(self.active());
      },
    });
    new Counter({
      name: 'meshplane_agent_backend_connect_errors_total',
      help: 'Tunnelled connections the local backend refused or could not take',
      registers,
      collect() {
        this.reset();
        this.inc(self.connectErrors());
      },
    });
    new Counter({
      name: 'meshplane_agent_backend_bytes_total',
      help: 'Bytes carried between the tunnels and the local backend, by direction (to_backend, from_backend)',
      labelNames: ['direction'],
      registers,
      collect() {
        this.reset();
        const bytes = self.bytes();
        this.inc({ direction: 'to_backend' }, bytes.to);
        this.inc({ direction: 'from_backend' }, bytes.from);
      },
    });
    this.healthChecks = new Counter({ name: 'meshplane_agent_health_checks_total', help: "Gateway health checks answered, by result (pass: the backend answered 2xx or 3xx; fail: anything else)", labelNames: ['result'], registers });
    for (const result of ['pass', 'fail']) this.healthChecks.inc({ result }, 0);
  }

  /** Where the tunnel states come from: the agent running now. */
  watch(tunnels: () => readonly TunnelStatus[]): void {
    this.tunnels = tunnels;
  }

  /** A dial loop started: its reconnect counter starts at 0 (increase() misses a series' first step). */
  dialling(gateway: string): void {
    this.reconnects.inc({ gateway }, 0);
  }

  reconnect(gateway: string): void {
    this.reconnectCount++;
    this.reconnects.inc({ gateway });
  }

  /** A tunnelled connection reached the backend: counted, and its bytes followed until it closes. */
  streamOpened(): void {
    this.opened++;
  }

  backendConnected(socket: Socket): void {
    this.open.add(socket);
    socket.once('close', () => {
      this.open.delete(socket);
      this.closedBytes = { to: this.closedBytes.to + socket.bytesWritten, from: this.closedBytes.from + socket.bytesRead };
    });
  }

  backendConnectError(): void {
    this.connectErrors++;
  }

  healthAnswered(status: number): void {
    const result = status >= 200 && status < 400 ? 'pass' : 'fail';
    this.healthCounts[result]++;
    this.healthChecks.inc({ result });
  }

  counters(): AgentCounters {
    const bytes = this.bytes();
    return {
      reconnects: this.reconnectCount,
      streams_opened: this.opened,
      streams_active: this.active(),
      backend_connect_errors: this.connectErrors,
      bytes_to_backend: bytes.to,
      bytes_from_backend: bytes.from,
      health_checks: { ...this.healthCounts },
    };
  }

  private active(): number {
    return this.open.size;
  }

  private bytes(): { to: number; from: number } {
    let { to, from } = this.closedBytes;
    for (const socket of this.open) {
      to += socket.bytesWritten;
      from += socket.bytesRead;
    }
    return { to, from };
  }
}
