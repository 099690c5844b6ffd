import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { UsageError } from '../../errors.js';
import {
  DEFAULT_NEGATIVE_TTL,
  DEFAULT_TCP_IDLE_TIMEOUT_MS,
  DEFAULT_TCP_MAX_CONNECTIONS,
  DEFAULT_TCP_MAX_CONNECTIONS_PER_SOURCE,
  DEFAULT_TCP_QUERY_TIMEOUT_MS,
  DEFAULT_TTL,
  DEFAULT_UDP_SIZE,
  DnsCluster,
  DnsService,
  expandWildcards,
  parseSocketAddress,
  resolversFromResolvConf,
} from '../../dns/index.js';
import type { SocketAddress } from '../../dns/index.js';
import { LiveTopology } from '../../topology/index.js';
import type { Command } from '../context.js';
import { SOURCE_OPTIONS, daemonSource } from '../inputs.js';
import { daemon, runUntilSignalled, startMetrics } from '../daemon.js';
import { DNS_RENDER_USAGE, dnsRender } from './dns-render.js';

export const dnsCommand: Command = {
  name: 'dns',
  summary: 'serve the mesh zone over DNS with per-host views (what `getent hosts` resolves through), or render it for BIND 9',
  usage: `meshplane dns --topology FILE [options]
meshplane dns -s services.yml -i hosts.yml [options]

Authoritative DNS for the mesh domain. The asker's source address picks its
view: hosts that share an overlay get each other's overlay addresses, others
the public ones. Names outside the zone are forwarded. Runs until SIGTERM or
SIGINT; SIGHUP (or a change of the input files) reloads the topology, and a
broken one keeps the old one serving.

  -t, --topology FILE          compiled topology (meshplane compile) to serve
  -s, --services FILE          or compile services.yml ...
  -i, --inventory FILE         ... with this inventory, in process
      --host NAME              the host this server runs on: loopback askers
                               get its view, and it names the zone's NS
  -l, --listen ADDR[:PORT]     where to listen, repeatable; IPv6 as [::1]:53;
                               0.0.0.0 / :: mean every local address
                               (default 127.0.0.1:53)
  -f, --forward ADDR[:PORT]    upstream resolver for other names, repeatable
                               (default: the nameservers in --resolv-conf)
      --resolv-conf FILE       where the default upstreams come from
                               (default /etc/resolv.conf)
      --no-forward             answer REFUSED outside the zone
      --ttl SECONDS            TTL of answers (default ${DEFAULT_TTL})
      --negative-ttl SECONDS   SOA minimum: caching of "no such name"
                               (default ${DEFAULT_NEGATIVE_TTL})
      --udp-size BYTES         largest UDP reply to EDNS askers (default ${DEFAULT_UDP_SIZE})
      --tcp-idle-timeout SECS  close a TCP connection that sends no byte of a
                               next query this long after the last answer
                               (default ${DEFAULT_TCP_IDLE_TIMEOUT_MS / 1000})
      --tcp-query-timeout SECS a TCP query must be complete this long after
                               its first byte (a new connection: after it
                               opens), however slowly it trickles
                               (default ${DEFAULT_TCP_QUERY_TIMEOUT_MS / 1000})
      --tcp-max-connections N  TCP connections held at once; at the cap the
                               oldest waiting one is closed to make room
                               (default ${DEFAULT_TCP_MAX_CONNECTIONS})
      --tcp-max-connections-per-source N
                               TCP connections held at once from one address
                               (IPv6: one /64); past it the source's own oldest
                               waiting one is closed (default ${DEFAULT_TCP_MAX_CONNECTIONS_PER_SOURCE})
      --workers N              processes answering on the same sockets (Node
                               cluster; the primary reads the topology and
                               hands it to every worker). Default: 1 with
                               --host (a per-host stub), else the number of
                               cores (a central server)
      --metrics ADDR:PORT      serve Prometheus metrics at http://ADDR:PORT/metrics
                               (with --workers: totals over the workers)
      --no-watch               reload on SIGHUP only, not on file changes
      --log-level LEVEL        fatal|error|warn|info|debug (default info)

${DNS_RENDER_USAGE}`,
  async run(args, io) {
    if (args[0] === 'render') return dnsRender(args.slice(1), io);
    const { values } = parseArgs({
      args: [...args],
      options: {
        ...SOURCE_OPTIONS,
        host: { type: 'string' },
        listen: { type: 'string', short: 'l', multiple: true },
        forward: { type: 'string', short: 'f', multiple: true },
        'resolv-conf': { type: 'string', default: '/etc/resolv.conf' },
        'no-forward': { type: 'boolean', default: false },
        ttl: { type: 'string' },
        'negative-ttl': { type: 'string' },
        'udp-size': { type: 'string' },
        'tcp-idle-timeout': { type: 'string' },
        'tcp-query-timeout': { type: 'string' },
        'tcp-max-connections': { type: 'string' },
        'tcp-max-connections-per-source': { type: 'string' },
        workers: { type: 'string' },
        metrics: { type: 'string' },
        'no-watch': { type: 'boolean', default: false },
        'log-level': { type: 'string', default: process.env['MESHPLANE_LOG_LEVEL'] ?? 'info' },
      },
      strict: true,
    });
    if (values['no-forward'] && values.forward !== undefined) throw new UsageError('--forward and --no-forward contradict each other');
    const source = daemonSource(values, io);
    const listen = expandWildcards((values.listen ?? ['127.0.0.1:53']).map((text) => parseSocketAddress(text)));
    if (listen.length === 0) throw new UsageError('--listen matched no local address');
    const upstreams: SocketAddress[] = values['no-forward']
      ? []
      : values.forward !== undefined
        ? values.forward.map((text) => parseSocketAddress(text))
        : resolversFromResolvConf(values['resolv-conf'], listen);

    // A per-host stub answers one host's programs: one process is plenty and keeps its memory small.
    // A central server answers a fleet: every core.
    const workers = integer(values.workers, '--workers', 1, 256) ?? (values.host !== undefined ? 1 : availableParallelism());

    const { logger, registry } = daemon('dns', values['log-level']);
    const topology = new LiveTopology(source, { watch: !values['no-watch'], logger });
    const options = {
      topology,
      host: values.host ?? null,
      listen,
      upstreams,
      ttl: seconds(values.ttl, '--ttl', 0),
      negativeTtl: seconds(values['negative-ttl'], '--negative-ttl', 0),
      udpSize: integer(values['udp-size'], '--udp-size', 512, 65535),
      tcpIdleTimeoutMs: millis(values['tcp-idle-timeout'], '--tcp-idle-timeout'),
      tcpQueryTimeoutMs: millis(values['tcp-query-timeout'], '--tcp-query-timeout'),
      tcpMaxConnections: integer(values['tcp-max-connections'], '--tcp-max-connections', 1, 1_000_000),
      tcpMaxConnectionsPerSource: integer(values['tcp-max-connections-per-source'], '--tcp-max-connections-per-source', 1, 1_000_000),
      registry,
      logger,
    };
    const service = workers === 1 ? new DnsService(options) : new DnsCluster({ ...options, workers, logLevel: values['log-level'] });
    await service.start();
    const metricsServer = await startMetrics(service instanceof DnsCluster ? service.metricsRegistry(registry) : registry, values.metrics, 9153);
    const udp = service.addresses.filter((a) => a.transport === 'udp').map((a) => (a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`));
    io.stdout(`meshplane dns: serving on ${udp.join(', ')}${metricsServer === null ? '' : `; metrics at ${metricsServer.url}`}\n`);
    return await runUntilSignalled(logger, {
      reload: () => service.reload('SIGHUP'),
      stop: () => {
        service.close();
        topology.close();
        metricsServer?.close();
      },
    });
  },
};

function integer(text: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) throw new UsageError(`${flag} must be an integer from ${min} to ${max}, not "${text}"`);
  return value;
}

/** A timeout in seconds (decimals allowed, 0.1 to 3600) as milliseconds. */
function millis(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || value < 0.1 || value > 3600) throw new UsageError(`${flag} must be a number of seconds from 0.1 to 3600, not "${text}"`);
  return Math.round(value * 1000);
}

function seconds(text: string | undefined, flag: string, min: number): number | undefined {
  return integer(text, flag, min, 2_147_483_647);
}
