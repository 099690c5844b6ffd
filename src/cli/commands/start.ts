import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../config/index.js';
import { compileTopology, writeTopology } from '../../topology/index.js';
import type { Command } from '../context.js';
import { EXIT_INVALID, EXIT_OK } from '../context.js';
import { reportDiagnostics } from '../inputs.js';
import { renderTable } from '../table.js';

/** The package root, where the example inputs ship. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const EXAMPLE_SERVICES = join(PACKAGE_ROOT, 'services.yml.example');
export const EXAMPLE_INVENTORY = join(PACKAGE_ROOT, 'hosts.yml.example');

export const startCommand: Command = {
  name: 'start',
  summary: 'bring up the mesh on this machine (loopback), from ./services.yml and ./hosts.yml or the bundled example',
  usage: `meshplane start [options]

Runs the whole mesh on this machine without root: compiles the inputs into
STATE_DIR/topology.json and reports what each host runs. Uses ./services.yml
and ./hosts.yml when both exist, else the bundled example (services.yml.example,
hosts.yml.example, all on loopback addresses).

  -s, --services FILE    services.yml to use
  -i, --inventory FILE   inventory to use
      --state-dir DIR    where generated state goes (default ./.meshplane)`,
  run(args, io) {
    const { values } = parseArgs({
      args: [...args],
      options: {
        services: { type: 'string', short: 's' },
        inventory: { type: 'string', short: 'i' },
        'state-dir': { type: 'string', default: '.meshplane' },
      },
      strict: true,
    });
    const local = { services: resolve(io.cwd, 'services.yml'), inventory: resolve(io.cwd, 'hosts.yml') };
    const useLocal = existsSync(local.services) && existsSync(local.inventory);
    const services = values.services !== undefined ? resolve(io.cwd, values.services) : useLocal ? local.services : EXAMPLE_SERVICES;
    const inventory = values.inventory !== undefined ? resolve(io.cwd, values.inventory) : useLocal ? local.inventory : EXAMPLE_INVENTORY;
    io.stdout(`meshplane: inputs ${relative(io.cwd, services) || services} and ${relative(io.cwd, inventory) || inventory}\n`);

    const config = loadConfig({ services, inventory });
    if (!reportDiagnostics(config, io)) return EXIT_INVALID;
    const topology = compileTopology(config);
    const stateDir = resolve(io.cwd, values['state-dir']);
    const topologyFile = join(stateDir, 'topology.json');
    writeTopology(topologyFile, topology);
    io.stdout(`meshplane: topology written to ${relative(io.cwd, topologyFile)} (domain ${topology.domain})\n\n`);
    io.stdout(
      `${renderTable(
        ['HOST', 'IPS', 'SERVICES (* = master)'],
        Object.values(topology.hosts).map((h) => [h.name, h.ips.join(' '), h.services.map((s) => (h.masters.includes(s) ? `${s}*` : s)).join(', ')]),
      )}\n`,
    );
    return EXIT_OK;
  },
};
