/**
 * Issued material in real TLS stacks: openssl verify/x509/s_server/s_client
 * and curl against a Node TLS server, with the example mesh's credentials.
 * Every negative case is refused by the real peer, not by our code.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeafSigner, generateKeyPair, initCa, issueMeshCredentials, loadCa, makeCsr, revoke } from '../../src/pki/index.js';
import type { Ca } from '../../src/pki/testing.js';
import { exampleTopology, openssl, runAsync, sServer, scratch } from './support.js';

const topology = exampleTopology();
const dir = scratch('tls');
const cred = (host: string, name: string, kind: 'client' | 'server', file: 'cert.pem' | 'private_key.pem'): string => join(dir.path, 'credentials', host, 'x509', name, kind, file);
const caPem = (): string => join(dir.path, 'ca', 'ca.pem');
const DAY = 86_400_000;

let ca: Ca;
const extra = {
  foreign: { cert: '', key: '' },
  expired: { cert: '', key: '' },
  revoked: { cert: '', key: '' },
  outsideConstraints: { cert: '', key: '' },
  outsideIpConstraints: { cert: '', key: '' },
};

/** A client certificate for credential db made from a fresh key, signed by `signer` at `now`. */
async function dbClient(name: keyof typeof extra, signer: LeafSigner, now?: Date): Promise<string> {
  const key = generateKeyPair();
  const csrPem = await makeCsr({ privateKeyPem: key.privateKeyPem, credential: 'db', kind: 'client', sans: [] });
  const signed = signer.signCsr(topology, { csrPem, host: 'host3', source: `${name}.csr`, now });
  extra[name] = { cert: join(dir.path, `${name}.pem`), key: join(dir.path, `${name}.key`) };
  writeFileSync(extra[name].cert, signed.pem);
  writeFileSync(extra[name].key, key.privateKeyPem);
  return signed.serial;
}

beforeAll(async () => {
  await issueMeshCredentials({ topology, stateDir: dir.path });
  ca = loadCa(join(dir.path, 'ca'));
  const other = (await initCa({ caDir: join(dir.path, 'other-ca'), topology })).ca;
  await dbClient('foreign', new LeafSigner(other));
  await dbClient('expired', new LeafSigner(ca), new Date(Date.now() - 120 * DAY));
  const serial = await dbClient('revoked', new LeafSigner(ca));
  await revoke(ca, serial, 'keyCompromise');
  // A server certificate outside the Name Constraints, made by openssl with the CA key: our signer would refuse it.
  const key = join(dir.path, 'outside.key');
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key], { stdio: 'ignore' });
  const csr = execFileSync('openssl', ['req', '-new', '-key', key, '-subj', '/CN=db'], { encoding: 'utf8' });
  writeFileSync(join(dir.path, 'outside.csr'), csr);
  writeFileSync(join(dir.path, 'outside.ext'), 'subjectAltName=DNS:db.evil.example.org,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n');
  execFileSync('openssl', ['x509', '-req', '-in', join(dir.path, 'outside.csr'), '-CA', caPem(), '-CAkey', ca.files.key, '-CAcreateserial', '-days', '30', '-extfile', join(dir.path, 'outside.ext'), '-out', join(dir.path, 'outside.pem')], { stdio: 'ignore' });
  extra.outsideConstraints = { cert: join(dir.path, 'outside.pem'), key };
  // And one whose only SAN is an address outside every permitted range (names inside).
  writeFileSync(join(dir.path, 'outside-ip.ext'), 'subjectAltName=DNS:db.mesh.internal,IP:10.9.9.9\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n');
  execFileSync('openssl', ['x509', '-req', '-in', join(dir.path, 'outside.csr'), '-CA', caPem(), '-CAkey', ca.files.key, '-CAcreateserial', '-days', '30', '-extfile', join(dir.path, 'outside-ip.ext'), '-out', join(dir.path, 'outside-ip.pem')], { stdio: 'ignore' });
  extra.outsideIpConstraints = { cert: join(dir.path, 'outside-ip.pem'), key };
});
afterAll(() => dir.remove());

