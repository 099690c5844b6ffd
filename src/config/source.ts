/**
 * The Topology source a daemon uses with `--services`/`--inventory`: the
 * inputs compiled in process on every load, watching every file an include
 * names (a fixed include is a change too).
 */
import { resolve } from 'node:path';
import { MeshplaneError } from '../errors.js';
import type { TopologySource, WatchList } from '../topology/index.js';
import { compileTopology } from './compile.js';
import { formatDiagnostic } from './diagnostics.js';
import { loadConfig } from './load.js';

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
