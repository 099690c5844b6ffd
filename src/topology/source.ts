/**
 * Where a daemon's Topology comes from: a compiled topology.json (here), or
 * services.yml + inventory compiled in process (`configSource` in src/config,
 * which produces Topologies). Either way `load()` returns
 * a checked Topology or throws a MeshplaneError saying what is wrong; the
 * caller decides whether that stops a start or only fails a reload.
 */
import { dirname, resolve } from 'node:path';
import { readTopology } from './io.js';
import type { Topology } from './types.js';

export interface TopologySource {
  /** For logs: "topology.json" or "services.yml + hosts.yml". */
  readonly description: string;
  /** What to watch for changes, as of the last load (includes can add files). */
  watchList(): WatchList;
  load(): Topology;
}

export interface WatchList {
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

/** Directories to watch: renames into them (atomic writes) are how files change. */
export function watchedDirectories(watch: WatchList): string[] {
  return [...new Set([...watch.files.map((file) => dirname(file)), ...watch.directories])];
}
