/**
 * Workload identity: the URI SAN every mesh certificate carries, naming the
 * host that holds the credential as well as the credential. The PKI puts it
 * in CSRs and checks it when signing; the gateway binds registrations to it.
 * One home for the format, so that maker and checker cannot drift apart.
 *
 *   spiffe://<domain>/host/<host>/credential/<name>
 *
 * SPIFFE-shaped (trust domain = the mesh domain) so that SPIFFE-aware peers
 * read it; nothing here depends on a SPIFFE implementation.
 */

interface HasDomain {
  readonly domain: string;
}

interface WorkloadIdentity {
  readonly domain: string;
  readonly host: string;
  readonly credential: string;
}

const SCHEME = 'spiffe://';
/** Host and credential names are inventory names: no `/`, no spaces, no URI specials. */
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const DOMAIN = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

/** The identity URI of `credential` held by `host` in `mesh`. */
export function workloadId(mesh: HasDomain, host: string, credential: string): string {
  return `${SCHEME}${mesh.domain.toLowerCase()}/host/${host}/credential/${credential}`;
}

/** The parts of an identity URI; undefined when `uri` is not one (another scheme, shape or trailing parts). */
export function parseWorkloadId(uri: string): WorkloadIdentity | undefined {
  if (!uri.startsWith(SCHEME)) return undefined;
  const parts = uri.slice(SCHEME.length).split('/');
  if (parts.length !== 5) return undefined;
  const [domain, hostWord, host, credentialWord, credential] = parts as [string, string, string, string, string];
  if (hostWord !== 'host' || credentialWord !== 'credential') return undefined;
  if (!DOMAIN.test(domain) || !SEGMENT.test(host) || !SEGMENT.test(credential)) return undefined;
  return { domain, host, credential };
}
