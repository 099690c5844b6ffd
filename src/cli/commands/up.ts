import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { configSource, loadConfig } from '../../config/index.js';
import { DnsService, parseSocketAddress } from '../../dns/index.js';
import { createLogger } from '../../lib/log.js';
import { LiveTopology } from '../../topology/index.js';
import type { Command, CommandIO } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { reportDiagnostics } from '../inputs.js';
import { renderTable } from '../table.js';
import { lockStateDir } from '../state-lock.js';
import { curlExamples, digExamples } from '../up/examples.js';
import { UP_ADMIN_LISTEN, UP_METRICS_LISTEN, adminToken, startUpAdmin, startUpMetrics } from '../up/ops.js';
import { UpReconciler } from '../up/reconcile.js';

/** The package root, where the example inputs ship. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLE_SERVICES = join(PACKAGE_ROOT, 'services.yml.example');
const EXAMPLE_INVENTORY = join(PACKAGE_ROOT, 'hosts.yml.example');
/** Unprivileged, and away from 5353 (mDNS). */
const UP_DNS_LISTEN = '127.0.0.1:15353';
/** The JSON log, in the state directory: stdout stays for the summary and the change lines. */
const UP_LOG = 'up.log';

export const upCommand: Command = {
  name: 'up',
  aliases: ['start'],
  summary: 'run the whole mesh on this machine (loopback, no root) from ./services.yml + ./hosts.yml or the bundled example',
  usage: `meshplane up [options]     (also: meshplane start, npm start)

Runs the mesh on this machine without root, until Ctrl-C: compiles the
inputs into STATE_DIR/topology.json, then serves the mesh's DNS with every
host's view on one loopback address (ask as a host with dig -b <its address>),
issues every host's credentials under STATE_DIR with the real PKI, and runs
the gateway, an agent per exposed service instance and a demo backend that
reads PROXY protocol, all on the hosts' loopback addresses.

Edits to the inputs are applied while it runs (an editor's save, a rename
into place): DNS answers the new topology, topology.json is rewritten,
credentials are issued for new hosts and instances, added instances get a
demo backend and an agent, the gateway reloads its routes (connections to
the other instances stay), removed instances are drained and stopped and
changed ones restarted.
Each change prints one line on stdout ("meshplane: + web on host3 (agent,
backend 127.0.1.3:8081)", "- web on host2 ...", "~ host1 addresses ...",
then "topology written (N services, M hosts)"). An edit that does not
validate changes nothing: "meshplane: edit rejected (CODE): ...; still
running the previous topology" on stderr. JSON logs go to STATE_DIR/up.log,
not to the terminal.

Uses ./services.yml and ./hosts.yml when both exist, else the bundled
example (services.yml.example, hosts.yml.example, all on loopback
addresses; copy them to edit). Names outside the mesh are refused rather
than forwarded.

  -s, --services FILE    services.yml to use
  -i, --inventory FILE   inventory to use
      --state-dir DIR    where generated state goes (default ./.meshplane); locked
                         while up runs (DIR/lock): a second up on it stops at once
      --dns-listen ADDR:PORT  DNS address (default ${UP_DNS_LISTEN}; port 0 picks a free
                         one, printed in the "DNS for ..." line)
      --metrics ADDR:PORT  Prometheus metrics of DNS, the gateway and the process at
                         /metrics (default ${UP_METRICS_LISTEN}; port 0 picks a free one)
      --admin ADDR:PORT  the gateway's admin API and status page, loopback only, with
                         the bearer token in STATE_DIR/admin-token (default ${UP_ADMIN_LISTEN})

Each address is printed with a ready curl line, and the status page's URL.`,
  async run(args, io) {
    const { values } = parseArgs({
      args: [...args],
      options: {
        services: { type: 'string', short: 's' },
        inventory: { type: 'string', short: 'i' },
        'state-dir': { type: 'string', default: '.meshplane' },
        'dns-listen': { type: 'string', default: UP_DNS_LISTEN },
        metrics: { type: 'string', default: UP_METRICS_LISTEN },
        admin: { type: 'string', default: UP_ADMIN_LISTEN },
      },
      strict: true,
    });
    const local = { services: resolve(io.cwd, 'services.yml'), inventory: resolve(io.cwd, 'hosts.yml') };
    const useLocal = existsSync(local.services) && existsSync(local.inventory);
    const services = values.services !== undefined ? resolve(io.cwd, values.services) : useLocal ? local.services : EXAMPLE_SERVICES;
    const inventory = values.inventory !== undefined ? resolve(io.cwd, values.inventory) : useLocal ? local.inventory : EXAMPLE_INVENTORY;
    io.stdout(`meshplane: inputs ${relative(io.cwd, services) || services} and ${relative(io.cwd, inventory) || inventory}\n`);

    // The lock comes before anything is written: a second up on the same state directory changes nothing.
    const stateDir = resolve(io.cwd, values['state-dir']);
    const lock = lockStateDir(stateDir);
    if (lock.tookOver !== undefined) {
      const { pid, started } = lock.tookOver;
      io.stderr(`meshplane: took over the stale lock ${relative(io.cwd, lock.path) || lock.path} of process ${pid} (started ${started}), which is no longer running\n`);
    }
    // A signal before up serves: drop the lock, then die of the signal as before.
    const early = (signal: NodeJS.Signals): void => {
      lock.release();
      process.kill(process.pid, signal);
    };
    const dropEarly = (): void => {
      process.removeListener('SIGINT', early);
      process.removeListener('SIGTERM', early);
    };
    process.once('SIGINT', early);
    process.once('SIGTERM', early);
    try {
      return await serve(io, { services, inventory, stateDir, dnsListen: values['dns-listen'], metricsListen: values.metrics, adminListen: values.admin, dropEarly });
    } finally {
      dropEarly();
      lock.release();
    }
  },
};

