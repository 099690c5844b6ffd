/**
 * Issuing as a pipeline (smallstep `sign_options.go`): authorize the CSR
 * against the Topology, build the certificate template, validate it
 * (lifetime within min/max, names within the CA's Name Constraints), sign.
 * The order is fixed here and nowhere else.
 *
 * Speed: CSRs are read with a strict DER reader, the certificate is
 * assembled around parts encoded once per CA (template.ts) and signed through
 * node:crypto: about 0.1 ms of JavaScript per certificate where the
 * @peculiar object model takes 2-3 ms.
 */
import { MeshplaneError } from '../errors.js';
import type { Topology } from '../topology/index.js';
import { pkiPolicy } from '../topology/index.js';
import type { Authorized } from './authorize.js';
import { authorize } from './authorize.js';
import type { Ca } from './ca.js';
import type { CompiledConstraints } from './constraints.js';
import { compileConstraints } from './constraints.js';
import type { ParsedCsr } from './csr.js';
import { parseCsr } from './csr.js';
import type { CertKind, San } from './sans.js';
import { sanKey } from './sans.js';
import { VALIDITY, leafValidity } from './validity.js';
import { LeafTemplate } from './template.js';

interface SignOptions {
  /** Signing time (tests move it to make expired certificates). Default: now. */
  readonly now?: Date;
  /** Requested lifetime; default and bounds in validity.ts. */
  readonly lifetimeMs?: number;
}

interface SignRequest extends SignOptions {
  readonly csrPem: string;
  readonly host: string;
  readonly kind?: CertKind;
  /** Where the CSR came from, for messages (a file name). */
  readonly source: string;
}

interface Signed {
  readonly authorized: Authorized;
  readonly pem: string;
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export class LeafSigner {
  private readonly template: LeafTemplate;
  private readonly constraints: CompiledConstraints | undefined;

  constructor(private readonly ca: Ca) {
    this.template = new LeafTemplate(ca);
    this.constraints = ca.constraints === undefined ? undefined : compileConstraints(ca.constraints);
  }

  /** Parses, authorizes and signs one PEM CSR. */
  signCsr(topology: Topology, request: SignRequest): Signed {
    const csr = parseCsr(request.csrPem, request.source);
    return this.signParsed(topology, csr, request);
  }

  signParsed(topology: Topology, csr: ParsedCsr, request: Omit<SignRequest, 'csrPem'>): Signed {
    // 1. authorize
    const authorized = authorize(topology, { csr, host: request.host, kind: request.kind, source: request.source });
    // 2. template: subject = credential, the authorized SANs, the kind's EKU; lifetime from validity.ts
    // --lifetime, else the credential's own (services.yml `lifetime`), else the mesh's (pki_policy.leaf_lifetime, default 90 days).
    const validity = leafValidity(request.now ?? new Date(), request.lifetimeMs ?? authorized.credential.lifetime_ms ?? pkiPolicy(topology).leaf_lifetime_ms);
    // 3. validate against what peers will check
    if (this.constraints !== undefined) {
      const outside = this.constraints.outside(authorized.sans);
      if (outside.length > 0) {
        throw new MeshplaneError(
          'PKI_ERR_NAME_CONSTRAINTS',
          `refusing ${request.source}: ${outside.map(sanKey).join(', ')} is outside the CA's Name Constraints, so peers would reject the certificate; run "meshplane pki init" again with the current topology to widen them (or --permit-ip RANGE)`,
        );
      }
    }
    if (validity.notAfter > this.ca.cert.notAfter) {
      throw new MeshplaneError('PKI_ERR_VALIDITY', `refusing ${request.source}: the certificate would outlive the CA (which expires ${this.ca.cert.notAfter.toISOString()})`);
    }
    // 4. sign
    const { pem, serial } = this.template.sign({ commonName: authorized.credential.name, kind: authorized.kind, sans: authorized.sans, publicKeySpki: authorized.publicKeySpki, validity });
    return { authorized, pem, serial, notBefore: validity.notBefore, notAfter: validity.notAfter };
  }

  /**
   * The online CA's own TLS certificate (pki serve): not a Topology
   * credential, so no CSR to authorize and its own lifetime (serving-cert.ts
   * checks it; it may be shorter than a leaf's minimum); the names are still
   * held to the CA's Name Constraints so that clients accept it.
   */
  signServing(commonName: string, sans: readonly San[], publicKeySpki: Uint8Array, now: Date, lifetimeMs: number): { pem: string; serial: string; notAfter: Date } {
    const outside = this.constraints?.outside(sans) ?? [];
    if (outside.length > 0) throw new MeshplaneError('PKI_ERR_NAME_CONSTRAINTS', `the online CA's own certificate would name ${outside.map(sanKey).join(', ')}, outside the CA's Name Constraints; run "meshplane pki init" with --permit-ip/--permit-dns for it`);
    const validity = { notBefore: new Date(now.getTime() - VALIDITY.backdateMs), notAfter: new Date(now.getTime() + lifetimeMs) };
    if (validity.notAfter > this.ca.cert.notAfter) {
      throw new MeshplaneError('PKI_ERR_VALIDITY', `the online CA's own certificate would outlive the CA (which expires ${this.ca.cert.notAfter.toISOString()}); give pki serve a shorter --serving-lifetime or renew the CA`);
    }
    const { pem, serial } = this.template.sign({ commonName, kind: 'server', sans, publicKeySpki, validity });
    return { pem, serial, notAfter: validity.notAfter };
  }
}
