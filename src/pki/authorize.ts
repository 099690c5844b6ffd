/**
 * Authorization of a CSR against the Topology: the first stage of signing.
 * A CSR from `host` is signed only when its key is ECDSA P-256 and proves
 * possession (valid signature), its CN names a credential that host needs,
 * the certificate kind is enabled for that credential, and every requested
 * SAN is one the host is entitled to; the only URI SAN allowed is the host's
 * own workload identity, which every certificate gets. Everything else is refused with a code
 * and the reason.
 */
import { didYouMean } from '../lib/did-you-mean.js';
import { MeshplaneError } from '../errors.js';
import type { Topology, TopologyCredential, TopologyHost } from '../topology/index.js';
import { parseWorkloadId } from '../topology/index.js';
import type { ParsedCsr } from './csr.js';
import type { CertKind, San } from './sans.js';
import { entitledSans, identitySan, sanKey } from './sans.js';

export interface Authorized {
  readonly credential: TopologyCredential;
  readonly host: TopologyHost;
  readonly kind: CertKind;
  /** The SANs to certify: those requested, or all entitled ones when the CSR asks for none. */
  readonly sans: readonly San[];
  readonly publicKeySpki: Uint8Array;
}

interface AuthorizeInput {
  readonly csr: ParsedCsr;
  /** The host the CSR came from (the controller knows it: Ansible fetched the CSR from there). */
  readonly host: string;
  /** Kind when the CSR names none (CSRs made by other tools). */
  readonly kind?: CertKind;
  /** Where the CSR came from, for messages. */
  readonly source: string;
}

/** A requested URI for messages: whose identity it is, when it is one. */
function describeUri(san: San): string {
  const id = parseWorkloadId(san.value);
  return id === undefined ? `${san.value} (not a mesh identity)` : `${san.value} (host ${id.host}'s, credential ${id.credential})`;
}

function refuse(code: string, source: string, reason: string): MeshplaneError {
  return new MeshplaneError(code, `refusing ${source}: ${reason}`);
}

/**
 * The SANs a host is entitled to for a credential and kind, kept per
 * Topology (a compiled Topology never changes; a new one is a new object):
 * deriving them (names, addresses parsed and canonicalized) was 5% of an
 * online renewal's CPU.
 */
const entitlements = new WeakMap<Topology, Map<string, { readonly entitled: readonly San[]; readonly allowed: ReadonlySet<string> }>>();

function entitlement(topology: Topology, credential: TopologyCredential, host: TopologyHost, kind: CertKind): { readonly entitled: readonly San[]; readonly allowed: ReadonlySet<string> } {
  let perTopology = entitlements.get(topology);
  if (perTopology === undefined) {
    perTopology = new Map();
    entitlements.set(topology, perTopology);
  }
  const key = `${host.name}\0${credential.name}\0${kind}`;
  let found = perTopology.get(key);
  if (found === undefined) {
    const entitled = entitledSans(topology, credential, host, kind);
    found = { entitled, allowed: new Set(entitled.map(sanKey)) };
    perTopology.set(key, found);
  }
  return found;
}

export function authorize(topology: Topology, input: AuthorizeInput): Authorized {
  const { csr, source } = input;
  if (!csr.signatureValid) throw refuse('PKI_ERR_CSR_INVALID', source, 'its signature does not verify with its own public key (corrupted, or not made by the key holder)');
  if (!csr.keyIsP256) throw refuse('PKI_ERR_KEY_TYPE', source, `its key is ${csr.keyType || 'of an unknown type'} (expected ECDSA P-256)`);

  const host = topology.hosts[input.host];
  if (host === undefined) {
    const hint = didYouMean(input.host, Object.keys(topology.hosts));
    throw refuse('PKI_ERR_UNKNOWN_HOST', source, `host "${input.host}" is not in the topology${hint ? ` (did you mean "${hint}"?)` : ''}`);
  }
  const credential = topology.credentials[csr.commonName];
  if (credential === undefined) {
    throw refuse('PKI_ERR_UNKNOWN_CREDENTIAL', source, `its CN "${csr.commonName}" is not a credential in the topology (expected one of ${host.credentials.join(', ') || 'none: this host needs no credentials'})`);
  }
  if (!credential.hosts.includes(host.name)) {
    throw refuse(
      'PKI_ERR_NOT_ENTITLED',
      source,
      `host ${host.name} runs no service that uses credential ${credential.name} (it is used by ${credential.services.join(', ')} on ${credential.hosts.join(', ') || 'no host'})`,
    );
  }

  if (csr.kinds.length > 1) throw refuse('PKI_ERR_CSR_INVALID', source, 'it asks for both clientAuth and serverAuth (expected one certificate per kind)');
  const kind = csr.kinds[0] ?? input.kind;
  if (kind === undefined) throw refuse('PKI_ERR_CSR_INVALID', source, 'it names no usage (expected EKU clientAuth or serverAuth in the request, or pass --kind)');
  if (input.kind !== undefined && kind !== input.kind) throw refuse('PKI_ERR_CSR_INVALID', source, `it asks for a ${kind} certificate but --kind ${input.kind} was given`);
  const enabled = kind === 'client' ? credential.enable_client : credential.enable_server;
  if (!enabled) throw refuse('PKI_ERR_KIND_DISABLED', source, `credential ${credential.name} has enable_${kind}: false`);

  if (csr.otherNames.length > 0) throw refuse('PKI_ERR_SAN_NOT_ALLOWED', source, `it asks for names of unsupported types: ${csr.otherNames.join(', ')} (expected DNS names, IP addresses and the workload identity URI)`);
  const identity = identitySan(topology, credential, host);
  // Another host's (or credential's) identity is the attack the URI SAN exists to stop: say so plainly.
  const foreign = csr.sans.filter((san) => san.type === 'uri' && san.value !== identity.value);
  if (foreign.length > 0) {
    throw refuse(
      'PKI_ERR_IDENTITY_NOT_ALLOWED',
      source,
      `it asks for the identity ${foreign.map(describeUri).join(', ')} but it comes from host ${host.name}, whose identity for credential ${credential.name} is ${identity.value}`,
    );
  }
  const { entitled, allowed } = entitlement(topology, credential, host, kind);
  const extra = csr.sans.filter((san) => !allowed.has(sanKey(san)));
  if (extra.length > 0) {
    throw refuse(
      'PKI_ERR_SAN_NOT_ALLOWED',
      source,
      `host ${host.name} is not entitled to ${extra.map(sanKey).join(', ')} in the ${kind} certificate of ${credential.name} (entitled: ${entitled.map(sanKey).join(', ')})`,
    );
  }
  const requested = [...new Map(csr.sans.map((san) => [sanKey(san), san])).values()];
  if (requested.length === 0) return { credential, host, kind, sans: entitled, publicKeySpki: csr.publicKeySpki };
  // The identity is the controller's to state (it knows which host the CSR came from): always certified.
  const sans = requested.some((san) => san.type === 'uri') ? requested : [...requested, identity];
  return { credential, host, kind, sans, publicKeySpki: csr.publicKeySpki };
}
