import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { loadConfig } from '../../config/index.js';
import { DnsService, configSource, parseSocketAddress } from '../../dns/index.js';
import { createLogger } from '../../lib/log.js';
import { LiveTopology, compileTopology, writeTopology } from '../../topology/index.js';
import type { Topology } from '../../topology/index.js';
import type { Command, CommandIO } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { reportDiagnostics } from '../inputs.js';
import { renderTable } from '../table.js';
import { startLocalGateway } from '../local-mesh.js';
import { lockStateDir } from '../state-lock.js';
import type { LocalMesh } from '../local-mesh.js';

/** The package root, where the example inputs ship. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const EXAMPLE_SERVICES = join(PACKAGE_ROOT, 'services.yml.example');
export const EXAMPLE_INVENTORY = join(PACKAGE_ROOT, 'hosts.yml.example');
/** Unprivileged, and away from 5353 (mDNS). */
export const UP_DNS_LISTEN = '127.0.0.1:15353';

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
Edits to the inputs are picked up while it runs. Uses ./services.yml and
./hosts.yml when both exist, else the bundled example (services.yml.example,
hosts.yml.example, all on loopback addresses). Names outside the mesh are
refused rather than forwarded.

  -s, --services FILE    services.yml to use
  -i, --inventory FILE   inventory to use
      --state-dir DIR    where generated state goes (default ./.meshplane); locked
                         while up runs (DIR/lock): a second up on it stops at once
      --dns-listen ADDR:PORT  DNS address (default ${UP_DNS_LISTEN})`,
  async run(args, io) {
    const { values } = parseArgs({
      args: [...args],
      options: {
        services: { type: 'string', short: 's' },
        inventory: { type: 'string', short: 'i' },
        'state-dir': { type: 'string', default: '.meshplane' },
        'dns-listen': { type: 'string', default: UP_DNS_LISTEN },
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
      return await serve(io, { services, inventory, stateDir, dnsListen: values['dns-listen'], dropEarly });
    } finally {
      dropEarly();
      lock.release();
    }
  },
};

/** Everything `up` does once it holds the state directory's lock. */
async function serve(io: CommandIO, options: { services: string; inventory: string; stateDir: string; dnsListen: string; dropEarly: () => void }): Promise<number> {
  const { services, inventory, stateDir } = options;
  const config = loadConfig({ services, inventory });
  if (!reportDiagnostics(config, io)) return EXIT_INVALID;
  const topology = compileTopology(config);
  const topologyFile = join(stateDir, 'topology.json');
  writeTopology(topologyFile, topology);
  io.stdout(`meshplane: topology written to ${relative(io.cwd, topologyFile)} (domain ${topology.domain})\n\n`);
  io.stdout(
    `${renderTable(
      ['HOST', 'IPS', 'SERVICES (* = master)'],
      Object.values(topology.hosts).map((h) => [h.name, h.ips.join(' '), h.services.map((s) => (h.masters.includes(s) ? `${s}*` : s)).join(', ')]),
    )}\n`,
  );

  const logger = createLogger();
  const registry = new Registry();
  const dns = new DnsService({
    topology: new LiveTopology(configSource(services, inventory), { logger: logger.child({ component: 'dns' }) }),
    host: null,
    listen: [parseSocketAddress(options.dnsListen)],
    upstreams: [],
    registry,
    logger: logger.child({ component: 'dns' }),
  });
  await dns.start();
  const bound = dns.addresses[0]!;
  io.stdout(`\nDNS for ${topology.domain} on ${bound.address}:${bound.port} (UDP and TCP). Try:\n${digExamples(topology, bound.address, bound.port)}`);

  let gateway: LocalMesh | null = null;
  try {
    gateway = await startLocalGateway(topology, stateDir, registry, logger);
  } catch (err) {
    dns.close();
    throw err;
  }
  if (gateway !== null) {
    io.stdout(`\nGateway, agents and a demo backend (credentials issued under ${relative(io.cwd, stateDir) || stateDir}). Try:\n${gateway.examples.map((line) => `  ${line}`).join('\n')}\n`);
  }
  // The handlers are in place before the line that invites Ctrl-C (a signal right after it stops cleanly),
  // and added before the early ones go: with no listener left for a moment, Node drops a signal that is
  // still waiting to be handled.
  const stopped = untilStopped(io, () => {
    gateway?.close();
    dns.close();
  });
  options.dropEarly();
  io.stdout('\nCtrl-C stops it.\n');
  return await stopped;
}

/** A few dig commands that show views: the same name asked as different hosts. */
function digExamples(topology: Topology, address: string, port: number): string {
  const service = Object.values(topology.services).find((s) => s.instances.length > 1) ?? Object.values(topology.services)[0];
  const hosts = Object.values(topology.hosts);
  const onOverlay = hosts.find((h) => Object.keys(h.overlays).length > 0);
  const offOverlay = hosts.find((h) => Object.keys(h.overlays).length === 0);
  const lines: string[] = [];
  const dig = (asker: (typeof hosts)[number] | undefined, name: string, note: string): void => {
    if (asker === undefined) return;
    const source = asker.ips.find((ip) => !ip.includes(':'));
    if (source === undefined) return;
    lines.push(`  dig @${address} -p ${port} -b ${source} +short ${name}   # as ${asker.name}: ${note}`);
  };
  if (service !== undefined) {
    dig(onOverlay, `${service.name}.${topology.domain}`, 'overlay addresses where it shares an overlay');
    dig(offOverlay, `${service.name}.${topology.domain}`, 'on no overlay: public addresses');
    if (service.master !== null) dig(offOverlay ?? onOverlay, `${service.name}-master.${topology.domain}`, 'the master');
  }
  if (hosts[0] !== undefined) dig(offOverlay ?? onOverlay, `${hosts[0].name}.${topology.domain}`, 'a host');
  return `${lines.join('\n')}\n`;
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
