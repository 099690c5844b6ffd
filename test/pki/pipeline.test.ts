/**
 * The issuing pipeline: which names each certificate gets, the CA's Name
 * Constraints, and every refusal of `sign` with its code. Certificates are
 * read back with openssl and @peculiar/x509, never with our own reader.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LeafSigner,
  VALIDITY,
  generateKeyPair,
  initCa,
  loadCa,
  makeCsr,
  parseLifetime,
} from '../../src/pki/index.js';
import {
  clientSans,
  leafValidity,
  peculiar,
  sanKey,
  serverSans,
  toSan,
  wantedConstraints,
} from '../../src/pki/testing.js';
import type { CertKind } from '../../src/pki/index.js';
import type { Ca, San } from '../../src/pki/testing.js';
import { MeshplaneError } from '../../src/errors.js';
import type { Topology } from '../../src/topology/index.js';
import { EXAMPLE_INVENTORY, EXAMPLE_SERVICES, asyncCodeOf, codeOf, exampleTopology, openssl, scratch, topologyOf } from './support.js';

const x509 = await peculiar();
const keys = (sans: readonly San[]): string[] => sans.map(sanKey);


describe('names in certificates', () => {
  const topology = exampleTopology();
  const credential = (name: string) => topology.credentials[name]!;
  const host = (name: string) => topology.hosts[name]!;

  it('gives a client certificate the credential name, its FQDN and the holder\'s workload identity', () => {
    expect(keys(clientSans(topology, credential('db'), host('host2')))).toEqual(['dns:db', 'dns:db.mesh.internal', 'uri:spiffe://mesh.internal/host/host2/credential/db']);
  });

  it('gives the db master every name form, its addresses, localhost and loopback', () => {
    expect(keys(serverSans(topology, credential('db'), host('host2')))).toEqual([
      'dns:db',
      'dns:db.mesh.internal',
      'dns:host2.db',
      'dns:host2.db.mesh.internal',
      'dns:a.db.mesh.internal',
      'dns:db-master',
      'dns:db-master.mesh.internal',
      'dns:db-backup',
      'dns:db-backup.mesh.internal',
      'dns:host2.db-backup',
      'dns:host2.db-backup.mesh.internal',
      'dns:a.db-backup.mesh.internal',
      'dns:host2.mesh.internal',
      'dns:localhost',
      'ip:127.0.1.2',
      'ip:100.64.0.2',
      'ip:100.64.1.2',
      'ip:127.0.0.1',
      'ip:::1',
      'uri:spiffe://mesh.internal/host/host2/credential/db',
    ]);
  });

  it('leaves master names off a non-master and uses its own shard', () => {
    const names = keys(serverSans(topology, credential('db'), host('host3')));
    expect(names).not.toContain('dns:db-master');
    expect(names).toContain('dns:b.db.mesh.internal');
    expect(names).toContain('ip:100.64.1.3');
  });

  it('adds extra_san and public addresses', () => {
    expect(keys(serverSans(topology, credential('web'), host('host1')))).toContain('dns:www.example.com');
    const gateway = keys(serverSans(topology, credential('gateway'), host('gw1')));
    expect(gateway).toEqual(expect.arrayContaining(['ip:127.0.1.10', 'ip:127.0.2.10', 'ip:100.64.0.10']));
  });

  it('canonicalizes IPv6 and lowercases DNS names', () => {
    expect(toSan('0:0:0:0:0:0:0:1')).toEqual({ type: 'ip', value: '::1' });
    expect(toSan('WWW.Example.COM.')).toEqual({ type: 'dns', value: 'www.example.com' });
  });
});

describe('CA name constraints', () => {
  it('permit the mesh domain, localhost, the mesh labels, extra_san and the address ranges', () => {
    expect(wantedConstraints(exampleTopology())).toEqual({
      dns: ['db', 'db-backup', 'db-master', 'gateway', 'localhost', 'mesh.internal', 'web', 'www.example.com'],
      ip: ['100.64.0.0/24', '100.64.1.0/24', '127.0.0.0/8', '::1/128'],
    });
  });

  it('cover host addresses outside every range one by one, and --permit-ip ranges instead', () => {
    const topology = exampleTopology();
    const host1 = topology.hosts.host1!;
    const moved: Topology = { ...topology, hosts: { ...topology.hosts, host1: { ...host1, ips: ['198.18.2.7'], public_ips: ['198.18.2.7'] } } };
    expect(wantedConstraints(moved).ip).toContain('198.18.2.7/32');
    expect(wantedConstraints(moved, ['198.18.2.0/24']).ip).toEqual(['100.64.0.0/24', '100.64.1.0/24', '127.0.0.0/8', '198.18.2.0/24', '::1/128']);
  });
});

describe('validity', () => {
  it('defaults to 90 days, backdated for clock skew', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    const v = leafValidity(now);
    expect(v.notAfter.toISOString()).toBe('2026-04-01T00:00:00.000Z');
    expect(now.getTime() - v.notBefore.getTime()).toBe(VALIDITY.backdateMs);
  });

  it('refuses lifetimes outside 1 hour .. 397 days', () => {
    expect(codeOf(() => leafValidity(new Date(), parseLifetime('30m')))).toBe('PKI_ERR_VALIDITY');
    expect(codeOf(() => leafValidity(new Date(), parseLifetime('398d')))).toBe('PKI_ERR_VALIDITY');
    expect(codeOf(() => leafValidity(new Date(), parseLifetime('397d')))).toBeUndefined();
    expect(codeOf(() => parseLifetime('ninety days'))).toBe('PKI_ERR_VALIDITY');
  });
});

describe('signing a CSR', () => {
  const topology = exampleTopology();
  const dir = scratch('pipeline');
  let ca: Ca;
  let signer: LeafSigner;
  const key = generateKeyPair();

  beforeAll(async () => {
    ca = (await initCa({ caDir: join(dir.path, 'ca'), topology })).ca;
    signer = new LeafSigner(ca);
  });
  afterAll(() => dir.remove());

  const csrFor = (credential: string, kind: CertKind, sans: readonly San[]) => makeCsr({ privateKeyPem: key.privateKeyPem, credential, kind, sans });
  const refusal = async (host: string, credential: string, kind: CertKind, sans: readonly San[]) => {
    const csrPem = await csrFor(credential, kind, sans);
    return codeOf(() => signer.signCsr(topology, { csrPem, host, source: 'test.csr' }));
  };

  it('signs what the host is entitled to, readable by @peculiar/x509 with the right extensions', async () => {
    const sans = serverSans(topology, topology.credentials.db!, topology.hosts.host2!);
    const signed = signer.signCsr(topology, { csrPem: await csrFor('db', 'server', sans), host: 'host2', source: 'test.csr' });
    const cert = new x509.X509Certificate(signed.pem);
    expect(cert.subject).toBe('CN=db');
    expect(cert.issuer).toBe('CN=meshplane CA mesh.internal, O=meshplane');
    expect(cert.serialNumber).toBe(signed.serial);
    const san = new x509.SubjectAlternativeNameExtension(cert.getExtension('2.5.29.17')!.rawData);
    expect(san.names.toJSON().map((n): San => (n.type === 'url' ? { type: 'uri', value: n.value } : toSan(n.value))).map(sanKey)).toEqual(keys(sans));
    const eku = new x509.ExtendedKeyUsageExtension(cert.getExtension('2.5.29.37')!.rawData);
    expect(eku.usages).toEqual(['1.3.6.1.5.5.7.3.1']);
    const ski = await x509.SubjectKeyIdentifierExtension.create(key.publicKeySpki);
    expect(new x509.SubjectKeyIdentifierExtension(cert.getExtension('2.5.29.14')!.rawData).keyId).toBe(ski.keyId);
    const caSki = await x509.SubjectKeyIdentifierExtension.create(ca.cert.publicKeySpki);
    expect(new x509.AuthorityKeyIdentifierExtension(cert.getExtension('2.5.29.35')!.rawData).keyId).toBe(caSki.keyId);
    expect(await cert.verify({ publicKey: new x509.X509Certificate(ca.certPem).publicKey, signatureOnly: true })).toBe(true);
  });

  it('certifies every entitled name when the CSR asks for none', async () => {
    const signed = signer.signCsr(topology, { csrPem: await csrFor('db', 'client', []), host: 'host3', source: 'test.csr' });
    const text = openssl(['x509', '-noout', '-ext', 'subjectAltName'], signed.pem).stdout;
    expect(text).toContain('DNS:db, DNS:db.mesh.internal');
  });

  it('certifies the workload identity URI, which openssl verifies under the CA\'s Name Constraints', async () => {
    for (const [kind, sans] of [['client', []], ['server', [toSan('db')]]] as const) {
      const signed = signer.signCsr(topology, { csrPem: await csrFor('db', kind, sans), host: 'host3', source: 'test.csr' });
      // Asked for or not, the identity is there: the controller states which host holds the credential.
      expect(openssl(['x509', '-noout', '-ext', 'subjectAltName'], signed.pem).stdout).toContain('URI:spiffe://mesh.internal/host/host3/credential/db');
      const file = join(dir.path, `identity-${kind}.pem`);
      writeFileSync(file, signed.pem);
      // The CA has critical Name Constraints with DNS and IP subtrees only: URIs stay unconstrained.
      expect(openssl(['x509', '-noout', '-ext', 'nameConstraints'], ca.certPem).stdout).toContain('Permitted');
      const verify = openssl(['verify', '-CAfile', ca.files.cert, '-purpose', kind === 'server' ? 'sslserver' : 'sslclient', file]);
      expect(verify.stdout + verify.stderr).toContain(': OK');
    }
  });

  it('refuses a CSR for another host\'s identity, and any other URI', async () => {
    const other = { type: 'uri', value: 'spiffe://mesh.internal/host/host2/credential/db' } as const;
    expect(await refusal('host3', 'db', 'client', [other])).toBe('PKI_ERR_IDENTITY_NOT_ALLOWED');
    expect(await refusal('host3', 'db', 'client', [{ type: 'uri', value: 'spiffe://mesh.internal/host/host3/credential/web' }])).toBe('PKI_ERR_IDENTITY_NOT_ALLOWED');
    expect(await refusal('host3', 'db', 'client', [{ type: 'uri', value: 'https://evil.example/' }])).toBe('PKI_ERR_IDENTITY_NOT_ALLOWED');
    const csrPem = await csrFor('db', 'client', [other]);
    expect(() => signer.signCsr(topology, { csrPem, host: 'host3', source: 'test.csr' })).toThrow(/host2\/credential\/db \(host host2's, credential db\) but it comes from host host3/);
    // Its own identity is fine.
    expect(await refusal('host3', 'db', 'client', [{ type: 'uri', value: 'spiffe://mesh.internal/host/host3/credential/db' }])).toBeUndefined();
  });

  it('refuses a host that is not in the topology', async () => {
    expect(await refusal('host9', 'db', 'client', [])).toBe('PKI_ERR_UNKNOWN_HOST');
  });

  it('refuses a CN that is no credential', async () => {
    expect(await refusal('host2', 'payroll', 'client', [])).toBe('PKI_ERR_UNKNOWN_CREDENTIAL');
  });

  it('refuses a credential for a host that does not run its service', async () => {
    expect(await refusal('host1', 'db', 'server', [])).toBe('PKI_ERR_NOT_ENTITLED');
  });

  it('refuses a kind the credential disables (gateway has enable_client: false)', async () => {
    expect(await refusal('gw1', 'gateway', 'client', [])).toBe('PKI_ERR_KIND_DISABLED');
  });

  it('refuses a name the host is not entitled to, and another host\'s address', async () => {
    expect(await refusal('host3', 'db', 'server', [toSan('db-master')])).toBe('PKI_ERR_SAN_NOT_ALLOWED');
    expect(await refusal('host3', 'db', 'server', [toSan('127.0.1.2')])).toBe('PKI_ERR_SAN_NOT_ALLOWED');
    expect(await refusal('host2', 'db', 'client', [toSan('host2.db')])).toBe('PKI_ERR_SAN_NOT_ALLOWED');
  });

  it('says why in each refusal: the code, the source, the reason and what would be valid', async () => {
    const messageOf = (fn: () => unknown): string => {
      try {
        fn();
      } catch (err) {
        if (err instanceof MeshplaneError) return `${err.code}: ${err.message}`;
        throw err;
      }
      return 'signed';
    };
    const sign = async (host: string, credential: string, kind: CertKind, sans: readonly San[]) => {
      const csrPem = await csrFor(credential, kind, sans);
      return messageOf(() => signer.signCsr(topology, { csrPem, host, source: 'db.csr from ' + host }));
    };
    expect(await sign('host1', 'db', 'server', [])).toBe(
      'PKI_ERR_NOT_ENTITLED: refusing db.csr from host1: host host1 runs no service that uses credential db (it is used by db, db-backup on host2, host3)',
    );
    expect(await sign('host3', 'db', 'server', [toSan('db-master.mesh.internal'), toSan('db')])).toMatch(
      /^PKI_ERR_SAN_NOT_ALLOWED: refusing db\.csr from host3: host host3 is not entitled to dns:db-master\.mesh\.internal in the server certificate of db \(entitled: dns:db, dns:db\.mesh\.internal, dns:host3\.db, .*ip:::1, uri:spiffe:\/\/mesh\.internal\/host\/host3\/credential\/db\)$/,
    );
    expect(await sign('host9', 'db', 'client', [])).toMatch(/^PKI_ERR_UNKNOWN_HOST: refusing db\.csr from host9: host "host9" is not in the topology \(did you mean "host\d"\?\)$/);
    const rsaKey = join(dir.path, 'rsa-msg.key');
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', rsaKey], { stdio: 'ignore' });
    const rsaCsr = execFileSync('openssl', ['req', '-new', '-key', rsaKey, '-subj', '/CN=db', '-addext', 'extendedKeyUsage=clientAuth'], { encoding: 'utf8' });
    expect(messageOf(() => signer.signCsr(topology, { csrPem: rsaCsr, host: 'host2', source: 'rsa.csr' }))).toBe('PKI_ERR_KEY_TYPE: refusing rsa.csr: its key is RSA (expected ECDSA P-256)');
  });

  it('refuses a CSR whose signature does not verify', async () => {
    const pem = await csrFor('db', 'client', []);
    const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0xff;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(codeOf(() => signer.signCsr(topology, { csrPem: tampered, host: 'host2', source: 'test.csr' }))).toBe('PKI_ERR_CSR_INVALID');
    expect(codeOf(() => signer.signCsr(topology, { csrPem: 'not a csr', host: 'host2', source: 'test.csr' }))).toBe('PKI_ERR_CSR_INVALID');
  });

  it('refuses keys other than ECDSA P-256 (an RSA CSR made by openssl)', () => {
    const keyFile = join(dir.path, 'rsa.key');
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', keyFile], { stdio: 'ignore' });
    const csrPem = execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', '/CN=db', '-addext', 'extendedKeyUsage=clientAuth'], { encoding: 'utf8' });
    expect(codeOf(() => signer.signCsr(topology, { csrPem, host: 'host2', source: 'rsa.csr' }))).toBe('PKI_ERR_KEY_TYPE');
    const p384 = join(dir.path, 'p384.key');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-out', p384], { stdio: 'ignore' });
    const csr384 = execFileSync('openssl', ['req', '-new', '-key', p384, '-subj', '/CN=db', '-addext', 'extendedKeyUsage=clientAuth'], { encoding: 'utf8' });
    expect(codeOf(() => signer.signCsr(topology, { csrPem: csr384, host: 'host2', source: 'p384.csr' }))).toBe('PKI_ERR_KEY_TYPE');
  });

  it('signs an openssl-made P-256 CSR once --kind says which certificate it is', () => {
    const keyFile = join(dir.path, 'p256.key');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile], { stdio: 'ignore' });
    const csrPem = execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', '/CN=db', '-addext', 'subjectAltName=DNS:db.mesh.internal'], { encoding: 'utf8' });
    expect(codeOf(() => signer.signCsr(topology, { csrPem, host: 'host2', source: 'p256.csr' }))).toBe('PKI_ERR_CSR_INVALID');
    const signed = signer.signCsr(topology, { csrPem, host: 'host2', kind: 'client', source: 'p256.csr' });
    writeFileSync(join(dir.path, 'p256.pem'), signed.pem);
    expect(openssl(['verify', '-CAfile', ca.files.cert, '-purpose', 'sslclient', join(dir.path, 'p256.pem')]).status).toBe(0);
  });

  it('refuses names the CA\'s Name Constraints do not cover, naming the fix', async () => {
    // A service added after the CA was made: its single-label name is not permitted yet.
    const grown: Topology = {
      ...topology,
      credentials: { ...topology.credentials, db: { ...topology.credentials.db!, extra_san: ['reports.example.org'] } },
    };
    const csrPem = await csrFor('db', 'client', []);
    const serverCsr = await csrFor('db', 'server', [toSan('reports.example.org')]);
    expect(codeOf(() => signer.signCsr(grown, { csrPem: serverCsr, host: 'host2', source: 'x.csr' }))).toBe('PKI_ERR_NAME_CONSTRAINTS');
    expect(codeOf(() => signer.signCsr(grown, { csrPem, host: 'host2', source: 'x.csr' }))).toBeUndefined();
    // Rerunning init widens the constraints with the same key: now it signs.
    const widened = await initCa({ caDir: ca.files.dir, topology: grown });
    expect(widened.action).toBe('updated');
    expect(widened.ca.constraints?.dns).toContain('reports.example.org');
    expect(codeOf(() => new LeafSigner(widened.ca).signCsr(grown, { csrPem: serverCsr, host: 'host2', source: 'x.csr' }))).toBeUndefined();
    expect((await initCa({ caDir: ca.files.dir, topology: grown })).action).toBe('unchanged');
    expect(readFileSync(ca.files.key, 'utf8')).toBe(readFileSync(widened.ca.files.key, 'utf8'));
  });

  it('certifies a name asked for twice once', async () => {
    const signed = signer.signCsr(topology, { csrPem: await csrFor('db', 'client', [toSan('db'), toSan('DB'), toSan('db.mesh.internal')]), host: 'host2', source: 'x.csr' });
    expect(openssl(['x509', '-noout', '-ext', 'subjectAltName'], signed.pem).stdout).toMatch(/\n\s+DNS:db, DNS:db\.mesh\.internal, URI:spiffe:\/\/mesh\.internal\/host\/host2\/credential\/db\n$/);
  });

  it('refuses a CA directory whose key is missing or does not belong to its certificate', async () => {
    const broken = join(dir.path, 'broken-ca');
    const made = (await initCa({ caDir: broken, topology })).ca;
    const other = (await initCa({ caDir: join(dir.path, 'other-ca'), topology })).ca;
    writeFileSync(made.files.key, readFileSync(other.files.key));
    expect(codeOf(() => loadCa(broken))).toBe('PKI_ERR_CA_INVALID');
    rmSync(made.files.key);
    expect(await asyncCodeOf(initCa({ caDir: broken, topology }))).toBe('PKI_ERR_CA_INVALID');
    expect(codeOf(() => loadCa(join(dir.path, 'no-ca')))).toBe('PKI_ERR_CA_MISSING');
  });

  it('signs for the credential\'s own lifetime (services.yml lifetime: 24h); --lifetime still wins', async () => {
    const dir24 = join(dir.path, 'lifetime');
    // Both services listing db must agree, so both get it.
    const services = readFileSync(EXAMPLE_SERVICES, 'utf8').replace(/^( +)- name: db\b(.*)$/gm, '$1- name: db$2\n$1  lifetime: 24h');
    const short = topologyOf(dir24, services, readFileSync(EXAMPLE_INVENTORY, 'utf8'));
    expect(short.credentials.db!.lifetime_ms).toBe(86_400_000);
    // Inputs that do not set it carry no field (format_version 1 and the golden files unchanged).
    expect('lifetime_ms' in topology.credentials.db!).toBe(false);
    const now = new Date('2026-06-01T00:00:00Z');
    const csrPem = await csrFor('db', 'client', []);
    const signed = signer.signCsr(short, { csrPem, host: 'host2', source: 'x.csr', now });
    expect(signed.notAfter.getTime() - now.getTime()).toBe(86_400_000);
    const flagged = signer.signCsr(short, { csrPem, host: 'host2', source: 'x.csr', now, lifetimeMs: 2 * 86_400_000 });
    expect(flagged.notAfter.getTime() - now.getTime()).toBe(2 * 86_400_000);
    // And a bad value is a config error with file, line and key.
    writeFileSync(join(dir24, 'services.yml'), services.replace('lifetime: 24h', 'lifetime: 30s'));
    expect(() => topologyOf(dir24, readFileSync(join(dir24, 'services.yml'), 'utf8'), readFileSync(EXAMPLE_INVENTORY, 'utf8'))).toThrow(/CONFIG_ERR_VALUE.*lifetime.*30s/);
  });

  it('refuses a lifetime outside the bounds', async () => {
    const csrPem = await csrFor('db', 'client', []);
    expect(codeOf(() => signer.signCsr(topology, { csrPem, host: 'host2', source: 'x.csr', lifetimeMs: 1000 }))).toBe('PKI_ERR_VALIDITY');
  });
});
