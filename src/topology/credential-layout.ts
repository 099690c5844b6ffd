/**
 * Where a credential's files live under a credentials root. The PKI writes
 * them, and the gateway, the agent, `meshplane up` and `pki status` read
 * them, so the layout has this one home; modes and owners are the PKI's
 * business (src/pki/files.ts).
 *
 *   <root>/x509/<name>/ca.pem                  the mesh CA
 *   <root>/x509/<name>/crl.pem                 the CA's CRL, when it has one
 *   <root>/x509/<name>/<kind>/cert.pem         kind: client | server
 *   <root>/x509/<name>/<kind>/private_key.pem
 *   <root>/x509/<name>/<kind>/request.csr      (pki request only)
 */
import { join } from 'node:path';

/** The credentials root on a host. */
export const DEFAULT_CREDENTIALS_ROOT = '/etc/credentials';

/** A credential's two certificates: client (clientAuth) and server (serverAuth). */
type CredentialKind = 'client' | 'server';

interface CredentialFiles {
  /** `<root>/x509/<name>/<kind>` */
  readonly kindDir: string;
  readonly ca: string;
  readonly crl: string;
  readonly cert: string;
  readonly key: string;
  readonly csr: string;
}

/** The directory holding one directory per credential. */
export function credentialsDir(root: string): string {
  return join(root, 'x509');
}

export function credentialDir(root: string, name: string): string {
  return join(credentialsDir(root), name);
}

export function credentialFiles(root: string, name: string, kind: CredentialKind): CredentialFiles {
  const dir = credentialDir(root, name);
  const kindDir = join(dir, kind);
  return {
    kindDir,
    ca: join(dir, 'ca.pem'),
    crl: join(dir, 'crl.pem'),
    cert: join(kindDir, 'cert.pem'),
    key: join(kindDir, 'private_key.pem'),
    csr: join(kindDir, 'request.csr'),
  };
}

/** `meshplane up`'s local state: each host's credentials root is `<stateDir>/credentials/<host>`. */
export function stateCredentialsRoot(stateDir: string, host: string): string {
  return join(stateDir, 'credentials', host);
}
