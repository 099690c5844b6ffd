/**
 * For tests only; not used by src/. The inventory model and the key lists
 * of both inputs, which the tests compare with Ansible's own reading and
 * with the example files, past the front door (index.ts).
 */
export { Diagnostics } from './diagnostics.js';
export type { Diagnostic } from './diagnostics.js';
export { readInventory } from './read-inventory.js';
export { groupVars, toAnsibleList } from './inventory.js';
export type { Inventory } from './inventory.js';
export { toPlain } from './located.js';
export { OVERLAY_KEYS } from './mesh-inventory.js';
export { CREDENTIAL_KEYS, ENDPOINT_KEYS, HEALTH_KEYS, OUTLIER_KEYS, PKI_POLICY_KEYS, SERVICE_KEYS } from './services.js';
