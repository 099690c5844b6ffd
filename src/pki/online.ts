/**
 * The online CA's decisions, apart from HTTP (serve.ts carries them over
 * mutual TLS): who is asking (the identity in the certificate it presents),
 * whether that certificate still counts (this CA issued it, it has not
 * expired, it is not revoked), whether this identity may ask now (token
 * buckets), and then the same pipeline as `pki sign` (LeafSigner.signCsr):
 * no second copy of the Topology checks lives here.
 */
import type { X509Certificate as NodeX509 } from 'node:crypto';
import { statSync } from 'node:fs';
import { MeshplaneError } from '../errors.js';
import type { Topology } from '../topology/index.js';
import { parseWorkloadId } from '../topology/index.js';
import type { Ca } from './ca.js';
import { loadCa } from './ca.js';
import { currentCrl, revokedSerials } from './crl.js';
import { unpem } from './der.js';
import { parseCsr } from './csr.js';
import type { PresentedCertificate } from './presented.js';
import { IssuerCheck, readCertificate } from './presented.js';
import { proofHolds } from './renewal-proof.js';
import { LeafSigner } from './sign.js';

/** Who a certificate speaks for: one credential on one host. */
interface PeerIdentity {
  readonly host: string;
  readonly credential: string;
}

/**
 * The identity of a certificate: its workload identity URI SAN
 * (spiffe://<domain>/host/<host>/credential/<name>, src/topology/identity.ts)
 * for this mesh's domain and its own CN. Undefined when it carries none
 * (certificates issued before identities: reissue them offline once).
 */
function peerIdentity(topology: Topology, cert: PresentedCertificate): PeerIdentity | undefined {
  const own = cert.uris.map(parseWorkloadId).filter((id) => id !== undefined && id.domain === topology.domain.toLowerCase() && id.credential === cert.commonName);
  return own.length === 1 && own[0] !== undefined ? { host: own[0].host, credential: own[0].credential } : undefined;
}

/** Token bucket: `perMinute` tokens a minute, holding at most `burst`. */
class Bucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly perMs: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.at = now;
  }

  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + (now - this.at) * this.perMs);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  full(now: number): boolean {
    return this.tokens + (now - this.at) * this.perMs >= this.burst;
  }
}

export interface RateLimits {
  /** Renewals a minute per identity (host and credential); also the burst. */
  readonly perIdentityPerMinute: number;
  /** Renewals a second for the whole CA; also the burst. */
  readonly globalPerSecond: number;
}

const DEFAULT_RATE_LIMITS: RateLimits = { perIdentityPerMinute: 10, globalPerSecond: 2000 };

class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly global: Bucket;

  constructor(private readonly limits: RateLimits) {
    this.global = new Bucket(limits.globalPerSecond / 1000, limits.globalPerSecond, Date.now());
  }

  /** The limit that refuses `key` now, or undefined when it may go on. */
  take(key: string, now = Date.now()): 'identity' | 'global' | undefined {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      // Forget full buckets now and then, so that a fleet's worth of identities costs no memory for ever.
      if (this.buckets.size > 100_000) for (const [k, b] of this.buckets) if (b.full(now)) this.buckets.delete(k);
      bucket = new Bucket(this.limits.perIdentityPerMinute / 60_000, this.limits.perIdentityPerMinute, now);
      this.buckets.set(key, bucket);
    }
    if (!bucket.take(now)) return 'identity';
    if (!this.global.take(now)) return 'global';
    return undefined;
  }
}

interface RenewRequest {
  /** The certificate the client presented in the TLS handshake (undefined: none). */
  readonly peerCert: NodeX509 | undefined;
  readonly csrPem: string;
  /** The client's address, for messages. */
  readonly peer: string;
  readonly now?: Date;
}

/** One item of `POST /renewals`: a CSR, the credential's current certificate, and the proof by its key (renewal-proof.ts). */
export interface RenewalItem {
  readonly csr: string;
  readonly certificate: string;
  readonly proof: string;
}

interface RenewManyRequest {
  /** The certificate of the TLS handshake: which host asks. */
  readonly peerCert: NodeX509 | undefined;
  readonly items: readonly RenewalItem[];
  readonly peer: string;
  readonly now?: Date;
}

/** Renewals in one `POST /renewals` at most (a host holds a handful of credentials, two kinds each). */
export const MAX_RENEWALS_PER_REQUEST = 64;

export interface Renewed {
  readonly identity: PeerIdentity;
  readonly kind: string;
  readonly pem: string;
  readonly serial: string;
  readonly notAfter: Date;
}

