/**
 * For tests only; not used by src/. The PKI's parts its tests check one by
 * one (names, constraints, validity, the X.509 library), past the front
 * door (index.ts).
 */
export type { Ca } from './ca.js';
export { wantedConstraints } from './constraints.js';
export { clientSans, serverSans, kindsOf, sanKey, toSan } from './sans.js';
export type { San } from './sans.js';
export { statusMetrics } from './status.js';
export { leafValidity } from './validity.js';
export { loadNativeP256, verifyWithNodeCrypto } from './p256.js';
export { IssuerCheck, readCertificate } from './presented.js';
export { peculiar } from './x509.js';
