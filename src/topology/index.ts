/**
 * Topology: the compiled, immutable description of the mesh. Build it with
 * `compileTopology(loadConfig(...))`, or read a compiled one with
 * `readTopology(file)`; every daemon starts from that JSON alone.
 */
export { compileTopology } from './compile.js';
export { readTopology, serializeTopology, writeTopology } from './io.js';
export { toAnsibleInventory } from './ansible.js';
export { hostView } from './host-view.js';
export { configSource, topologyFileSource, watchedDirectories } from './source.js';
export type { TopologySource } from './source.js';
export { addressesSeenBy, viewKey, hostsByView } from './views.js';
export { schedule, DEFAULT_LOAD_FACTOR } from './scheduler.js';
export type * from './types.js';
