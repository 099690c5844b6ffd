/**
 * Service PKI: the mesh CA, host-side keys and CSRs, authorised signing,
 * credential files, renewal, revocation and status. See README.md.
 */
export { initCa, loadCa, caFiles, caSubject } from './ca.js';
export type { Ca, CaFiles, InitAction, InitCaOptions } from './ca.js';
export { wantedConstraints, readConstraints, outsideConstraints, dnsWithin } from './constraints.js';
export type { NameConstraintSet } from './constraints.js';
export { makeCsr, parseCsr } from './csr.js';
export type { ParsedCsr } from './csr.js';
export { authorise } from './authorize.js';
export type { Authorised } from './authorize.js';
export { LeafSigner } from './sign.js';
export type { SignOptions, SignRequest, Signed } from './sign.js';
export { signBatch, batchJobs } from './batch.js';
export type { BatchJob, BatchResult, BatchOptions } from './batch.js';
export { keySigner } from './signer.js';
export type { Signer } from './signer.js';
export { generateKeyPair } from './keys.js';
export { clientSans, serverSans, entitledSans, kindsOf, sanKey, toSan, CERT_KINDS } from './sans.js';
export type { CertKind, San } from './sans.js';
export { credentialPaths, credentialGroup, credentialDirs, DEFAULT_CREDENTIALS_ROOT, MODES, wantsSystemOwners } from './files.js';
export { requestCertificate, installCertificate } from './host.js';
export type { RequestOptions, RequestResult, InstallOptions } from './host.js';
export { renewalReason } from './renewal.js';
export { inspectCert } from './inspect.js';
export type { CertInfo } from './inspect.js';
export { revoke, writeCrl, currentCrl, readRevoked, readCrl, REVOCATION_REASONS } from './crl.js';
export { normaliseSerial } from './keys.js';
export type { RevocationReason, RevokedEntry } from './crl.js';
export { credentialStatus, statusMetrics, writeStatusMetrics } from './status.js';
export type { CredentialStatus, StatusReport } from './status.js';
export { issueHost, issueMeshCredentials } from './issue.js';
export type { IssueHostOptions, IssueResult, MeshIssueOptions, MeshIssueReport } from './issue.js';
export { VALIDITY, leafValidity, parseLifetime, formatDuration } from './validity.js';
