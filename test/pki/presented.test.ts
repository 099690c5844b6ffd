/**
 * The online CA's reader of presented certificates (src/pki/presented.ts):
 * fields as openssl and node:crypto read them, this CA's signature required,
 * and no input that makes it throw.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IssuerCheck, readCertificate } from '../../src/pki/testing.js';
import { openssl, scratch } from './support.js';

const dir = scratch('presented');
afterAll(() => dir.remove());
const at = (file: string): string => join(dir.path, file);

/** A P-256 CA with subject CN=mesh-ca in `name`.pem / `name`.key. */
function makeCa(name: string): void {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', at(`${name}.key`)]);
  openssl(['req', '-x509', '-new', '-key', at(`${name}.key`), '-subj', '/CN=mesh-ca', '-days', '2', '-out', at(`${name}.pem`)]);
}

/** A leaf for `cn` with a workload identity, signed by CA `ca`; returns its PEM. */
function makeLeaf(ca: string, cn: string, out: string): string {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', at(`${out}.key`)]);
  openssl(['req', '-new', '-key', at(`${out}.key`), '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}.mesh.internal,URI:spiffe://mesh.internal/host/host1/credential/${cn}`, '-out', at(`${out}.csr`)]);
  openssl(['x509', '-req', '-in', at(`${out}.csr`), '-CA', at(`${ca}.pem`), '-CAkey', at(`${ca}.key`), '-set_serial', '0x00ab12', '-days', '1', '-copy_extensions', 'copy', '-out', at(`${out}.pem`)]);
  return readFileSync(at(`${out}.pem`), 'utf8');
}

makeCa('ca');
makeCa('other-ca');
const leafPem = makeLeaf('ca', 'web', 'leaf');
const strangerPem = makeLeaf('other-ca', 'web', 'stranger');
const leafDer = new X509Certificate(leafPem).raw;
/** The CA as loadCa holds it: its subject as encoded, and its key. */
const caNode = new X509Certificate(readFileSync(at('ca.pem'), 'utf8'));
const check = new IssuerCheck({ subjectDer: readCertificate(caNode.raw)?.subjectDer ?? new Uint8Array(0), publicKeySpki: caNode.publicKey.export({ format: 'der', type: 'spki' }) });

describe('a presented certificate', () => {
  it('reads the fields openssl and node:crypto read', () => {
    const node = new X509Certificate(leafPem);
    const cert = readCertificate(leafDer);
    expect(cert).toBeDefined();
    expect(cert?.serial).toBe(openssl(['x509', '-noout', '-serial', '-in', at('leaf.pem')]).stdout.trim().replace('serial=', '').toLowerCase().replace(/^0+/, ''));
    expect(cert?.serial).toBe('ab12');
    expect(cert?.commonName).toBe('web');
    expect(cert?.issuerCommonName).toBe('mesh-ca');
    expect(cert?.notBefore.getTime()).toBe(new Date(node.validFrom).getTime());
    expect(cert?.notAfter.getTime()).toBe(new Date(node.validTo).getTime());
    expect(cert?.uris).toEqual(['spiffe://mesh.internal/host/host1/credential/web']);
    const spki = node.publicKey.export({ format: 'der', type: 'spki' });
    expect(Buffer.from(cert?.publicPoint ?? [])).toEqual(spki.subarray(spki.length - 65));
  });

  it("counts as this CA's only with its name and its signature", () => {
    const own = readCertificate(leafDer);
    const stranger = readCertificate(new X509Certificate(strangerPem).raw);
    expect(own !== undefined && check.issued(own)).toBe(true);
    // Same issuer name, another CA's key.
    expect(stranger !== undefined && check.issued(stranger)).toBe(false);
    // The CA's own certificate is signed by its key, so it counts (a renewal presenting it is then refused: no workload identity).
    const caCert = readCertificate(new X509Certificate(readFileSync(at('ca.pem'), 'utf8')).raw);
    expect(caCert !== undefined && check.issued(caCert)).toBe(true);
  });

  it('is refused after any change to its bytes, and no change makes the reader throw', () => {
    let read = 0;
    for (let i = 0; i < leafDer.length; i++) {
      for (const flip of [0x01, 0x80]) {
        const changed = Buffer.from(leafDer);
        changed[i] = (changed[i] ?? 0) ^ flip;
        const cert = readCertificate(changed);
        if (cert === undefined) continue;
        read++;
        expect(check.issued(cert), `byte ${i} ^ ${flip} still counted as issued`).toBe(false);
      }
    }
    // Most single-bit changes leave readable DER: the signature is what refuses them.
    expect(read).toBeGreaterThan(leafDer.length);
    for (let length = 0; length < leafDer.length; length++) expect(readCertificate(leafDer.subarray(0, length))).toBeUndefined();
  });
});