describe('openssl verify and x509 -text', () => {
  const issued = () =>
    Object.values(topology.hosts).flatMap((host) =>
      host.credentials.flatMap((name) => {
        const c = topology.credentials[name]!;
        return [...(c.enable_client ? [{ host: host.name, name, kind: 'client' as const }] : []), ...(c.enable_server ? [{ host: host.name, name, kind: 'server' as const }] : [])];
      }),
    );

  it('verifies every issued chain for its purpose and refuses the other purpose', () => {
    const all = issued();
    expect(all.length).toBe(7);
    for (const { host, name, kind } of all) {
      const file = cred(host, name, kind, 'cert.pem');
      const right = openssl(['verify', '-CAfile', caPem(), '-purpose', kind === 'server' ? 'sslserver' : 'sslclient', file]);
      expect(right.stdout, `${host} ${name} ${kind}`).toBe(`${file}: OK\n`);
      const wrong = openssl(['verify', '-CAfile', caPem(), '-purpose', kind === 'server' ? 'sslclient' : 'sslserver', file]);
      expect(wrong.status).not.toBe(0);
      expect(wrong.stdout + wrong.stderr).toContain('unsuitable certificate purpose');
    }
  });

  /**
   * Every certificate of the example mesh, as openssl prints it. Written out by hand from the issue's
   * list (svc, svc.domain, host.svc, host.svc.domain, shard.svc.domain, svc-master forms on the master
   * only, FQDN, localhost, every address, 127.0.0.1, ::1, extra_san, the workload identity URI), not
   * computed by our code.
   */
  const EXPECTED_SERVER_SANS: Readonly<Record<string, string>> = {
    'host1 web':
      'DNS:web, DNS:web.mesh.internal, DNS:host1.web, DNS:host1.web.mesh.internal, DNS:host1.mesh.internal, DNS:localhost, DNS:www.example.com, ' +
      'IP Address:127.0.1.1, IP Address:100.64.0.1, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, URI:spiffe://mesh.internal/host/host1/credential/web',
    // host2 is db's master (and shard a); db-backup runs beside it without a master.
    'host2 db':
      'DNS:db, DNS:db.mesh.internal, DNS:host2.db, DNS:host2.db.mesh.internal, DNS:a.db.mesh.internal, DNS:db-master, DNS:db-master.mesh.internal, ' +
      'DNS:db-backup, DNS:db-backup.mesh.internal, DNS:host2.db-backup, DNS:host2.db-backup.mesh.internal, DNS:a.db-backup.mesh.internal, ' +
      'DNS:host2.mesh.internal, DNS:localhost, IP Address:127.0.1.2, IP Address:100.64.0.2, IP Address:100.64.1.2, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, URI:spiffe://mesh.internal/host/host2/credential/db',
    // host3 is not the master: no db-master names.
    'host3 db':
      'DNS:db, DNS:db.mesh.internal, DNS:host3.db, DNS:host3.db.mesh.internal, DNS:b.db.mesh.internal, ' +
      'DNS:db-backup, DNS:db-backup.mesh.internal, DNS:host3.db-backup, DNS:host3.db-backup.mesh.internal, DNS:b.db-backup.mesh.internal, ' +
      'DNS:host3.mesh.internal, DNS:localhost, IP Address:127.0.1.3, IP Address:100.64.1.3, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, URI:spiffe://mesh.internal/host/host3/credential/db',
    // gw1 has a public address (127.0.2.10) beside its own.
    'gw1 gateway':
      'DNS:gateway, DNS:gateway.mesh.internal, DNS:gw1.gateway, DNS:gw1.gateway.mesh.internal, DNS:gw1.mesh.internal, DNS:localhost, ' +
      'IP Address:127.0.1.10, IP Address:127.0.2.10, IP Address:100.64.0.10, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, URI:spiffe://mesh.internal/host/gw1/credential/gateway',
  };

  it('shows the exact SANs, EKU and key usage of every server certificate', () => {
    for (const [which, sans] of Object.entries(EXPECTED_SERVER_SANS)) {
      const [host, name] = which.split(' ') as [string, string];
      const text = openssl(['x509', '-noout', '-text', '-in', cred(host, name, 'server', 'cert.pem')]).stdout;
      expect(text, which).toContain(`Subject: CN = ${name}\n`);
      expect(/X509v3 Subject Alternative Name: \n\s+(.*)\n/.exec(text)?.[1], which).toBe(sans);
      expect(text, which).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Server Authentication\n/);
      expect(text, which).toMatch(/X509v3 Key Usage: critical\n\s+Digital Signature\n/);
      expect(text, which).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE\n/);
      expect(text, which).toContain('Public Key Algorithm: id-ecPublicKey');
      expect(text, which).toContain('NIST CURVE: P-256');
      expect(text, which).toContain('Signature Algorithm: ecdsa-with-SHA256');
    }
  });

  it('shows CN, SANs and EKU of every client certificate; none for enable_client: false', () => {
    for (const [host, name] of [['host1', 'web'], ['host2', 'db'], ['host3', 'db']] as const) {
      const text = openssl(['x509', '-noout', '-text', '-in', cred(host, name, 'client', 'cert.pem')]).stdout;
      expect(text, `${host} ${name}`).toContain(`Subject: CN = ${name}\n`);
      expect(/X509v3 Subject Alternative Name: \n\s+(.*)\n/.exec(text)?.[1], `${host} ${name}`).toBe(`DNS:${name}, DNS:${name}.mesh.internal, URI:spiffe://mesh.internal/host/${host}/credential/${name}`);
      expect(text, `${host} ${name}`).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Client Authentication\n/);
      expect(text).toContain('NIST CURVE: P-256');
    }
    // The gateway credential has enable_client: false.
    expect(existsSync(join(dir.path, 'credentials', 'gw1', 'x509', 'gateway', 'client'))).toBe(false);
    expect(existsSync(cred('gw1', 'gateway', 'server', 'cert.pem'))).toBe(true);
  });

  it('shows the CA\'s critical Name Constraints', () => {
    const text = openssl(['x509', '-noout', '-text', '-in', caPem()]).stdout;
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:TRUE, pathlen:0\n/);
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign\n/);
    const permitted = /X509v3 Name Constraints: critical\n\s+Permitted:\n((?:\s+(?:DNS|IP):.*\n)+)/.exec(text)?.[1]?.trim().split(/\n\s*/);
    expect(permitted).toEqual([
      'DNS:db',
      'DNS:db-backup',
      'DNS:db-master',
      'DNS:gateway',
      'DNS:localhost',
      'DNS:mesh.internal',
      'DNS:web',
      'DNS:www.example.com',
      'IP:100.64.0.0/255.255.255.0',
      'IP:100.64.1.0/255.255.255.0',
      'IP:127.0.0.0/255.0.0.0',
      'IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF',
    ]);
  });

  it('refuses a certificate from another CA, an expired one, a revoked one and one outside the Name Constraints', () => {
    const foreign = openssl(['verify', '-CAfile', caPem(), extra.foreign.cert]);
    expect(foreign.stdout + foreign.stderr).toContain('unable to get local issuer certificate');
    const expired = openssl(['verify', '-CAfile', caPem(), extra.expired.cert]);
    expect(expired.stdout + expired.stderr).toContain('certificate has expired');
    const crl = join(dir.path, 'ca', 'crl.pem');
    expect(openssl(['verify', '-CAfile', caPem(), extra.revoked.cert]).status).toBe(0);
    const revoked = openssl(['verify', '-CAfile', caPem(), '-CRLfile', crl, '-crl_check', extra.revoked.cert]);
    expect(revoked.stdout + revoked.stderr).toContain('certificate revoked');
    const outside = openssl(['verify', '-CAfile', caPem(), extra.outsideConstraints.cert]);
    expect(outside.stdout + outside.stderr).toContain('permitted subtree violation');
    const outsideIp = openssl(['verify', '-CAfile', caPem(), extra.outsideIpConstraints.cert]);
    expect(outsideIp.stdout + outsideIp.stderr).toContain('permitted subtree violation');
  });

  it('signs a CRL that openssl accepts, listing the revoked serial with its reason', () => {
    const text = openssl(['crl', '-in', join(dir.path, 'ca', 'crl.pem'), '-CAfile', caPem(), '-noout', '-text']);
    expect(text.stderr).toContain('verify OK');
    expect(text.stdout).toContain('Key Compromise');
    const serial = openssl(['x509', '-noout', '-serial', '-in', extra.revoked.cert]).stdout.trim().split('=')[1];
    expect(text.stdout).toContain(`Serial Number: ${serial}`);
  });
});

