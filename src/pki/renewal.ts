/**
 * The renewal rule: a certificate is kept when it matches its key, verifies
 * against the current CA, is not revoked, names exactly the SANs the Topology
 * gives it, and has more than a third of its life left. Anything else says
 * why it must be (re)issued.
 */
import type { CertKind, San } from './sans.js';
import { sanKey } from './sans.js';
import { inspectCert, trustProblem } from './inspect.js';
import { VALIDITY } from './validity.js';

interface ExistingCredential {
  readonly certPem: string | undefined;
  readonly keyPem: string | undefined;
  readonly caPem: string | undefined;
  readonly revoked?: ReadonlySet<string>;
}

/** Why the certificate needs issuing, or undefined when it is good as it is. */
export function renewalReason(existing: ExistingCredential, wanted: readonly San[], kind: CertKind, now: Date): string | undefined {
  if (existing.keyPem === undefined) return 'no private key yet';
  if (existing.certPem === undefined) return 'no certificate yet';
  if (existing.caPem === undefined) return 'no CA certificate to check the existing one against';
  let info;
  try {
    info = inspectCert(existing.certPem, 'certificate');
  } catch {
    return 'the certificate is unreadable';
  }
  const problem = trustProblem(existing.certPem, existing.caPem, now, existing.keyPem);
  if (problem !== undefined) return problem.reason;
  if (existing.revoked?.has(info.serial) === true) return `the certificate (serial ${info.serial}) is revoked`;
  if (info.kinds.length !== 1 || info.kinds[0] !== kind) return `the certificate's usage is not ${kind}`;
  const have = new Set(info.sans.map(sanKey));
  const want = new Set(wanted.map(sanKey));
  const added = [...want].filter((k) => !have.has(k));
  const removed = [...have].filter((k) => !want.has(k));
  if (added.length > 0 || removed.length > 0) {
    return `the SANs changed (${[...added.map((k) => `+${k}`), ...removed.map((k) => `-${k}`)].join(' ')})`;
  }
  const life = info.notAfter.getTime() - info.notBefore.getTime();
  const left = info.notAfter.getTime() - now.getTime();
  if (left < life * VALIDITY.renewFraction) return `less than a third of its life is left (expires ${info.notAfter.toISOString()})`;
  return undefined;
}
