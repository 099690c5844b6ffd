/**
 * The gateway's TLS server settings in one place: the registration
 * listener and the admin API build their options here at start and at
 * every reload (SIGHUP), so new certificates or a new CRL can never come
 * with weaker ciphers, an older minimum version or a lost cipher order.
 * (tls.Server#setSecureContext resets whatever it is not given to Node's
 * defaults, which allow CBC suites.)
 */
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { TUNNEL_CIPHERS } from '../lib/tunnel-io.js';

/** TLS 1.2 and 1.3 only, AEAD suites only (ECDSA keys), the server's order. */
const GATEWAY_TLS_POLICY = {
  minVersion: 'TLSv1.2',
  ciphers: TUNNEL_CIPHERS,
  honorCipherOrder: true,
} as const satisfies SecureContextOptions;

/**
 * Server options from the credential files (CA, certificate, key, CRL):
 * a client certificate is asked for but judged by the caller after the
 * handshake (with a reason to log and tell), and `alpn` is offered.
 */
export function gatewayServerTls(files: SecureContextOptions, alpn: readonly string[]): TlsOptions {
  return { ...files, ...GATEWAY_TLS_POLICY, requestCert: true, rejectUnauthorized: false, ALPNProtocols: [...alpn] };
}
