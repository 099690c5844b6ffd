/**
 * Config: the front door for reading and validating the two inputs (the
 * Ansible inventory and services.yml). Everything past this point trusts
 * the values it gets.
 */
export { formatDiagnostic } from './diagnostics.js';
export { DEFAULT_INVENTORY_FILE, DEFAULT_SERVICES_FILE, loadConfig } from './load.js';
export type { LoadedConfig } from './load.js';
export { compileTopology } from './compile.js';
export { configSource } from './source.js';
