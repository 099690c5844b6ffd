/** Options shared by every command that reads services.yml and the inventory. */
import { resolve } from 'node:path';
import type { ParseArgsConfig } from 'node:util';
import { DEFAULT_INVENTORY_FILE, DEFAULT_SERVICES_FILE, compileTopology, configSource, formatDiagnostic, loadConfig } from '../config/index.js';
import type { LoadedConfig } from '../config/index.js';
import { UsageError } from '../errors.js';
import { readTopology, topologyFileSource } from '../topology/index.js';
import type { Topology, TopologySource } from '../topology/index.js';
import type { CommandIO } from './context.js';

export const INPUT_OPTIONS = {
  services: { type: 'string', short: 's', default: DEFAULT_SERVICES_FILE },
  inventory: { type: 'string', short: 'i', default: DEFAULT_INVENTORY_FILE },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export const INPUT_USAGE = `  -s, --services FILE    services.yml to read (default ./${DEFAULT_SERVICES_FILE})
  -i, --inventory FILE   Ansible YAML inventory to read (default ./${DEFAULT_INVENTORY_FILE})`;

export function loadInputs(values: { services?: string; inventory?: string }, io: CommandIO): LoadedConfig {
  return loadConfig({
    services: relativeTo(io.cwd, values.services ?? DEFAULT_SERVICES_FILE),
    inventory: relativeTo(io.cwd, values.inventory ?? DEFAULT_INVENTORY_FILE),
  });
}

function relativeTo(cwd: string, path: string): string {
  return cwd === process.cwd() ? path : resolve(cwd, path);
}

/** Prints warnings, and errors when there are any; returns whether the config is usable. */
export function reportDiagnostics(config: LoadedConfig, io: CommandIO): boolean {
  for (const diagnostic of config.diagnostics.sorted()) io.stderr(`${formatDiagnostic(diagnostic)}\n`);
  const errors = config.diagnostics.errors.length;
  if (errors > 0) io.stderr(`${errors} error(s) found; nothing was compiled\n`);
  return errors === 0;
}

/** A Topology from `--topology FILE`, or compiled from the inputs. */
export function topologyFrom(values: { topology?: string; services?: string; inventory?: string }, io: CommandIO): Topology | undefined {
  if (values.topology !== undefined) return readTopology(relativeTo(io.cwd, values.topology));
  const config = loadInputs(values, io);
  if (!reportDiagnostics(config, io)) return undefined;
  return compileTopology(config);
}

/** Options of every daemon for where its Topology comes from. */
export const SOURCE_OPTIONS = {
  topology: { type: 'string', short: 't' },
  services: { type: 'string', short: 's' },
  inventory: { type: 'string', short: 'i' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

/** For daemons: where the Topology comes from, read again on every reload. */
export function daemonSource(values: { topology?: string; services?: string; inventory?: string }, io: CommandIO): TopologySource {
  if (values.topology !== undefined && (values.services !== undefined || values.inventory !== undefined)) {
    throw new UsageError('give --topology, or --services and --inventory, not both');
  }
  if (values.topology !== undefined) return topologyFileSource(relativeTo(io.cwd, values.topology));
  return configSource(relativeTo(io.cwd, values.services ?? DEFAULT_SERVICES_FILE), relativeTo(io.cwd, values.inventory ?? DEFAULT_INVENTORY_FILE));
}
