/**
 * Where a daemon's Topology comes from: a compiled topology.json, or
 * services.yml + inventory compiled in process. Either way `load()` returns
 * a checked Topology or throws a MeshplaneError saying what is wrong; the
 * caller decides whether that stops a start or only fails a reload.
 */
import { dirname, resolve } from 'node:path';
import { MeshplaneError } from '../errors.js';
import { formatDiagnostic, loadConfig } from '../config/index.js';
import { compileTopology } from './compile.js';
import { readTopology } from './io.js';
import type { Topology } from './types.js';

export interface TopologySource {
  /** For logs: "topology.json" or "services.yml + hosts.yml". */
  readonly description: string;
  /** What to watch for changes, as of the last load (includes can add files). */
  watchList(): WatchList;
  load(): Topology;
}

interface WatchList {
  /** Files whose change should trigger a reload. */
  readonly files: readonly string[];
  /** Directories where any change should (wildcard includes: a new matching file). */
  readonly directories: readonly string[];
}

export function topologyFileSource(path: string): TopologySource {
  const file = resolve(path);
  const watch: WatchList = { files: [file], directories: [] };
  return { description: path, watchList: () => watch, load: () => readTopology(file) };
}

export function configSource(services: string, inventory: string): TopologySource {
  const servicesFile = resolve(services);
  const inventoryFile = resolve(inventory);
  let watch: WatchList = { files: [servicesFile, inventoryFile], directories: [] };
  return {
    description: `${services} + ${inventory}`,
    watchList: () => watch,
    load() {
      const config = loadConfig({ services: servicesFile, inventory: inventoryFile });
      // Even when the load fails: fixing a broken include is a change to react to.
      watch = { files: [...new Set([servicesFile, inventoryFile, ...config.services.watch.files.map((f) => resolve(f))])], directories: config.services.watch.directories.map((d) => resolve(d)) };
      const errors = config.diagnostics.errors;
      if (errors.length > 0) {
        const shown = errors.slice(0, 5).map(formatDiagnostic).join('; ');
        throw new MeshplaneError('TOPOLOGY_ERR_CONFIG', `${errors.length} error(s) in ${services} / ${inventory}: ${shown}${errors.length > 5 ? '; ...' : ''}`);
      }
      return compileTopology(config);
    },
  };
}

/** Directories to watch: renames into them (atomic writes) are how files change. */
export function watchedDirectories(watch: WatchList): string[] {
  return [...new Set([...watch.files.map((file) => dirname(file)), ...watch.directories])];
}