/** Everything `up` does once it holds the state directory's lock. */
async function serve(io: CommandIO, options: { services: string; inventory: string; stateDir: string; dnsListen: string; metricsListen: string; adminListen: string; dropEarly: () => void }): Promise<number> {
  const { services, inventory, stateDir } = options;
  const config = loadConfig({ services, inventory });
  if (!reportDiagnostics(config, io)) return EXIT_INVALID;
  const shown = (path: string): string => relative(io.cwd, path) || path;
  const logFile = join(stateDir, UP_LOG);
  const logger = createLogger(undefined, logFile);
  // One source for everything: DNS and the reconciler see the same accepted edits, in the same order.
  const live = new LiveTopology(configSource(services, inventory), { logger: logger.child({ component: 'topology' }) });
  const topology = live.start();
  const topologyFile = join(stateDir, 'topology.json');
  const print = (line: string): void => io.stdout(`meshplane: ${line}\n`);
  const warn = (line: string): void => io.stderr(`meshplane: ${line}\n`);
  const reconciler = new UpReconciler({ stateDir, topologyFile, logger, print, warn });
  live.onError((error) => warn(`edit rejected (${rejectionCode(error)}): ${error.message}; still running the previous topology`));

  let dns: DnsService | null = null;
  let metrics: { url: string; close(): void } | null = null;
  let admin: { base: string; close(): Promise<void> } | null = null;
  const closeOps = (): void => {
    metrics?.close();
    void admin?.close();
  };
  try {
    await reconciler.apply(topology);
    print(`topology written to ${shown(topologyFile)} (domain ${topology.domain}); logs go to ${shown(logFile)}`);
    io.stdout(
      `\n${renderTable(
        ['HOST', 'IPS', 'SERVICES (* = master)'],
        Object.values(topology.hosts).map((h) => [h.name, h.ips.join(' '), h.services.map((s) => (h.masters.includes(s) ? `${s}*` : s)).join(', ')]),
      )}\n`,
    );
    const dnsRegistry = new Registry();
    dns = new DnsService({
      topology: live,
      host: null,
      listen: [parseSocketAddress(options.dnsListen)],
      upstreams: [],
      registry: dnsRegistry,
      logger: logger.child({ component: 'dns' }),
    });
    await dns.start();
    // After DNS subscribed: subscribers run in order, so DNS stops answering a removed instance before
    // its agent drains, and the reconciler's work does not hold up DNS.
    live.subscribe(async (change) => {
      try {
        await reconciler.apply(change.current);
      } catch (err) {
        warn(`edit accepted but not applied (${rejectionCode(err as Error)}): ${(err as Error).message}; retried on the next edit`);
      }
    });
    // An edit accepted while starting: applied now (apply does nothing when it is the same Topology).
    void reconciler.apply(live.current).catch((err: unknown) => warn(`edit accepted but not applied: ${(err as Error).message}`));
    const bound = dns.addresses[0]!;
    io.stdout(`\nDNS for ${topology.domain} on ${bound.address}:${bound.port} (UDP and TCP). Try:\n${indent(digExamples(topology, bound.address, bound.port))}`);
    const gateway = reconciler.gatewaySpec;
    if (gateway !== null) {
      // Give the agents a moment to register, so the printed commands work at once.
      await reconciler.registered(5000);
      io.stdout(`\nGateway, agents and a demo backend (credentials issued under ${shown(stateDir)}). Try:\n${indent(curlExamples(topology, stateDir, gateway))}`);
    }
    metrics = await startUpMetrics(options.metricsListen, () => [dnsRegistry, reconciler.gatewayRegistry, reconciler.agentRegistry]);
    const token = adminToken(stateDir);
    admin = await startUpAdmin(options.adminListen, token.token, () => reconciler.runningGateway, logger);
    const bearer = `-H "Authorization: Bearer $(cat ${token.path})"`;
    io.stdout(
      `\nMetrics (DNS, gateway, agents, process) and the gateway's admin API (bearer token in ${shown(token.path)}). Try:\n${indent([
        `curl -sS ${metrics.url}`,
        `curl -sS ${bearer} ${admin.base}/backends`,
        `curl -sS ${bearer} ${admin.base}/healthz`,
      ])}Status page (a browser): ${admin.base}/?token=${token.token}\n`,
    );
  } catch (err) {
    live.close();
    reconciler.close();
    dns?.close();
    closeOps();
    throw err;
  }
  // The handlers are in place before the line that invites Ctrl-C (a signal right after it stops cleanly),
  // and added before the early ones go: with no listener left for a moment, Node drops a signal that is
  // still waiting to be handled.
  const stopped = untilStopped(io, () => {
    live.close();
    reconciler.close();
    dns?.close();
    closeOps();
  });
  options.dropEarly();
  io.stdout('\nEdits to the inputs are applied while it runs, one line per change. Ctrl-C stops it.\n');
  return await stopped;
}

const indent = (lines: readonly string[]): string => lines.map((line) => `  ${line}\n`).join('');

/** The most specific code: a configuration error's own (CONFIG_ERR_...) rather than the wrapping TOPOLOGY_ERR_CONFIG. */
function rejectionCode(error: Error): string {
  const inner = /\b(CONFIG_ERR_[A-Z0-9_]+)/.exec(error.message)?.[1];
  return inner ?? (error as Error & { code?: string }).code ?? 'error';
}

function untilStopped(io: CommandIO, stop: () => void): Promise<number> {
  return new Promise((resolve) => {
    const onSignal = (): void => {
      stop();
      io.stdout('meshplane: stopped\n');
      resolve(EXIT_OK);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}
