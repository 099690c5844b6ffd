/**
 * `meshplane pki ...` as an operator runs it: the host/controller flow (keys
 * never leave the host directory), batch signing, revocation, status, and the
 * errors: code on stderr, exit 1 for refusals, 2 for misuse.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, makeCsr, writeStatusMetrics } from '../../src/pki/index.js';
import { writeTopology } from '../../src/topology/index.js';
import { CLI, meshplane, run, runWithoutBlocking } from '../support/run.js';
import { exampleTopology, openssl, scratch, topologyOf } from './support.js';

const dir = scratch('cli');
const topologyFile = join(dir.path, 'topology.json');
const caDir = join(dir.path, 'controller', 'ca');
const host2 = join(dir.path, 'host2');

/** As root the CLI creates <name>-credentials groups: remove the ones this file created. */
const GROUPS = ['db-credentials', 'web-credentials', 'gateway-credentials'];
let existingGroups: string[] = [];

beforeAll(() => {
  writeTopology(topologyFile, exampleTopology());
  existingGroups = GROUPS.filter((g) => spawnSync('getent', ['group', g]).status === 0);
});
afterAll(() => {
  for (const group of GROUPS) if (!existingGroups.includes(group)) spawnSync('groupdel', [group]);
  dir.remove();
});

describe('meshplane pki: host and controller', () => {
  it('init creates the CA once and reports its constraints; a rerun changes nothing', () => {
    const first = meshplane(['pki', 'init', '--ca-dir', caDir, '-t', topologyFile]);
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    expect(first.stdout).toContain('CA created');
    expect(first.stdout).toContain('permitted names:  db, db-backup, db-master, gateway, localhost, mesh.internal, web, www.example.com');
    const again = meshplane(['pki', 'init', '--ca-dir', caDir, '-t', topologyFile]);
    expect(again.stdout).toContain('CA unchanged');
    expect(readdirSync(caDir).sort()).toEqual(['ca.pem', 'ca_key.pem', 'crl.pem']);
  });

  it('request makes the key and a CSR on the host; sign and install complete the flow', () => {
    for (const kind of ['client', 'server']) {
      const request = meshplane(['pki', 'request', '-t', topologyFile, '--host', 'host2', '--credential', 'db', '--kind', kind, '--credentials-root', host2]);
      expect(request.status).toBe(0);
      expect(request.stdout).toContain(`created private key for db ${kind}`);
      const csr = join(host2, 'x509', 'db', kind, 'request.csr');
      expect(readFileSync(csr, 'utf8')).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----/);
      // The controller sees only the CSR.
      const signedFile = join(dir.path, 'controller', `db-${kind}.pem`);
      const sign = meshplane(['pki', 'sign', '--ca-dir', caDir, '-t', topologyFile, '--host', 'host2', '--csr', csr, '--out', signedFile]);
      expect(sign.status).toBe(0);
      expect(sign.stderr).toContain(`signed ${kind} certificate of db for host2`);
      const install = meshplane(['pki', 'install', '--credential', 'db', '--kind', kind, '--cert', signedFile, '--ca', join(caDir, 'ca.pem'), '--credentials-root', host2]);
      expect(install.stdout).toBe(`meshplane pki: db ${kind}: certificate installed\n`);
      const again = meshplane(['pki', 'install', '--credential', 'db', '--kind', kind, '--cert', signedFile, '--ca', join(caDir, 'ca.pem'), '--credentials-root', host2]);
      expect(again.stdout).toContain('nothing changed');
    }
    const verify = run('openssl', ['verify', '-CAfile', join(host2, 'x509', 'db', 'ca.pem'), '-purpose', 'sslserver', join(host2, 'x509', 'db', 'server', 'cert.pem')]);
    expect(verify.stdout).toContain(': OK');
  });

  it('request makes no CSR while the certificate is good', () => {
    const result = meshplane(['pki', 'request', '-t', topologyFile, '--host', 'host2', '--credential', 'db', '--kind', 'server', '--credentials-root', host2, '--out', join(dir.path, 'none.csr')]);
    expect(result.stdout).toBe('meshplane pki: db server: certificate is up to date, no request made\n');
    expect(existsSync(join(dir.path, 'none.csr'))).toBe(false);
  });

  it('sign refuses a CSR from a host not entitled to it, naming the code, host and reason', () => {
    const csr = join(host2, 'x509', 'db', 'server', 'request.csr');
    const result = meshplane(['pki', 'sign', '--ca-dir', caDir, '-t', topologyFile, '--host', 'host1', '--csr', csr]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^meshplane pki: error PKI_ERR_NOT_ENTITLED: refusing .*request\.csr from host1: host host1 runs no service that uses credential db/);
  });

  it('fails with PKI_ERR_CA_MISSING without a CA, and usage errors exit 2', () => {
    const csr = join(host2, 'x509', 'db', 'server', 'request.csr');
    const missing = meshplane(['pki', 'sign', '--ca-dir', join(dir.path, 'nowhere'), '-t', topologyFile, '--host', 'host2', '--csr', csr]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('error PKI_ERR_CA_MISSING: no CA in');
    expect(meshplane(['pki']).status).toBe(2);
    const bogus = meshplane(['pki', 'bogus']);
    expect(bogus.status).toBe(2);
    expect(bogus.stderr).toContain('CLI_ERR_USAGE: unknown subcommand "bogus"');
    const noCa = meshplane(['pki', 'sign', '-t', topologyFile]);
    expect(noCa.status).toBe(2);
    expect(noCa.stderr).toContain('--ca-dir is required');
    expect(meshplane(['pki', 'request', '--host', 'host2', '--credential', 'db', '--kind', 'both', '-t', topologyFile]).status).toBe(2);
    expect(meshplane(['pki', '--help']).stdout).toContain('meshplane pki <subcommand>');
  });

  it('issue does all three for every credential of a host, then changes nothing', () => {
    const root = join(dir.path, 'host3');
    const first = meshplane(['pki', 'issue', '--ca-dir', caDir, '-t', topologyFile, '--host', 'host3', '--credentials-root', root]);
    expect(first.status).toBe(0);
    expect(first.stdout).toContain('meshplane pki: 2 issued, 0 unchanged');
    const second = meshplane(['pki', 'issue', '--ca-dir', caDir, '-t', topologyFile, '--host', 'host3', '--credentials-root', root]);
    expect(second.stdout).toContain('meshplane pki: 0 issued, 2 unchanged');
    const nothing = meshplane(['pki', 'issue', '--ca-dir', caDir, '-t', topologyFile, '--host', 'host4', '--credentials-root', join(dir.path, 'host4')]);
    expect(nothing.stdout).toContain('host host4 needs no credentials');
    const unknown = meshplane(['pki', 'issue', '--ca-dir', caDir, '-t', topologyFile, '--host', 'hots3', '--credentials-root', root]);
    expect(unknown.stderr).toContain('PKI_ERR_UNKNOWN_HOST: host "hots3" is not in the topology (did you mean "host3"?)');
  });

  it('revoke writes a CRL, is idempotent, and issue then replaces the revoked certificate', () => {
    const root = join(dir.path, 'host3');
    const cert = join(root, 'x509', 'db', 'client', 'cert.pem');
    const revoked = meshplane(['pki', 'revoke', '--ca-dir', caDir, '--cert', cert, '--reason', 'superseded']);
    expect(revoked.status).toBe(0);
    const serial = /serial ([0-9a-f]+) revoked/.exec(revoked.stdout)?.[1];
    expect(serial).toBeDefined();
    const again = meshplane(['pki', 'revoke', '--ca-dir', caDir, '--serial', serial!.toUpperCase()]);
    expect(again.stdout).toContain('was already revoked');
    const crlCheck = run('openssl', ['verify', '-CAfile', join(caDir, 'ca.pem'), '-CRLfile', join(caDir, 'crl.pem'), '-crl_check', cert]);
    expect(crlCheck.stdout + crlCheck.stderr).toContain('certificate revoked');
    // Before the CRL reaches the host, status sees the revocation in the CA's own CRL.
    const seenByCa = meshplane(['pki', 'status', '--credentials-root', root, '--ca-dir', caDir, '--json']);
    expect(seenByCa.status).toBe(1);
    const seenByCaReport = JSON.parse(seenByCa.stdout) as { credentials: { credential: string; kind: string; status: string; detail: string }[] };
    expect(seenByCaReport.credentials.find((c) => c.credential === 'db' && c.kind === 'client')).toMatchObject({ status: 'revoked', detail: `revoked by ${join(caDir, 'crl.pem')}` });
    // On the host: once the new CRL is there (Ansible copies it), request asks for a new certificate.
    writeFileSync(join(root, 'x509', 'db', 'crl.pem'), readFileSync(join(caDir, 'crl.pem')));
    const statusRevoked = meshplane(['pki', 'status', '--credentials-root', root, '--json']);
    expect(statusRevoked.status).toBe(1);
    const revokedReport = JSON.parse(statusRevoked.stdout) as { credentials: { credential: string; kind: string; status: string; detail: string }[] };
    expect(revokedReport.credentials.find((c) => c.credential === 'db' && c.kind === 'client')).toMatchObject({ status: 'revoked', detail: `revoked by ${join(root, 'x509', 'db', 'crl.pem')}` });
    expect(revokedReport.credentials.find((c) => c.credential === 'db' && c.kind === 'server')).toMatchObject({ status: 'ok' });
    const request = meshplane(['pki', 'request', '-t', topologyFile, '--host', 'host3', '--credential', 'db', '--kind', 'client', '--credentials-root', root]);
    expect(request.stdout).toContain(`(the certificate (serial ${serial!}) is revoked)`);
    const reissue = meshplane(['pki', 'issue', '--ca-dir', caDir, '-t', topologyFile, '--host', 'host3', '--credentials-root', root]);
    expect(reissue.stdout).toContain(`is revoked`);
    const fresh = run('openssl', ['verify', '-CAfile', join(caDir, 'ca.pem'), '-CRLfile', join(root, 'x509', 'db', 'crl.pem'), '-crl_check', cert]);
    expect(fresh.stdout).toContain(': OK');
    expect(meshplane(['pki', 'status', '--credentials-root', root]).status).toBe(0);
    expect(meshplane(['pki', 'revoke', '--ca-dir', caDir, '--serial', 'xyz']).stderr).toContain('PKI_ERR_SERIAL');
  });

  it('status lists every credential with expiry, writes metrics, and exits 1 on a broken certificate', () => {
    const metrics = join(dir.path, 'textfile', 'meshplane_pki.prom');
    mkdirSync(join(dir.path, 'textfile'), { recursive: true });
    const ok = meshplane(['pki', 'status', '--credentials-root', host2, '--metrics-file', metrics]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^CREDENTIAL\s+KIND\s+STATUS\s+EXPIRES\s+LEFT\s+DETAIL\ndb\s+client\s+ok\s+\S+Z\s+90d/);
    expect(readFileSync(metrics, 'utf8')).toMatch(/meshplane_pki_certificate_expiry_timestamp_seconds\{credential="db",kind="server",path="[^"]+"\} \d{10}\n/);
    copyFileSync(join(host2, 'x509', 'db', 'client', 'cert.pem'), join(dir.path, 'client-copy.pem'));
    writeFileSync(join(host2, 'x509', 'db', 'server', 'cert.pem'), readFileSync(join(dir.path, 'client-copy.pem')));
    const broken = meshplane(['pki', 'status', '--credentials-root', host2, '--json']);
    expect(broken.status).toBe(1);
    const report = JSON.parse(broken.stdout) as { credentials: { kind: string; status: string; detail: string }[] };
    expect(report.credentials.find((c) => c.kind === 'server')).toMatchObject({ status: 'invalid', detail: 'the certificate does not match the private key' });
    // The library writes the same format the CLI does.
    writeStatusMetrics(join(dir.path, 'textfile', 'lib.prom'), { credentials: [], files: [] });
    expect(readFileSync(join(dir.path, 'textfile', 'lib.prom'), 'utf8')).toContain('# TYPE meshplane_pki_status_timestamp_seconds gauge');
  });
});

describe('meshplane pki sign --csr-dir (batch)', () => {
  it('writes one file per host that install picks the right certificate from', () => {
    const csrDir = join(dir.path, 'batch-host2', 'csrs');
    const outDir = join(dir.path, 'batch-host2', 'out');
    mkdirSync(join(csrDir, 'host2'), { recursive: true });
    for (const kind of ['client', 'server']) copyFileSync(join(host2, 'x509', 'db', kind, 'request.csr'), join(csrDir, 'host2', `db.${kind}.csr`));
    const result = meshplane(['pki', 'sign', '--ca-dir', caDir, '-t', topologyFile, '--csr-dir', csrDir, '--out-dir', outDir]);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/signed 2 certificate\(s\) for 1 host\(s\) into .*; 0 refused/);
    expect(readdirSync(outDir)).toEqual(['host2.pem']);
    const bundle = readFileSync(join(outDir, 'host2.pem'), 'utf8');
    const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/g) ?? [];
    expect(blocks.length).toBe(2);
    // In CSR name order: db.client, then db.server.
    expect(openssl(['x509', '-noout', '-ext', 'extendedKeyUsage'], blocks[1]).stdout).toContain('TLS Web Server Authentication');
    const install = meshplane(['pki', 'install', '--credential', 'db', '--kind', 'server', '--cert', join(outDir, 'host2.pem'), '--ca', join(caDir, 'ca.pem'), '--credentials-root', host2]);
    expect(install.status).toBe(0);
    expect(readFileSync(join(host2, 'x509', 'db', 'server', 'cert.pem'), 'utf8')).toBe(blocks[1]);
    const wrong = meshplane(['pki', 'install', '--credential', 'web', '--kind', 'server', '--cert', join(outDir, 'host2.pem'), '--ca', join(caDir, 'ca.pem'), '--credentials-root', join(dir.path, 'host3')]);
    expect(wrong.stderr).toContain('PKI_ERR_KEY_MISSING');
  });

  it('signs a large directory on every core, refusing the bad CSRs by name, and replaces the output as a whole', async () => {
    const base = join(dir.path, 'batch-fleet');
    const HOSTS = 120;
    const hostsYaml = Array.from({ length: HOSTS }, (_, i) => `        f${String(i).padStart(3, '0')}: { ip: 198.18.2.${i + 10} }`).join('\n');
    topologyOf(
      join(base, 'in'),
      'app:\n  scheduling_group: fleet\n  ports: [7100]\n  service_credentials:\n    - { name: app, enable_server: false }\n',
      `all:\n  vars:\n    domain: fleet.test\n  children:\n    fleet:\n      hosts:\n${hostsYaml}\n`,
    );
    const fleetTopology = join(base, 'in', 'topology.json');
    const fleetCa = join(base, 'ca');
    expect(meshplane(['pki', 'init', '--ca-dir', fleetCa, '-t', fleetTopology, '--permit-ip', '198.18.2.0/24']).status).toBe(0);
    const key = generateKeyPair();
    const good = await makeCsr({ privateKeyPem: key.privateKeyPem, credential: 'app', kind: 'client', sans: [] });
    const csrDir = join(base, 'csrs');
    const outDir = join(base, 'out');
    for (let i = 0; i < HOSTS; i++) {
      mkdirSync(join(csrDir, `f${String(i).padStart(3, '0')}`), { recursive: true });
      writeFileSync(join(csrDir, `f${String(i).padStart(3, '0')}`, 'app.client.csr'), good);
    }
    writeFileSync(join(csrDir, 'f007', 'payroll.client.csr'), await makeCsr({ privateKeyPem: key.privateKeyPem, credential: 'payroll', kind: 'client', sans: [] }));
    mkdirSync(join(csrDir, 'nothost'));
    writeFileSync(join(csrDir, 'nothost', 'app.client.csr'), good);
    // Without blocking: 120 signatures and 120 openssl runs took minutes on a busy machine, and a
    // worker blocked for 60 s misses vitest's own RPC deadline.
    const result = await runWithoutBlocking(process.execPath, [CLI, 'pki', 'sign', '--ca-dir', fleetCa, '-t', fleetTopology, '--csr-dir', csrDir, '--out-dir', outDir, '--threads', '2']);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(new RegExp(`signed ${HOSTS} certificate\\(s\\) for ${HOSTS} host\\(s\\) into .* \\(2 thread\\(s\\)\\); 2 refused`));
    expect(result.stderr.split('\n').filter(Boolean).map((line) => /error (PKI_ERR_\w+)/.exec(line)?.[1])).toEqual(['PKI_ERR_UNKNOWN_CREDENTIAL', 'PKI_ERR_UNKNOWN_HOST']);
    const files = readdirSync(outDir).sort();
    expect(files.length).toBe(HOSTS);
    expect(files[0]).toBe('f000.pem');
    const verify = await runWithoutBlocking('openssl', ['verify', '-CAfile', join(fleetCa, 'ca.pem'), '-purpose', 'sslclient', ...files.map((f) => join(outDir, f))]);
    expect(verify.stdout.split('\n').filter((l) => l.endsWith(': OK')).length).toBe(HOSTS);
    const serials = new Set<string>();
    for (const f of files) serials.add((await runWithoutBlocking('openssl', ['x509', '-noout', '-serial', '-in', join(outDir, f)])).stdout);
    expect(serials.size).toBe(HOSTS);
    const first = readFileSync(join(outDir, files[0]!), 'utf8');
    rmSync(join(csrDir, 'nothost'), { recursive: true });
    const again = await runWithoutBlocking(process.execPath, [CLI, 'pki', 'sign', '--ca-dir', fleetCa, '-t', fleetTopology, '--csr-dir', csrDir, '--out-dir', outDir, '--threads', '1']);
    expect(again.stdout).toContain('(1 thread(s)); 1 refused');
    expect(readdirSync(base).sort()).toEqual(['ca', 'csrs', 'in', 'out']);
    expect(readdirSync(outDir).length).toBe(HOSTS);
    expect(readFileSync(join(outDir, files[0]!), 'utf8')).not.toBe(first);
  });
});
