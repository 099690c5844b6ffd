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
  /** Files whose change should trigger a reload. */
  readonly files: readonly string[];
  load(): Topology;
}

export function topologyFileSource(path: string): TopologySource {
  const file = resolve(path);
  return { description: path, files: [file], load: () => readTopology(file) };
}

export function configSource(services: string, inventory: string): TopologySource {
  const files = [resolve(services), resolve(inventory)];
  return {
    description: `${services} + ${inventory}`,
    files,
    load() {
      const config = loadConfig({ services: files[0]!, inventory: files[1]! });
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
export function watchedDirectories(source: TopologySource): string[] {
  return [...new Set(source.files.map((file) => dirname(file)))];
}