const refuse = (code: string, peer: string, reason: string): MeshplaneError => new MeshplaneError(code, `refusing renewal from ${peer}: ${reason}`);

/**
 * revoked.json's serials, read again only when the file changes (its
 * mtime, size or inode): reading and parsing it on every renewal cost
 * more than signing once the list grows.
 */
class RevokedCache {
  private stamp = '';
  private serials: ReadonlySet<string> = new Set();

  constructor(private readonly ca: Ca) {}

  get(): ReadonlySet<string> {
    const stat = statSync(this.ca.files.revoked, { throwIfNoEntry: false, bigint: true });
    const stamp = stat === undefined ? 'none' : `${stat.ino}:${stat.size}:${stat.mtimeNs}`;
    if (stamp !== this.stamp) {
      this.serials = revokedSerials(this.ca);
      this.stamp = stamp;
    }
    return this.serials;
  }
}

/** What only changes when the CA directory is read again. */
interface Loaded {
  readonly ca: Ca;
  readonly signer: LeafSigner;
  /** Whether a presented certificate is this CA's (its name and signature). */
  readonly issuer: IssuerCheck;
  readonly revoked: RevokedCache;
}

function load(caDir: string): Loaded {
  const ca = loadCa(caDir);
  return { ca, signer: new LeafSigner(ca), issuer: new IssuerCheck(ca.cert), revoked: new RevokedCache(ca) };
}

export class OnlineCa {
  private loaded: Loaded;
  private readonly limiter: RateLimiter;

  constructor(
    private readonly caDir: string,
    private readonly options: { readonly lifetimeMs?: number; readonly limits?: RateLimits } = {},
  ) {
    this.loaded = load(caDir);
    this.limiter = new RateLimiter(options.limits ?? DEFAULT_RATE_LIMITS);
  }

  get certPem(): string {
    return this.loaded.ca.certPem;
  }

  get leafSigner(): LeafSigner {
    return this.loaded.signer;
  }

  /** Reads the CA directory again (after `pki init` widened the constraints for a grown Topology). */
  reload(): void {
    this.loaded = load(this.caDir);
  }

  /** The current CRL (re-signed once half its life has passed, or for a new `lifetimeMs`: pki_policy.crl_lifetime). */
  crl(now = new Date(), options: { readonly lifetimeMs?: number; readonly onlyWhenExpired?: boolean } = {}): Promise<string> {
    return currentCrl(this.loaded.ca, now, options);
  }

  /** Checks the presented certificate, the rate and the CSR (as `pki sign` does), and signs. */
  renew(topology: Topology, request: RenewRequest): Renewed {
    const now = request.now ?? new Date();
    const identity = this.presented(topology, this.connectionCertificate(request.peerCert?.raw, request.peer), request.peer, now, this.loaded.revoked.get());
    return this.signFor(topology, identity, request.csrPem, request.peer, now);
  }

  /**
   * Renews several credentials of one host at once (`POST /renewals`). The
   * connection's certificate says which host asks; each item carries its
   * credential's current certificate, which must speak for that same host
   * and pass every check `renew` makes, and a proof by its key over the CSR
   * (renewal-proof.ts). A refused item does not stop the others; a refused
   * connection certificate refuses them all (thrown).
   */
  renewMany(topology: Topology, request: RenewManyRequest): Array<Renewed | MeshplaneError> {
    const now = request.now ?? new Date();
    const { peer } = request;
    // revoked.json is looked at once a request (a stat; read again only when it changed).
    const revoked = this.loaded.revoked.get();
    // The DER of the handshake's certificate (node:crypto encodes it afresh on each .raw).
    const connectionDer = request.peerCert?.raw;
    const asker = this.presented(topology, this.connectionCertificate(connectionDer, peer), peer, now, revoked);
    if (request.items.length > MAX_RENEWALS_PER_REQUEST) throw refuse('PKI_ERR_RENEW_BAD_REQUEST', peer, `${request.items.length} renewals in one request; at most ${MAX_RENEWALS_PER_REQUEST}`);
    return request.items.map((item, index) => {
      const where = `${peer} (host ${asker.host}, renewal #${index + 1})`;
      try {
        const der = unpem(item.certificate, 'CERTIFICATE');
        if (der === undefined) throw refuse('PKI_ERR_RENEW_BAD_REQUEST', where, '"certificate" is not a PEM certificate');
        // The connection's own certificate: its key signed this TLS handshake, so it is proved as on
        // POST /renew, and it was checked above (checking it again cost a third of an item).
        if (connectionDer?.equals(der) === true) return this.signFor(topology, asker, item.csr, where, now);
        const cert = readCertificate(der);
        if (cert === undefined) throw refuse('PKI_ERR_RENEW_BAD_REQUEST', where, '"certificate" is not a PEM certificate');
        const identity = this.presented(topology, cert, where, now, revoked);
        if (identity.host !== asker.host) throw refuse('PKI_ERR_RENEW_OTHER_HOST', where, `the certificate in the request speaks for host "${identity.host}", but the connection's certificate for host "${asker.host}": one connection renews one host's credentials`);
        if (!proofHolds(cert.publicPoint, item.csr, item.proof)) throw refuse('PKI_ERR_RENEW_PROOF', where, `the proof is not a signature of the current key of ${identity.credential} on ${identity.host} over this CSR`);
        return this.signFor(topology, identity, item.csr, where, now);
      } catch (err) {
        if (err instanceof MeshplaneError) return err;
        throw err;
      }
    });
  }

