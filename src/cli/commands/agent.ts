import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { Agent, DEFAULT_BACKOFF, agentSettings, readAgentTls, resolveGateways } from '../../agent/index.js';
import { MeshplaneError, UsageError } from '../../errors.js';
import { DEFAULT_CREDENTIALS_ROOT_PATH } from '../../gateway/index.js';
import { parseSocketAddress } from '../../lib/socket-address.js';
import type { Command } from '../context.js';
import { daemon, runUntilSignalled } from '../daemon.js';
import { SOURCE_OPTIONS, daemonSource } from '../inputs.js';
import { GATEWAY_SERVICE, registrationPort } from '../../topology/index.js';

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
      --credentials-root DIR (default ${DEFAULT_CREDENTIALS_ROOT_PATH})  [MESHPLANE_CREDENTIALS_ROOT]
      --gateway ADDR:PORT    gateway to dial, repeatable   [MESHPLANE_GATEWAY, comma-separated]
                             (default: every address of gateway.<domain> from
                             the system resolver, port of the gateway service)
      --gateway-name NAME    name the gateway's certificate must carry
                             (default gateway.<domain>)
      --backend ADDR:PORT    local backend (default 127.0.0.1:<service's first port>)
      --connections N        tunnels per gateway (default 1)
      --reconnect-max SECS   cap of the reconnect backoff (default ${DEFAULT_BACKOFF.maxMs / 1000}; it
                             starts at ${DEFAULT_BACKOFF.initialMs} ms and doubles, with full jitter)
      --drain-timeout SECS   how long SIGTERM waits for open connections (default 30)
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
        'credentials-root': { type: 'string', default: env['MESHPLANE_CREDENTIALS_ROOT'] ?? DEFAULT_CREDENTIALS_ROOT_PATH },
        gateway: { type: 'string', multiple: true },
        'gateway-name': { type: 'string' },
        backend: { type: 'string' },
        connections: { type: 'string', default: '1' },
      'reconnect-max': { type: 'string', default: String(DEFAULT_BACKOFF.maxMs / 1000) },
        'drain-timeout': { type: 'string', default: '30' },
        'log-level': { type: 'string', default: env['MESHPLANE_LOG_LEVEL'] ?? 'info' },
      },
      strict: true,
    });
    const connections = Number(values.connections);
    const drainSeconds = Number(values['drain-timeout']);
    if (!Number.isInteger(connections) || connections < 1 || connections > 64) throw new UsageError(`--connections must be 1..64, not "${values.connections}"`);
    const reconnectMax = Number(values['reconnect-max']);
    if (!Number.isFinite(reconnectMax) || reconnectMax <= 0) throw new UsageError(`--reconnect-max must be seconds, not "${values['reconnect-max']}"`);
    if (!Number.isFinite(drainSeconds) || drainSeconds < 0) throw new UsageError(`--drain-timeout must be seconds, not "${values['drain-timeout']}"`);
    const gatewayTexts = values.gateway ?? env['MESHPLANE_GATEWAY']?.split(',').filter(Boolean);
    const topology = daemonSource(values, io).load();
    const settings = agentSettings(topology, {
      host: values.host ?? hostname(),
      service: values.service,
      credential: values.credential,
      credentialsRoot: values['credentials-root'],
      gateways: gatewayTexts?.map((text) => parseSocketAddress(text, registrationPort(topology))),
      gatewayService: GATEWAY_SERVICE,
      gatewayName: values['gateway-name'],
      backend: values.backend === undefined ? undefined : parseSocketAddress(values.backend),
    });
    const tls = readAgentTls(settings.files);
    const gateways = await resolveGateways(settings);
    const { logger } = daemon('agent', values['log-level']);
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
      backoff: { initialMs: Math.min(DEFAULT_BACKOFF.initialMs, reconnectMax * 1000), maxMs: reconnectMax * 1000 },
      version: packageVersion(),
      logger,
    });
    agent.start();
    io.stdout(
      `meshplane agent: ${settings.service} on ${settings.host} as ${settings.credential}, backend ${settings.backend.address}:${settings.backend.port}, gateway ${gateways.map((g) => `${g.address}:${g.port}`).join(', ')}\n`,
    );
    const signalled = runUntilSignalled(logger, { stop: (signal) => (signal === 'SIGTERM' ? agent.drain(drainSeconds * 1000) : agent.close()) });
    // The agent runs until a signal stops it. Should its dial loops ever end otherwise (a bug),
    // it says so and exits non-zero rather than leaving quietly.
    const broken = agent.done
      .then(() => (agent.stopped ? signalled : Promise.reject(new Error('every tunnel loop ended, yet no signal stopped the agent'))))
      .catch((err: unknown) => {
        if (agent.stopped) return signalled;
        const message = err instanceof Error ? err.message : String(err);
        logger.fatal({ err: message }, 'the agent stopped unexpectedly');
        agent.close();
        throw new MeshplaneError('AGENT_ERR_STOPPED', `the agent stopped unexpectedly: ${message}`, { cause: err });
      });
    return await Promise.race([signalled, broken]);
  },
};

function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}