describe('mutual TLS with openssl s_server and s_client', () => {
  const serverArgs = (crl?: string) => [
    '-cert', cred('host2', 'db', 'server', 'cert.pem'),
    '-key', cred('host2', 'db', 'server', 'private_key.pem'),
    '-CAfile', caPem(), '-Verify', '1', '-verify_return_error',
    ...(crl === undefined ? [] : ['-CRL', crl, '-crl_check']),
  ];
  const client = (port: number, cert: string, key: string) =>
    runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', cert, '-key', key, '-CAfile', caPem(), '-verify_return_error', '-verify_hostname', 'db-master.mesh.internal']);

  it('completes a handshake with both sides verified', async () => {
    const server = await sServer(serverArgs());
    const result = await client(server.port, cred('host3', 'db', 'client', 'cert.pem'), cred('host3', 'db', 'client', 'private_key.pem'));
    const log = await server.stop();
    expect(result.stdout).toContain('Verified peername: db-master.mesh.internal');
    expect(result.stdout).toContain('Verify return code: 0 (ok)');
    expect(log).toContain('Client certificate');
    expect(log).toContain('subject=CN = db');
    expect(log).not.toContain('verify error');
  });

  for (const [what, pick, expected] of [
    ['from another CA', () => extra.foreign, 'unable to get local issuer certificate'],
    ['that has expired', () => extra.expired, 'certificate has expired'],
    ['that is revoked (CRL)', () => extra.revoked, 'certificate revoked'],
  ] as const) {
    it(`refuses a client certificate ${what}`, async () => {
      const server = await sServer(serverArgs(join(dir.path, 'ca', 'crl.pem')));
      const { cert, key } = pick();
      const result = await client(server.port, cert, key);
      const log = await server.stop();
      expect(log).toContain(`verify error:${expected}`);
      // The server is the one refusing (with TLS 1.3 the client may exit before it reads the alert).
      expect(log).not.toContain('Client certificate');
      expect(result.stdout).toContain('CONNECTED');
    });
  }

  it('client refuses a server name outside the SANs', async () => {
    const server = await sServer(['-cert', cred('host2', 'db', 'server', 'cert.pem'), '-key', cred('host2', 'db', 'server', 'private_key.pem')]);
    const result = await runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${server.port}`, '-CAfile', caPem(), '-verify_return_error', '-verify_hostname', 'web.mesh.internal']);
    await server.stop();
    expect(result.stdout + result.stderr).toContain('hostname mismatch');
  });
});

describe('curl against a Node TLS server', () => {
  const servers: Server[] = [];
  const start = (host: string, cert: string, key: string, crl?: string): Promise<number> =>
    new Promise((resolve) => {
      const server = createServer(
        { cert: readFileSync(cert), key: readFileSync(key), ca: readFileSync(caPem()), requestCert: true, rejectUnauthorized: true, ...(crl === undefined ? {} : { crl: readFileSync(crl) }) },
        (req, res) => res.end(`hello ${String((req.socket as TLSSocket).getPeerCertificate().subject?.CN)}\n`),
      );
      server.on('tlsClientError', () => undefined);
      servers.push(server);
      server.listen(0, host, () => resolve((server.address() as AddressInfo).port));
    });
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
  });

  const curl = (url: string, extraArgs: readonly string[], clientCert = cred('host3', 'db', 'client', 'cert.pem'), clientKey = cred('host3', 'db', 'client', 'private_key.pem')) =>
    runAsync('curl', ['--silent', '--show-error', '--max-time', '10', '--cacert', caPem(), '--cert', clientCert, '--key', clientKey, ...extraArgs, url]);

  /** The SANs of a certificate as openssl reads them ("DNS:x", "IP Address:y"). */
  const opensslSans = (file: string): { type: 'dns' | 'ip'; value: string }[] =>
    (/X509v3 Subject Alternative Name: \n\s+(.*)\n/.exec(openssl(['x509', '-noout', '-ext', 'subjectAltName', '-in', file]).stdout)?.[1] ?? '')
      .split(', ')
      // The identity URI is no host name: curl has nothing to check it against.
      .filter((entry) => !entry.startsWith('URI:'))
      .map((entry) => (entry.startsWith('DNS:') ? { type: 'dns' as const, value: entry.slice(4) } : { type: 'ip' as const, value: entry.replace(/^IP Address:/, '') }));

  it('verifies every server certificate for every name form and address in it (curl hostname checks)', async () => {
    let checked = 0;
    for (const [host, name] of [['host1', 'web'], ['host2', 'db'], ['host3', 'db'], ['gw1', 'gateway']] as const) {
      const cert = cred(host, name, 'server', 'cert.pem');
      const key = cred(host, name, 'server', 'private_key.pem');
      const port = await start('127.0.0.1', cert, key);
      const port6 = await start('::1', cert, key);
      const sans = opensslSans(cert);
      expect(sans.length, `${host} ${name}`).toBeGreaterThan(8);
      for (const san of sans) {
        let result;
        if (san.type === 'dns') result = await curl(`https://${san.value}:${port}/`, ['--resolve', `${san.value}:${port}:127.0.0.1`]);
        else if (san.value === '0:0:0:0:0:0:0:1') result = await curl(`https://[::1]:${port6}/`, []);
        else if (san.value === '127.0.0.1') result = await curl(`https://127.0.0.1:${port}/`, []);
        // Other addresses (IPv4 in this mesh): curl checks the certificate against that address but connects to loopback only.
        else {
          expect(san.value).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
          result = await curl(`https://${san.value}:${port}/`, ['--connect-to', `${san.value}:${port}:127.0.0.1:${port}`]);
        }
        const label = `${host} ${name} ${san.type}:${san.value}`;
        expect({ label, out: result.stdout, err: result.stderr }).toEqual({ label, out: 'hello db\n', err: '' });
        checked++;
      }
    }
    // 11 (web) + 19 (db master) + 16 (db) + 11 (gateway): every SAN listed in the certificates above.
    expect(checked).toBe(57);
  });

  it('refuses names a host is not entitled to: master names on a non-master, another host\'s names and addresses', async () => {
    const refusals: [string, string, string][] = [
      ['host3', 'db', 'db-master.mesh.internal'],
      ['host3', 'db', 'db-master'],
      ['host3', 'db', 'host2.db.mesh.internal'],
      ['host3', 'db', 'a.db.mesh.internal'],
      ['host1', 'web', 'db.mesh.internal'],
      ['gw1', 'gateway', 'host1.mesh.internal'],
    ];
    for (const [host, name, target] of refusals) {
      const port = await start('127.0.0.1', cred(host, name, 'server', 'cert.pem'), cred(host, name, 'server', 'private_key.pem'));
      const result = await curl(`https://${target}:${port}/`, ['--resolve', `${target}:${port}:127.0.0.1`]);
      expect({ host, target, status: result.status }).toEqual({ host, target, status: 60 });
      expect(result.stderr).toContain('no alternative certificate subject name matches target host name');
    }
    const port = await start('127.0.0.1', cred('gw1', 'gateway', 'server', 'cert.pem'), cred('gw1', 'gateway', 'server', 'private_key.pem'));
    const address = await curl(`https://127.0.1.2:${port}/`, ['--connect-to', `127.0.1.2:${port}:127.0.0.1:${port}`]);
    expect(address.status).toBe(60);
  });

  it('refuses a server name and an address outside the SANs', async () => {
    const port = await start('127.0.0.1', cred('host2', 'db', 'server', 'cert.pem'), cred('host2', 'db', 'server', 'private_key.pem'));
    const name = await curl(`https://host3.db.mesh.internal:${port}/`, ['--resolve', `host3.db.mesh.internal:${port}:127.0.0.1`]);
    expect(name.status).toBe(60);
    expect(name.stderr).toContain('no alternative certificate subject name matches target host name');
    const address = await curl(`https://127.0.1.3:${port}/`, ['--connect-to', `127.0.1.3:${port}:127.0.0.1:${port}`]);
    expect(address.status).toBe(60);
  });

  it('refuses a server certificate outside the CA\'s Name Constraints', async () => {
    const port = await start('127.0.0.1', extra.outsideConstraints.cert, extra.outsideConstraints.key);
    const result = await curl(`https://db.evil.example.org:${port}/`, ['--resolve', `db.evil.example.org:${port}:127.0.0.1`]);
    expect(result.status).toBe(60);
    expect(result.stderr).toContain('permitted subtree violation');
    // The same server's IP SAN is inside the constraints, but the chain is still refused as a whole.
    expect((await curl(`https://127.0.0.1:${port}/`, [])).status).toBe(60);
    const ipPort = await start('127.0.0.1', extra.outsideIpConstraints.cert, extra.outsideIpConstraints.key);
    const ip = await curl(`https://10.9.9.9:${ipPort}/`, ['--connect-to', `10.9.9.9:${ipPort}:127.0.0.1:${ipPort}`]);
    expect(ip.status).toBe(60);
    expect(ip.stderr).toContain('permitted subtree violation');
  });

  it('the server refuses client certificates from another CA, expired, or revoked (CRL)', async () => {
    const port = await start('127.0.0.1', cred('host2', 'db', 'server', 'cert.pem'), cred('host2', 'db', 'server', 'private_key.pem'), join(dir.path, 'ca', 'crl.pem'));
    expect((await curl(`https://127.0.0.1:${port}/`, [])).stdout).toBe('hello db\n');
    for (const bad of [extra.foreign, extra.expired, extra.revoked]) {
      const result = await curl(`https://127.0.0.1:${port}/`, [], bad.cert, bad.key);
      // 35: TLS alert during the handshake, 52/56: the server closed the connection after it (TLS 1.3);
      // not 58 (curl could not use the certificate) nor 60 (curl refused the server).
      expect([35, 52, 56], `${bad.cert}: ${result.stderr}`).toContain(result.status);
      expect(result.stdout).toBe('');
    }
    // Without a client certificate at all.
    const none = await runAsync('curl', ['--silent', '--max-time', '10', '--cacert', caPem(), `https://127.0.0.1:${port}/`]);
    expect(none.status).not.toBe(0);
  });
});