  /** The certificate of the TLS handshake, read as presented.ts reads every presented one. */
  private connectionCertificate(der: Uint8Array | undefined, peer: string): PresentedCertificate {
    if (der === undefined) throw refuse('PKI_ERR_RENEW_NO_CERT', peer, 'no client certificate was presented (present the current certificate of the credential being renewed)');
    const cert = readCertificate(der);
    if (cert === undefined) throw refuse('PKI_ERR_RENEW_UNTRUSTED', peer, 'the certificate presented is not readable DER');
    return cert;
  }

  /** Who a presented certificate speaks for, once this CA issued it, it is in its validity and not revoked. */
  private presented(topology: Topology, cert: PresentedCertificate, peer: string, now: Date, revoked: ReadonlySet<string>): PeerIdentity {
    if (!this.loaded.issuer.issued(cert)) throw refuse('PKI_ERR_RENEW_UNTRUSTED', peer, `the certificate presented (issuer CN=${cert.issuerCommonName}) was not issued by this CA`);
    if (cert.notAfter.getTime() <= now.getTime()) throw refuse('PKI_ERR_RENEW_EXPIRED', peer, `the certificate presented expired ${cert.notAfter.toISOString()} (renew before expiry, or bootstrap again with "pki issue"/the playbook)`);
    if (cert.notBefore.getTime() > now.getTime()) throw refuse('PKI_ERR_RENEW_EXPIRED', peer, `the certificate presented is not valid before ${cert.notBefore.toISOString()}`);
    if (revoked.has(cert.serial)) throw refuse('PKI_ERR_RENEW_REVOKED', peer, `the certificate presented (serial ${cert.serial}) is revoked`);
    const identity = peerIdentity(topology, cert);
    if (identity === undefined) throw refuse('PKI_ERR_RENEW_IDENTITY', peer, 'the certificate presented carries no workload identity of this mesh (a URI SAN spiffe://<domain>/host/<host>/credential/<name> for its own CN)');
    return identity;
  }

  /** The rate limits, the CSR's credential, and then the same pipeline as `pki sign`, for the host `identity` speaks for. */
  private signFor(topology: Topology, identity: PeerIdentity, csrPem: string, peer: string, now: Date): Renewed {
    const who = `${identity.credential} on ${identity.host}`;
    const limited = this.limiter.take(`${identity.host}/${identity.credential}`, now.getTime());
    if (limited !== undefined) {
      throw refuse('PKI_ERR_RENEW_RATE_LIMITED', `${peer} (${who})`, limited === 'identity' ? `more than ${(this.options.limits ?? DEFAULT_RATE_LIMITS).perIdentityPerMinute} renewals a minute for this identity` : 'the CA is at its global renewal rate; retry later');
    }
    const csr = parseCsr(csrPem, `the CSR from ${peer} (${who})`);
    if (csr.commonName !== identity.credential) {
      throw refuse('PKI_ERR_RENEW_OTHER_CREDENTIAL', `${peer} (${who})`, `the CSR asks for credential "${csr.commonName}" but the certificate presented is for "${identity.credential}"`);
    }
    const signed = this.loaded.signer.signParsed(topology, csr, { host: identity.host, source: `the CSR from ${peer} (${who})`, now, lifetimeMs: this.options.lifetimeMs });
    return { identity, kind: signed.authorized.kind, pem: signed.pem, serial: signed.serial, notAfter: signed.notAfter };
  }
}
