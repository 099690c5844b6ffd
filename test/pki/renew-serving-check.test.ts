/**
 * `pki renew`'s check of the online CA's serving certificate
 * (src/pki/serving-check.ts), against a TLS server in this process that
 * stands in for the CA: the real CLI connects, and the server records what
 * the handshake carried and whether a request came.
 *
 * - The host presents its own certificate only: a client that trusted the
 *   CA through OpenSSL would send the CA certificate after it, which the
 *   real CA then parsed on every renewal connection.
 * - A serving certificate from the right CA, for the right IP and usage, is
 *   accepted (the request arrives); one from another CA, for another IP, or
 *   for clients only is refused with PKI_ERR_CA_UNREACHABLE before the host
 *   sends anything.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createServer as tlsServer } from 'node:tls';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initCa, issueHost, loadCa } from '../../src/pki/index.js';
import { CLI } from '../support/run.js';
import { exampleTopology, openssl, runAsync, scratch } from './support.js';

const dir = scratch('renew-serving');
const topology = exampleTopology();
const caDir = join(dir.path, 'ca');
const otherCaDir = join(dir.path, 'other-ca');
const root = join(dir.path, 'host1');

afterAll(() => dir.remove());

beforeAll(async () => {
  await initCa({ caDir, topology });
  await initCa({ caDir: otherCaDir, topology });
  await issueHost({ ca: loadCa(caDir), topology, host: 'host1', root, force: true });
}, 60_000);

/** A serving pair signed by the CA in `ca` with openssl: `ext` holds its SAN and EKU lines. */
function servingPair(name: string, ca: string, ext: string): { key: string; cert: string } {
  const key = join(dir.path, `${name}.key`);
  const csr = join(dir.path, `${name}.csr`);
  const cert = join(dir.path, `${name}.pem`);
  const extFile = join(dir.path, `${name}.ext`);
  writeFileSync(extFile, ext);
  for (const args of [
    ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key],
    ['req', '-new', '-key', key, '-subj', '/CN=meshplane-pki-serve', '-out', csr],
    ['x509', '-req', '-in', csr, '-CA', join(ca, 'ca.pem'), '-CAkey', join(ca, 'ca_key.pem'), '-CAcreateserial', '-days', '1', '-sha256', '-extfile', extFile, '-out', cert],
  ]) {
    const made = openssl(args);
    expect(made.status, made.stderr).toBe(0);
  }
  return { key, cert };
}

interface Seen {
  /** Certificates each handshake with a client certificate carried. */
  chains: number[];
  /** Bytes of application data received. */
  received: number;
}

/** A TLS server with `pair`, asking for a client certificate; `pki renew --force` for host1 against it. */
async function renewAgainst(pair: { key: string; cert: string }): Promise<{ seen: Seen; status: number; output: string }> {
  const seen: Seen = { chains: [], received: 0 };
  const server = tlsServer({ key: readFileSync(pair.key), cert: readFileSync(pair.cert), requestCert: true, rejectUnauthorized: false }, (socket: TLSSocket) => {
    // getPeerCertificate(true) links what the handshake carried by issuer; a self-signed CA links to itself.
    let cert: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
    const fingerprints = new Set<string>();
    while (cert?.raw !== undefined && !fingerprints.has(cert.fingerprint256)) {
      fingerprints.add(cert.fingerprint256);
      cert = cert.issuerCertificate;
    }
    if (fingerprints.size > 0) seen.chains.push(fingerprints.size);
    socket.on('data', (chunk: Buffer) => {
      seen.received += chunk.length;
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const run = await runAsync(process.execPath, [CLI, 'pki', 'renew', '--host', 'host1', '--ca-url', `https://127.0.0.1:${port}`, '--credentials-root', root, '--force']);
    return { seen, status: run.status, output: run.stdout + run.stderr };
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

const SERVER_EXT = 'subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\nbasicConstraints = critical, CA:FALSE\n';

describe("pki renew checks the online CA's serving certificate itself", () => {
  it('presents its own certificate only, and sends its request once the serving certificate checks out', async () => {
    const { seen } = await renewAgainst(servingPair('good', caDir, SERVER_EXT));
    expect(seen.chains.length).toBeGreaterThan(0);
    expect(seen.chains.every((length) => length === 1)).toBe(true);
    expect(seen.received).toBeGreaterThan(0);
  });

  it.each([
    ['from another CA', () => servingPair('foreign', otherCaDir, SERVER_EXT), 'was not issued by this CA'],
    ['for another IP', () => servingPair('elsewhere', caDir, SERVER_EXT.replace('127.0.0.1', '127.0.0.2')), 'does not name 127.0.0.1'],
    ['for TLS clients only', () => servingPair('client-only', caDir, SERVER_EXT.replace('serverAuth', 'clientAuth')), 'not for TLS servers'],
  ])('refuses a serving certificate %s before sending anything', async (_what, pair, reason) => {
    const { seen, status, output } = await renewAgainst(pair());
    expect(status).not.toBe(0);
    expect(output).toContain('PKI_ERR_CA_UNREACHABLE');
    expect(output).toContain(reason);
    expect(seen.received).toBe(0);
  });
});
