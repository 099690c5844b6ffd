/**
 * `meshplane pki export --format p12`: the installed key, certificate and CA
 * as PKCS#12, read back by openssl (the right key for the certificate, the
 * chain) and by Java's keytool, written 0600 and atomically.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTopology } from '../../src/topology/index.js';
import { meshplane } from '../support/run.js';
import { exampleTopology, openssl, scratch } from './support.js';

const dir = scratch('export');
const topologyFile = join(dir.path, 'topology.json');
const caDir = join(dir.path, 'ca');
const root = join(dir.path, 'host2');
const passwordFile = join(dir.path, 'password');
const PASSWORD = 'correct horse battery';

beforeAll(() => {
  writeTopology(topologyFile, exampleTopology());
  writeFileSync(passwordFile, `${PASSWORD}\n`);
  expect(meshplane(['pki', 'init', '--ca-dir', caDir, '-t', topologyFile]).status).toBe(0);
  expect(meshplane(['pki', 'issue', '--ca-dir', caDir, '-t', topologyFile, '--host', 'host2', '--credentials-root', root, '--no-system-owners']).status).toBe(0);
});
afterAll(() => dir.remove());

/** The public key of a PEM key or certificate, as openssl prints it: the same text for a matching pair. */
const publicKeyOf = (args: readonly string[], input: string): string => openssl(args, input).stdout;

describe('pki export --format p12', () => {
  for (const kind of ['client', 'server'] as const) {
    it(`writes the ${kind} key, certificate and CA that openssl reads with the password`, () => {
      const out = join(dir.path, `db-${kind}.p12`);
      const result = meshplane(['pki', 'export', '--credential', 'db', '--kind', kind, '--credentials-root', root, '--format', 'p12', '--out', out, '--password-file', passwordFile]);
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`db ${kind} \\(serial [0-9A-F]+\\) exported to .*db-${kind}\\.p12 \\(PKCS#12, 0600\\)`));
      expect(statSync(out).mode & 0o777).toBe(0o600);
      // No temporary file left beside it.
      expect(readdirSync(dir.path).filter((f) => f.endsWith('.tmp'))).toEqual([]);

      const keyPem = openssl(['pkcs12', '-in', out, '-passin', `file:${passwordFile}`, '-nocerts', '-nodes']).stdout;
      const certsPem = openssl(['pkcs12', '-in', out, '-passin', `file:${passwordFile}`, '-nokeys']).stdout;
      expect(keyPem).toContain('-----BEGIN PRIVATE KEY-----');
      const blocks = certsPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
      expect(blocks).toHaveLength(2);
      const installed = openssl(['x509', '-noout', '-fingerprint', '-sha256', '-in', join(root, 'x509', 'db', kind, 'cert.pem')]).stdout;
      const ca = openssl(['x509', '-noout', '-fingerprint', '-sha256', '-in', join(root, 'x509', 'db', 'ca.pem')]).stdout;
      const fingerprints = blocks.map((pem) => openssl(['x509', '-noout', '-fingerprint', '-sha256'], `${pem}\n`).stdout);
      expect([...fingerprints].sort()).toEqual([installed, ca].sort());
      // The key in the file is the certificate's: their public parts are the same.
      const fromKey = publicKeyOf(['pkey', '-pubout'], keyPem);
      const fromCert = publicKeyOf(['x509', '-noout', '-pubkey'], `${blocks.find((_, i) => fingerprints[i] === installed)!}\n`);
      expect(fromKey).toContain('-----BEGIN PUBLIC KEY-----');
      expect(fromKey).toBe(fromCert);
      const info = openssl(['pkcs12', '-info', '-in', out, '-passin', `file:${passwordFile}`, '-noout']);
      expect(info.status).toBe(0);
      expect(info.stderr).toContain('Shrouded Keybag');
      // A wrong password is refused (MAC check).
      writeFileSync(join(dir.path, 'wrong'), 'not it\n');
      expect(openssl(['pkcs12', '-in', out, '-passin', `file:${join(dir.path, 'wrong')}`, '-noout']).status).not.toBe(0);
    });
  }

  it('is listed by keytool as a PrivateKeyEntry with the certificate chain', () => {
    const out = join(dir.path, 'db-client.p12');
    const list = spawnSync('keytool', ['-list', '-v', '-storetype', 'PKCS12', '-keystore', out, '-storepass', PASSWORD], { encoding: 'utf8' });
    expect(list.stderr).toBe('');
    expect(list.status).toBe(0);
    expect(list.stdout).toContain('Your keystore contains 1 entry');
    expect(list.stdout).toContain('Entry type: PrivateKeyEntry');
    expect(list.stdout).toContain('Certificate chain length: 2');
    expect(list.stdout).toContain('Owner: CN=db');
  });

  it('refuses an empty password file and a credential that is not installed, naming the file', () => {
    writeFileSync(join(dir.path, 'empty'), '');
    const empty = meshplane(['pki', 'export', '--credential', 'db', '--kind', 'client', '--credentials-root', root, '--out', join(dir.path, 'x.p12'), '--password-file', join(dir.path, 'empty')]);
    expect(empty.status).toBe(1);
    expect(empty.stderr).toContain('PKI_ERR_EXPORT');
    const missing = meshplane(['pki', 'export', '--credential', 'web', '--kind', 'client', '--credentials-root', root, '--out', join(dir.path, 'x.p12'), '--password-file', passwordFile]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/PKI_ERR_READ.*x509\/web\/client\/private_key\.pem/);
    const format = meshplane(['pki', 'export', '--credential', 'db', '--kind', 'client', '--credentials-root', root, '--format', 'jks', '--out', join(dir.path, 'x.p12'), '--password-file', passwordFile]);
    expect(format.status).toBe(2);
  });
});
