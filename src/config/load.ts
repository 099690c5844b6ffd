/** Reading and validating both inputs together. */
import { crossCheck } from './cross-check.js';
import type { Candidates } from './cross-check.js';
import { Diagnostics } from './diagnostics.js';
import { readMeshInventory } from './mesh-inventory.js';
import { readInventory } from './read-inventory.js';
import { readServices } from './services.js';
import type { MeshInventory, ServicesConfig } from './types.js';

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
