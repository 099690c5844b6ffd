/**
 * A renewing host's check of the online CA's serving certificate, made by
 * meshplane instead of by OpenSSL.
 *
 * Why not `ca` in the TLS options, as usual: a TLS client that has the CA in
 * its trust store and a client certificate without a chain sends the CA
 * certificate after its own in every handshake (OpenSSL builds the chain
 * from the trust store; Node has no switch for SSL_MODE_NO_AUTO_CHAIN). A
 * mesh CA carries the mesh's name constraints, 33 KB for 2,000 hosts, and
 * `pki serve` parsed it again on every renewal connection: 2.5 ms of the
 * CA's CPU a connection, a third of all its work (BENCHMARKS.md, pki). So
 * `pki renew` connects without a trust store and, before it sends a byte,
 * checks what OpenSSL would for meshplane's one-step chain (the CA signs its
 * serving certificate itself): issued and signed by this CA, within its
 * validity, usable for TLS servers, and naming the host or IP the CA URL
 * gives.
 */
import type { X509Certificate as NodeX509 } from 'node:crypto';
import { isIP } from 'node:net';
import { trustProblem } from './inspect.js';
import { OID } from './oids.js';

/** Why `serving` is not the online CA's certificate for `host` (a name or a bare IP, no brackets), or undefined when it is. */
export function servingProblem(serving: NodeX509 | undefined, caPem: string, host: string, now: Date): string | undefined {
  if (serving === undefined) return 'it presented no certificate';
  const trust = trustProblem(serving, caPem, now);
  if (trust !== undefined) return trust.reason;
  // Node's keyUsage is the extended key usage; a certificate without one may serve any purpose (RFC 5280 4.2.1.12).
  const usages = serving.keyUsage as string[] | undefined;
  if (usages !== undefined && !usages.includes(OID.serverAuth)) return 'the certificate is not for TLS servers (no serverAuth usage)';
  const named = isIP(host) !== 0 ? serving.checkIP(host) : serving.checkHost(host);
  if (named === undefined) return `the certificate does not name ${host}`;
  return undefined;
}
