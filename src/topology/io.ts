/** Reading and writing the Topology as JSON, the form every daemon starts from. */
import { readFileSync } from 'node:fs';
import { MeshplaneError } from '../errors.js';
import { writeFileAtomic } from '../lib/atomic-write.js';
import { TOPOLOGY_FORMAT_VERSION } from './types.js';
import { validateTopology } from './validate.js';
import type { Topology } from './types.js';

export function serializeTopology(topology: Topology): string {
  return `${JSON.stringify(topology, null, 2)}\n`;
}

export function writeTopology(path: string, topology: Topology): void {
  writeFileAtomic(path, serializeTopology(topology));
}

/** Parses a Topology and checks its whole contract (validate.ts); the result is deeply frozen. */
export function parseTopology(text: string, source: string): Topology {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new MeshplaneError('TOPOLOGY_ERR_FORMAT', `${source}: not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || !('format_version' in value)) {
    throw new MeshplaneError('TOPOLOGY_ERR_FORMAT', `${source}: not a meshplane topology (no format_version); produce one with "meshplane compile"`);
  }
  const version = value.format_version;
  if (version !== TOPOLOGY_FORMAT_VERSION) {
    throw new MeshplaneError('TOPOLOGY_ERR_VERSION', `${source}: topology format_version ${String(version)} is not supported (this meshplane reads ${TOPOLOGY_FORMAT_VERSION}); recompile it with this version`);
  }
  const { problems, truncated } = validateTopology(value);
  if (problems.length > 0) {
    // A shape problem is the more basic one: name the file's fault by it.
    const code = problems.some((problem) => problem.code === 'TOPOLOGY_ERR_FORMAT') ? 'TOPOLOGY_ERR_FORMAT' : 'TOPOLOGY_ERR_INCONSISTENT';
    const lines = problems.map((problem) => `${source}: ${problem.path}: ${problem.message}`);
    if (truncated) lines.push(`${source}: ... more problems after these ${problems.length}`);
    throw new MeshplaneError(code, `${lines.join('\n')}\n(the topology was not written by this "meshplane compile", or was edited; compile it again)`);
  }
  return deepFreeze(value as Topology);
}

export function readTopology(path: string): Topology {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new MeshplaneError('TOPOLOGY_ERR_READ', `cannot read topology ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseTopology(text, path);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
