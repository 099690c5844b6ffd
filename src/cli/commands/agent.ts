import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { Agent, AgentMetrics, DEFAULT_BACKOFF, agentSettings, followTopology, readAgentTls, resolveGateways } from '../../agent/index.js';
import type { Address, AgentSettings, AgentSettingsInput } from '../../agent/index.js';
import { MeshplaneError, UsageError } from '../../errors.js';
import { parseSocketAddress } from '../../lib/socket-address.js';
import { watchFiles } from '../../lib/watch-files.js';
import type { FileWatch } from '../../lib/watch-files.js';
import type { Topology } from '../../topology/index.js';
import type { Command } from '../context.js';
import { daemon, runUntilSignalled, startMetrics } from '../daemon.js';
import { SOURCE_OPTIONS, daemonSource } from '../inputs.js';
import { DEFAULT_CREDENTIALS_ROOT, GATEWAY_SERVICE, LiveTopology, registrationPort } from '../../topology/index.js';

const env = process.env;

export const agentCommand: Command = {
  name: 'agent',
  summary: "run a service's agent: tunnels to the gateway with its client certificate, forwarding to the local backend",
  usage: `meshplane agent --topology FILE [options]

Keeps tunnels open to the gateway (mutual TLS with the credential's client
certificate; the gateway's certificate is checked against the mesh CA and
its name) and connects each tunnelled client to the local backend, with a
PROXY protocol header when the endpoint asks for one. Reconnects with
backoff; SIGTERM drains (no new connections, open ones finish).

Follows edits of its topology files (SIGHUP reloads at once): a changed
PROXY protocol or backend port applies to new connections without a
redial, a new credential or gateway redials, and when its service no longer
runs on this host (or has no gateway endpoint left) it drains and exits 0.

Settings come from flags, else the environment (in brackets), else the
Topology:

  -t, --topology FILE        compiled topology            [MESHPLANE_TOPOLOGY]
  -s, --services FILE / -i, --inventory FILE   or the inputs
      --host NAME            this host's inventory name    [MESHPLANE_HOST]
                             (default: the short hostname)
      --service NAME         service to serve              [MESHPLANE_SERVICE]
                             (default: the one on this host with gateway endpoints)
      --credential NAME      client credential             [MESHPLANE_CREDENTIAL]
                             (default: the service's first client credential)
      --credentials-root DIR (default ${DEFAULT_CREDENTIALS_ROOT})  [MESHPLANE_CREDENTIALS_ROOT]
      --gateway ADDR:PORT    gateway to dial, repeatable   [MESHPLANE_GATEWAY, comma-separated]
                             (default: every address of gateway.<domain> from
                             the system resolver, port of the gateway service)
      --gateway-name NAME    name the gateway's certificate must carry
                             (default gateway.<domain>)
      --backend ADDR:PORT    local backend (default 127.0.0.1:<service's first port>)
      --connections N        tunnels per gateway (default 1)
      --backend-pool N       backend connections kept ready per backend port, made
                             before they are needed and closed after 5 s unused
                             (default 0: off; see the agent README for backends
                             that dislike idle connections)
      --reconnect-max SECS   cap of the reconnect backoff (default ${DEFAULT_BACKOFF.maxMs / 1000}; it
                             starts at ${DEFAULT_BACKOFF.initialMs} ms and doubles, with full jitter)
      --drain-timeout SECS   how long SIGTERM waits for open connections (default 30)
      --metrics ADDR:PORT    serve Prometheus metrics at /metrics and a JSON status
                             (tunnels per gateway, counters) at /status  [MESHPLANE_METRICS]
                             (port default 9156; off unless given)
      --no-watch             follow the topology on SIGHUP only, not on file changes
      --log-level LEVEL      fatal|error|warn|info|debug (default info)`,
  async run(args, io) {
    const { values } = parseArgs({
      args: [...args],
      options: {
        ...SOURCE_OPTIONS,
        topology: { ...SOURCE_OPTIONS.topology, default: env['MESHPLANE_TOPOLOGY'] },
        host: { type: 'string', default: env['MESHPLANE_HOST'] ?? hostname().split('.')[0] ?? 'localhost' },
        service: { type: 'string', default: env['MESHPLANE_SERVICE'] },
        credential: { type: 'string', default: env['MESHPLANE_CREDENTIAL'] },
        'credentials-root': { type: 'string', default: env['MESHPLANE_CREDENTIALS_ROOT'] ?? DEFAULT_CREDENTIALS_ROOT },
        gateway: { type: 'string', multiple: true },
        'gateway-name': { type: 'string' },
        backend: { type: 'string' },
        connections: { type: 'string', default: '1' },
        'backend-pool': { type: 'string', default: '0' },
      'reconnect-max': { type: 'string', default: String(DEFAULT_BACKOFF.maxMs / 1000) },
        'drain-timeout': { type: 'string', default: '30' },
        metrics: { type: 'string', default: env['MESHPLANE_METRICS'] },
        'no-watch': { type: 'boolean', default: false },
        'log-level': { type: 'string', default: env['MESHPLANE_LOG_LEVEL'] ?? 'info' },
      },
      strict: true,
    });
    const connections = Number(values.connections);
    const drainSeconds = Number(values['drain-timeout']);
    if (!Number.isInteger(connections) || connections < 1 || connections > 64) throw new UsageError(`--connections must be 1..64, not "${values.connections}"`);
    const backendPool = Number(values['backend-pool']);
    if (!Number.isInteger(backendPool) || backendPool < 0 || backendPool > 64) throw new UsageError(`--backend-pool must be 0..64, not "${values['backend-pool']}"`);
    const reconnectMax = Number(values['reconnect-max']);
    if (!Number.isFinite(reconnectMax) || reconnectMax <= 0) throw new UsageError(`--reconnect-max must be seconds, not "${values['reconnect-max']}"`);
    if (!Number.isFinite(drainSeconds) || drainSeconds < 0) throw new UsageError(`--drain-timeout must be seconds, not "${values['drain-timeout']}"`);
    const gatewayTexts = values.gateway ?? env['MESHPLANE_GATEWAY']?.split(',').filter(Boolean);
    const { logger, registry } = daemon('agent', values['log-level']);
    // One set of counters for the process: a redial replaces the Agent, not its history.
    const agentMetrics = new AgentMetrics(registry);
    const live = new LiveTopology(daemonSource(values, io), { watch: !values['no-watch'], logger });
    const topology = live.start();
    const input: AgentSettingsInput = {
      host: values.host ?? hostname(),
      service: values.service,
      credential: values.credential,
      credentialsRoot: values['credentials-root'],
      gateways: gatewayTexts?.map((text) => parseSocketAddress(text, registrationPort(topology))),
      gatewayService: GATEWAY_SERVICE,
      gatewayName: values['gateway-name'],
      backend: values.backend === undefined ? undefined : parseSocketAddress(values.backend),
    };
    const drainMs = drainSeconds * 1000;
    const version = packageVersion();
    const makeAgent = async (settings: AgentSettings): Promise<{ agent: Agent; gateways: Address[] }> => {
      const tls = readAgentTls(settings.files);
      const gateways = await resolveGateways(settings);
      const agent = new Agent({
        credential: settings.credential,
        service: settings.service,
        host: settings.host,
        tls,
        gateways,
        gatewayName: settings.gatewayName,
        backend: settings.backend,
        backendPorts: settings.backendPorts,
        proxyProtocol: settings.proxyProtocol,
        connections,
        backendPool,
        backoff: { initialMs: Math.min(DEFAULT_BACKOFF.initialMs, reconnectMax * 1000), maxMs: reconnectMax * 1000 },
        version,
        logger,
        metrics: agentMetrics,
      });
      return { agent, gateways };
    };

    let settings: AgentSettings;
    let first: { agent: Agent; gateways: Address[] };
    try {
      settings = agentSettings(topology, input);
      first = await makeAgent(settings);
    } catch (err) {
      live.close();
      throw err;
    }
    let agent = first.agent;
    agentMetrics.watch(() => agent.tunnels());
    agent.start();
    let metrics: Awaited<ReturnType<typeof startMetrics>>;
    try {
      metrics = await startMetrics(registry, values.metrics, 9156, () => agentStatus(settings, agent, agentMetrics));
    } catch (err) {
      agent.close();
      live.close();
      throw err;
    }
    io.stdout(
      `meshplane agent: ${settings.service} on ${settings.host} as ${settings.credential}, backend ${settings.backend.address}:${settings.backend.port}, gateway ${first.gateways.map((g) => `${g.address}:${g.port}`).join(', ')}${metrics === null ? '' : `; metrics at ${metrics.url} ; status at ${metrics.base}/status`}\n`,
    );

    let fail!: (err: unknown) => void;
    const broken = new Promise<never>((_, reject) => (fail = reject));
    // The agent runs until a signal (or the topology) stops it. Should its dial loops ever end
    // otherwise (a bug), it says so and exits non-zero rather than leaving quietly.
    const watchLoops = (watched: Agent): void => {
      watched.done
        .then(() => {
          if (!watched.stopped) throw new Error('every tunnel loop ended, yet no signal stopped the agent');
        })
        .catch((err: unknown) => {
          if (watched.stopped) return;
          const message = err instanceof Error ? err.message : String(err);
          logger.fatal({ err: message }, 'the agent stopped unexpectedly');
          watched.close();
          live.close();
          fail(new MeshplaneError('AGENT_ERR_STOPPED', `the agent stopped unexpectedly: ${message}`, { cause: err }));
        });
    };
    watchLoops(agent);

    let retire!: (code: number) => void;
    const retired = new Promise<number>((resolve) => (retire = resolve));
    const follow = async (current: Topology, reason: string): Promise<void> => {
      if (agent.stopped) return;
      const step = followTopology(settings, current, input);
      switch (step.kind) {
        case 'same':
          return;
        case 'invalid':
          logger.error({ err: step.error, code: step.error.code, reason }, 'the new topology gives this agent no usable settings; still running with the previous ones');
          return;
        case 'update':
          settings = step.settings;
          agent.update(settings);
          logger.info({ reason, backend: `${settings.backend.address}:${settings.backend.port}`, backend_ports: settings.backendPorts, proxy_protocol: Object.fromEntries(settings.proxyProtocol) }, 'settings updated from the topology; tunnels kept');
          return;
        case 'redial': {
          let next: { agent: Agent; gateways: Address[] };
          try {
            next = await makeAgent(step.settings);
          } catch (err) {
            logger.error({ err, code: (err as { code?: string }).code, reason }, 'cannot redial with the new settings; still running with the previous ones');
            return;
          }
          const old = agent;
          settings = step.settings;
          agent = next.agent;
          watchLoops(agent);
          agent.start();
          logger.info({ reason, credential: settings.credential, gateway: next.gateways.map((g) => `${g.address}:${g.port}`) }, 'redialling with new settings from the topology');
          // The old tunnels finish what they carry; new connections come on the new ones.
          void old.drain(drainMs);
          return;
        }
        case 'retire':
          // systemd (or `meshplane up`) decides what runs where: this agent is not wanted here now.
          logger.warn({ reason, why: step.why, service: settings.service, host: settings.host }, 'service no longer on this host; draining and exiting');
          live.close();
          await agent.drain(drainMs);
          metrics?.close();
          retire(0);
          return;
      }
    };
    live.subscribe((change) => follow(change.current, change.reason));
    // A renewed certificate is picked up when its files change (installs rename them into place):
    // new dials present it, tunnels up now stay until they end. Re-armed when the settings change.
    let credentialWatch: FileWatch | null = null;
    let watchedFiles = '';
    const watchCredential = (): void => {
      const files = [settings.files.ca, settings.files.cert, settings.files.key];
      if (values['no-watch'] || files.join('\n') === watchedFiles) return;
      credentialWatch?.close();
      watchedFiles = files.join('\n');
      credentialWatch = watchFiles(files, () => {
        try {
          agent.setTls(readAgentTls(settings.files));
          logger.info({ credential: settings.credential, cert: settings.files.cert }, 'credential files changed; new tunnels use the new certificate');
        } catch (err) {
          logger.error({ err, code: (err as { code?: string }).code }, 'cannot read the changed credential files; new tunnels keep the previous certificate');
        }
      });
    };
    watchCredential();
    live.subscribe(() => watchCredential());
    // An edit accepted while the agent was being set up: the subscriber came too late for it.
    if (live.current !== topology) await follow(live.current, 'changed during start');

    const signalled = runUntilSignalled(logger, {
      reload: () => live.reload('SIGHUP'),
      stop: async (signal) => {
        credentialWatch?.close();
        live.close();
        await (signal === 'SIGTERM' ? agent.drain(drainMs) : agent.close());
        metrics?.close();
      },
    });
    return await Promise.race([signalled, broken, retired]);
  },
};

/** What /status shows: who this agent is, each tunnel's state and since when, the counters. */
function agentStatus(settings: AgentSettings, agent: Agent, metrics: AgentMetrics): unknown {
  const gateways = new Map<string, { gateway: string; tunnels: { slot: number; state: string; since: string }[] }>();
  for (const t of agent.tunnels()) {
    let entry = gateways.get(t.gateway);
    if (entry === undefined) gateways.set(t.gateway, (entry = { gateway: t.gateway, tunnels: [] }));
    entry.tunnels.push({ slot: t.slot, state: t.state, since: t.since.toISOString() });
  }
  return {
    service: settings.service,
    host: settings.host,
    credential: settings.credential,
    backend: `${settings.backend.address}:${settings.backend.port}`,
    tunnels_up: agent.connected,
    gateways: [...gateways.values()],
    counters: metrics.counters(),
  };
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}
