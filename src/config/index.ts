/**
 * Config: the front door for reading and validating the two inputs (the
 * Ansible inventory and services.yml). Everything past this point trusts
 * the values it gets.
 */
import { crossCheck } from './cross-check.js';
import type { Candidates } from './cross-check.js';
import { Diagnostics } from './diagnostics.js';
import { readMeshInventory } from './mesh-inventory.js';
import { readInventory } from './read-inventory.js';
import { readServices } from './services.js';
import type { MeshInventory, ServicesConfig } from './types.js';

export { ConfigError, formatDiagnostic } from './diagnostics.js';
export { didYouMean } from './did-you-mean.js';
export type { BalancePolicy, GatewayEndpointConfig, GatewayMode, HostConfig, OverlayDriver, ProxyProtocol } from './types.js';

export const DEFAULT_SERVICES_FILE = 'services.yml';
export const DEFAULT_INVENTORY_FILE = 'hosts.yml';

interface ConfigPaths {
  readonly services: string;
  readonly inventory: string;
}

/** Both inputs validated together; `ok` is false when any error was found. */
export interface LoadedConfig {
  readonly ok: boolean;
  readonly diagnostics: Diagnostics;
  readonly mesh: MeshInventory;
  readonly services: ServicesConfig;
  readonly candidates: Candidates;
}

/** Reads and validates both inputs, collecting every problem found. */
export function loadConfig(paths: ConfigPaths): LoadedConfig {
  const diagnostics = new Diagnostics();
  const inventory = readInventory(paths.inventory, diagnostics);
  const mesh = readMeshInventory(inventory, diagnostics);
  const services = readServices(paths.services, diagnostics);
  const candidates = crossCheck(mesh, services, diagnostics);
  return {
    ok: !diagnostics.hasErrors(),
    diagnostics,
    mesh,
    services,
    candidates,
  };
}
