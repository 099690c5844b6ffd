/**
 * @peculiar/x509, loaded on first use. The library needs `reflect-metadata`
 * evaluated first (its DI container uses it) and a crypto provider (Node's
 * WebCrypto). It builds the CA certificate, CSRs and CRLs; the signing path
 * and the readers do not need it, so commands that only sign, install or
 * report do not pay its ~0.1 s load time.
 */
import { webcrypto } from 'node:crypto';
import type * as X509Module from '@peculiar/x509';

export type X509 = typeof X509Module;

let loading: Promise<X509> | undefined;

export function peculiar(): Promise<X509> {
  loading ??= (async () => {
    await import('reflect-metadata');
    const x509 = await import('@peculiar/x509');
    x509.cryptoProvider.set(webcrypto);
    return x509;
  })();
  return loading;
}
