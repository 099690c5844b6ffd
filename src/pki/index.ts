/**
 * Service PKI: the mesh CA, host-side keys and CSRs, authorized signing,
 * credential files, renewal, revocation and status. See README.md.
 */
export { initCa, loadCa } from './ca.js';
export { makeCsr } from './csr.js';
export { LeafSigner } from './sign.js';
export { signBatch, batchJobs } from './batch.js';
export { generateKeyPair } from './keys.js';
export { entitledSans, CERT_KINDS } from './sans.js';
export type { CertKind } from './sans.js';
export { credentialDirs, DEFAULT_CREDENTIALS_ROOT } from './files.js';
export { requestCertificate, installCertificate } from './host.js';
export { inspectCert } from './inspect.js';
export { revoke, readCrl, REVOCATION_REASONS } from './crl.js';
export { normalizeSerial } from './keys.js';
export type { RevocationReason } from './crl.js';
export { credentialStatus, writeStatusMetrics } from './status.js';
export { issueHost, issueMeshCredentials } from './issue.js';
export { exportPkcs12 } from './export.js';
export { VALIDITY, parseLifetime, formatDuration } from './validity.js';
export { PkiServer } from './serve.js';
export { PkiServeCluster, announceServeWorker, leaveServeCluster, serveWorkerIndex } from './serve-cluster.js';
export { renewalProof } from './renewal-proof.js';
export { p256Backend } from './p256.js';
export { RenewDaemon } from './renew-daemon.js';
