/**
 * For tests only; not used by src/. The overlay's key helpers its tests use
 * to check rendered files, past the front door (index.ts).
 */
export { normalizePublicKey, publicKeyOf } from './keys.js';
