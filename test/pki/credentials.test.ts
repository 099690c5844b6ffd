/**
 * Credential files on a host: exact modes and owners (as root, with real
 * users reading through `runuser`), idempotent reruns, reissue on a changed
 * SAN set or in the renewal window, install checks, and a full disk that
 * leaves the old pair intact.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeafSigner, credentialStatus, generateKeyPair, initCa, installCertificate, issueHost, loadCa, makeCsr, requestCertificate, revoke } from '../../src/pki/index.js';
import { statusMetrics } from '../../src/pki/testing.js';
import type { Ca } from '../../src/pki/testing.js';
import type { Topology } from '../../src/topology/index.js';
import { CLI } from '../support/run.js';
import { waitForOutput } from '../support/netns.js';
import { asyncCodeOf, codeOf, scratch, topologyOf } from './support.js';

const isRoot = process.getuid?.() === 0;
const DAY = 86_400_000;
/** Unique names: these tests create real system users and groups. */
const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
const NAME = `mppki${tag}`;
const GROUP = `${NAME}-credentials`;
const INSIDER = `mppkin${tag}`;
const OUTSIDER = `mppkout${tag}`;

const services = (extra = '') => `${NAME}:
  scheduling_group: app
  num_instances: all
  master_election: true
  ports: [7443]
  service_credentials:
    - name: ${NAME}
${extra}`;
const inventory = (overlayIp?: string) => `all:
  vars:
    domain: mesh.test
    net_overlays:
      - { name: pkiov, network: 100.64.20.0/24 }
  children:
    app:
      hosts:
        h1: { ip: 198.18.2.1${overlayIp === undefined ? '' : `, ip_pkiov: ${overlayIp}`} }
`;



const mode = (path: string): string => (statSync(path).mode & 0o7777).toString(8).padStart(4, '0');
const gidOf = (group: string): number => Number(execFileSync('getent', ['group', group], { encoding: 'utf8' }).split(':')[2]);
const fingerprint = (path: string) => {
  const s = statSync(path);
  return `${s.ino}:${s.mtimeMs}`;
};

describe('credential files', () => {
  const dir = scratch('files');
  const root = join(dir.path, 'root');
  let topology: Topology;
  let ca: Ca;
  const file = (kind: 'client' | 'server', name: 'cert.pem' | 'private_key.pem') => join(root, 'x509', NAME, kind, name);

  beforeAll(async () => {
    // Other users must be able to reach the files (mkdtemp makes 0700 directories).
    chmodSync(dir.path, 0o755);
    topology = topologyOf(join(dir.path, 'in'), services(), inventory());
    ca = (await initCa({ caDir: join(dir.path, 'ca'), topology })).ca;
  });
  afterAll(() => {
    if (isRoot) {
      for (const user of [INSIDER, OUTSIDER]) spawnSync('userdel', [user]);
      spawnSync('groupdel', [GROUP]);
    }
    dir.remove();
  });

  it('issues the client and server certificates the host needs', async () => {
    // A scratch root gets system owners only when asked (as root: the next tests check them).
    const results = await issueHost({ ca, topology, host: 'h1', root, manageOwnership: isRoot ? true : undefined });
    expect(results.map((r) => `${r.credential}/${r.kind}:${r.action}:${r.reason}`)).toEqual([`${NAME}/client:issued:no certificate yet`, `${NAME}/server:issued:no certificate yet`]);
    expect(readdirSync(join(root, 'x509', NAME)).sort()).toEqual(['ca.pem', 'client', 'crl.pem', 'server']);
    expect(readdirSync(join(root, 'x509', NAME, 'server')).sort()).toEqual(['cert.pem', 'private_key.pem']);
    expect(readFileSync(join(root, 'x509', NAME, 'ca.pem'), 'utf8')).toBe(readFileSync(ca.files.cert, 'utf8'));
  });

  it('gives keys 0440, certificates 0444 and the CA key 0600', () => {
    expect(mode(ca.files.key)).toBe('0600');
    for (const kind of ['client', 'server'] as const) {
      expect(mode(file(kind, 'private_key.pem'))).toBe('0440');
      expect(mode(file(kind, 'cert.pem'))).toBe('0444');
      expect(mode(join(root, 'x509', NAME, kind))).toBe('0750');
    }
    expect(mode(join(root, 'x509', NAME, 'ca.pem'))).toBe('0444');
    expect(mode(join(root, 'x509', NAME))).toBe('0755');
  });

  it.runIf(isRoot)('as root: keys are root:<name>-credentials (group created), certificates root:root', () => {
    const gid = gidOf(GROUP);
    for (const kind of ['client', 'server'] as const) {
      const key = statSync(file(kind, 'private_key.pem'));
      expect([key.uid, key.gid]).toEqual([0, gid]);
      const cert = statSync(file(kind, 'cert.pem'));
      expect([cert.uid, cert.gid]).toEqual([0, 0]);
      const kindDir = statSync(join(root, 'x509', NAME, kind));
      expect([kindDir.uid, kindDir.gid]).toEqual([0, gid]);
    }
  });

  it.runIf(isRoot)('as root: a user in the group can read the key, another user cannot', () => {
    execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--groups', GROUP, INSIDER]);
    execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', OUTSIDER]);
    for (const kind of ['client', 'server'] as const) {
      const inside = spawnSync('runuser', ['-u', INSIDER, '--', 'cat', file(kind, 'private_key.pem')], { encoding: 'utf8' });
      expect(inside.status).toBe(0);
      expect(inside.stdout).toBe(readFileSync(file(kind, 'private_key.pem'), 'utf8'));
      const outside = spawnSync('runuser', ['-u', OUTSIDER, '--', 'cat', file(kind, 'private_key.pem')], { encoding: 'utf8' });
      expect(outside.status).not.toBe(0);
      expect(outside.stderr).toContain('Permission denied');
      // The CA certificate stays readable by anyone.
      expect(spawnSync('runuser', ['-u', OUTSIDER, '--', 'cat', join(root, 'x509', NAME, 'ca.pem')]).status).toBe(0);
    }
  });

  it('changes nothing on a rerun', async () => {
    const before = [file('client', 'cert.pem'), file('client', 'private_key.pem'), file('server', 'cert.pem'), file('server', 'private_key.pem')].map(fingerprint);
    const results = await issueHost({ ca, topology, host: 'h1', root });
    expect(results.map((r) => r.action)).toEqual(['unchanged', 'unchanged']);
    expect([file('client', 'cert.pem'), file('client', 'private_key.pem'), file('server', 'cert.pem'), file('server', 'private_key.pem')].map(fingerprint)).toEqual(before);
  });

  it('reissues the server certificate (same key) when the host gets an overlay address', async () => {
    const key = readFileSync(file('server', 'private_key.pem'), 'utf8');
    const clientCert = fingerprint(file('client', 'cert.pem'));
    const grown = topologyOf(join(dir.path, 'in2'), services(), inventory('100.64.20.1'));
    const results = await issueHost({ ca, topology: grown, host: 'h1', root });
    expect(results.map((r) => `${r.kind}:${r.action}:${r.reason}`)).toEqual(['client:unchanged:undefined', 'server:issued:the SANs changed (+ip:100.64.20.1)']);
    expect(readFileSync(file('server', 'private_key.pem'), 'utf8')).toBe(key);
    expect(fingerprint(file('client', 'cert.pem'))).toBe(clientCert);
    expect(execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', file('server', 'cert.pem')], { encoding: 'utf8' })).toContain('IP Address:100.64.20.1');
    topology = grown;
  });

  it('reissues the server certificate when the master moves away, and again when it comes back', async () => {
    const clientCert = fingerprint(file('client', 'cert.pem'));
    const service = topology.services[NAME]!;
    expect(service.master).toBe('h1');
    const noMaster: Topology = { ...topology, services: { ...topology.services, [NAME]: { ...service, master: null } } };
    const lost = await issueHost({ ca, topology: noMaster, host: 'h1', root });
    expect(lost.map((r) => `${r.kind}:${r.action}:${r.reason}`)).toEqual(['client:unchanged:undefined', `server:issued:the SANs changed (-dns:${NAME}-master -dns:${NAME}-master.mesh.test)`]);
    const sans = execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', file('server', 'cert.pem')], { encoding: 'utf8' });
    expect(sans).not.toContain('-master');
    expect(sans).toContain(`DNS:h1.${NAME}.mesh.test`);
    const back = await issueHost({ ca, topology, host: 'h1', root });
    expect(back.map((r) => `${r.kind}:${r.action}:${r.reason}`)).toEqual(['client:unchanged:undefined', `server:issued:the SANs changed (+dns:${NAME}-master +dns:${NAME}-master.mesh.test)`]);
    expect(execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', file('server', 'cert.pem')], { encoding: 'utf8' })).toContain(`DNS:${NAME}-master, DNS:${NAME}-master.mesh.test`);
    expect(fingerprint(file('client', 'cert.pem'))).toBe(clientCert);
    expect((await issueHost({ ca, topology, host: 'h1', root })).map((r) => r.action)).toEqual(['unchanged', 'unchanged']);
  });

  it('issues only the kinds a credential enables (enable_client / enable_server)', async () => {
    const only = topologyOf(
      join(dir.path, 'in-kinds'),
      `${NAME}:\n  scheduling_group: app\n  ports: [7443]\n  service_credentials:\n    - { name: ${NAME}c, enable_server: false }\n    - { name: ${NAME}s, enable_client: false }\n`,
      inventory(),
    );
    const kindsCa = (await initCa({ caDir: join(dir.path, 'ca-kinds'), topology: only })).ca;
    const kindsRoot = join(dir.path, 'root-kinds');
    const results = await issueHost({ ca: kindsCa, topology: only, host: 'h1', root: kindsRoot, manageOwnership: false });
    expect(results.map((r) => `${r.credential}/${r.kind}:${r.action}`)).toEqual([`${NAME}c/client:issued`, `${NAME}s/server:issued`]);
    expect(readdirSync(join(kindsRoot, 'x509', `${NAME}c`)).sort()).toEqual(['ca.pem', 'client', 'crl.pem']);
    expect(readdirSync(join(kindsRoot, 'x509', `${NAME}s`)).sort()).toEqual(['ca.pem', 'crl.pem', 'server']);
    const purpose = (credential: string, kind: 'client' | 'server', as: string) =>
      spawnSync('openssl', ['verify', '-CAfile', kindsCa.files.cert, '-purpose', as, join(kindsRoot, 'x509', credential, kind, 'cert.pem')], { encoding: 'utf8' }).stdout;
    expect(purpose(`${NAME}c`, 'client', 'sslclient')).toContain(': OK');
    expect(purpose(`${NAME}s`, 'server', 'sslserver')).toContain(': OK');
  });

  it('keeps a certificate with more than a third of its life left and renews it in the last third', async () => {
    const day59 = new Date(Date.now() + 59 * DAY);
    expect((await issueHost({ ca, topology, host: 'h1', root, now: day59 })).map((r) => r.action)).toEqual(['unchanged', 'unchanged']);
    const day61 = new Date(Date.now() + 61 * DAY);
    const renewed = await issueHost({ ca, topology, host: 'h1', root, now: day61 });
    expect(renewed.map((r) => r.action)).toEqual(['issued', 'issued']);
    expect(renewed[0]?.reason).toMatch(/^less than a third of its life is left/);
  });

  it('install refuses a certificate for another key, from another CA, or without a key, and writes nothing', async () => {
    const before = readFileSync(file('client', 'cert.pem'), 'utf8');
    const otherKey = generateKeyPair();
    const csrPem = await makeCsr({ privateKeyPem: otherKey.privateKeyPem, credential: NAME, kind: 'client', sans: [] });
    const otherKeysCert = new LeafSigner(ca).signCsr(topology, { csrPem, host: 'h1', source: 'x' }).pem;
    expect(codeOf(() => installCertificate({ root, credential: NAME, kind: 'client', certPem: otherKeysCert, caPem: ca.certPem }))).toBe('PKI_ERR_CERT_MISMATCH');
    const otherCa = (await initCa({ caDir: join(dir.path, 'other-ca'), topology })).ca;
    const ownKey = readFileSync(file('client', 'private_key.pem'), 'utf8');
    const ownCsr = await makeCsr({ privateKeyPem: ownKey, credential: NAME, kind: 'client', sans: [] });
    const foreign = new LeafSigner(otherCa).signCsr(topology, { csrPem: ownCsr, host: 'h1', source: 'x' }).pem;
    expect(codeOf(() => installCertificate({ root, credential: NAME, kind: 'client', certPem: foreign, caPem: ca.certPem }))).toBe('PKI_ERR_CERT_UNTRUSTED');
    const expired = new LeafSigner(ca).signCsr(topology, { csrPem: ownCsr, host: 'h1', source: 'x', now: new Date(Date.now() - 100 * DAY) }).pem;
    expect(codeOf(() => installCertificate({ root, credential: NAME, kind: 'client', certPem: expired, caPem: ca.certPem }))).toBe('PKI_ERR_CERT_UNTRUSTED');
    const serverCert = new LeafSigner(ca).signCsr(topology, { csrPem: await makeCsr({ privateKeyPem: ownKey, credential: NAME, kind: 'server', sans: [] }), host: 'h1', source: 'x' }).pem;
    expect(codeOf(() => installCertificate({ root, credential: NAME, kind: 'client', certPem: serverCert, caPem: ca.certPem }))).toBe('PKI_ERR_CERT_MISMATCH');
    expect(codeOf(() => installCertificate({ root: join(dir.path, 'empty'), credential: NAME, kind: 'client', certPem: before, caPem: ca.certPem }))).toBe('PKI_ERR_KEY_MISSING');
    expect(readFileSync(file('client', 'cert.pem'), 'utf8')).toBe(before);
  });

  it('reports status and node-exporter metrics, and flags an expired certificate', async () => {
    // The renewal test left certificates dated in the future: back at today they are reissued.
    expect((await issueHost({ ca, topology, host: 'h1', root })).map((r) => r.reason)).toEqual([expect.stringMatching(/not valid before/), expect.stringMatching(/not valid before/)]);
    const now = new Date();
    const report = credentialStatus(root, now, ca.files.dir);
    expect(report.credentials.map((c) => `${c.credential}/${c.kind}:${c.status}`)).toEqual([`${NAME}/client:ok`, `${NAME}/server:ok`]);
    const metrics = statusMetrics(report, now);
    const expiry = report.credentials[1]!.notAfter!.getTime() / 1000;
    expect(metrics).toContain('# TYPE meshplane_pki_certificate_expiry_timestamp_seconds gauge\n');
    expect(metrics).toContain(`meshplane_pki_certificate_expiry_timestamp_seconds{credential="${NAME}",kind="server",path="${file('server', 'cert.pem')}"} ${expiry}\n`);
    expect(metrics).toContain(`meshplane_pki_certificate_valid{credential="${NAME}",kind="client",path="${file('client', 'cert.pem')}"} 1\n`);
    expect(metrics).toMatch(/meshplane_pki_crl_next_update_timestamp_seconds\{path=".*\/ca\/crl.pem"\} \d+\n/);
    // thisUpdate too, so the alert can be relative to the CRL's lifetime (pki_policy.crl_lifetime, 7 days here).
    const next = Number(/meshplane_pki_crl_next_update_timestamp_seconds\{path=".*\/ca\/crl.pem"\} (\d+)\n/.exec(metrics)?.[1]);
    const signed = Number(/meshplane_pki_crl_this_update_timestamp_seconds\{path=".*\/ca\/crl.pem"\} (\d+)\n/.exec(metrics)?.[1]);
    expect(next - signed).toBe(7 * 86_400);
    const later = credentialStatus(root, new Date(Date.now() + 400 * DAY));
    expect(later.credentials.map((c) => c.status)).toEqual(['expired', 'expired']);
    expect(statusMetrics(later)).toContain(`meshplane_pki_certificate_valid{credential="${NAME}",kind="client",path="${file('client', 'cert.pem')}"} 0\n`);
  });

  it('on the host, request honours a CRL from its CA and ignores one from another CA', async () => {
    const certPem = readFileSync(file('client', 'cert.pem'), 'utf8');
    const serial = execFileSync('openssl', ['x509', '-noout', '-serial'], { input: certPem, encoding: 'utf8' }).trim().split('=')[1]!;
    const crlPath = join(root, 'x509', NAME, 'crl.pem');
    const otherCa = loadCa(join(dir.path, 'other-ca'));
    await revoke(otherCa, serial);
    writeFileSync(crlPath, readFileSync(otherCa.files.crl));
    const ask = () => requestCertificate({ root, topology, host: 'h1', credential: NAME, kind: 'client', caPem: undefined, writeCsr: false });
    expect((await ask()).reason).toBeUndefined();
    await revoke(ca, serial);
    writeFileSync(crlPath, readFileSync(ca.files.crl));
    expect((await ask()).reason).toBe(`the certificate (serial ${serial.toLowerCase().replace(/^0+/, '')}) is revoked`);
  });

  it('after the key is deleted (key compromise), request removes the old certificate before writing the new key', async () => {
    const oldKey = readFileSync(file('server', 'private_key.pem'), 'utf8');
    rmSync(file('server', 'private_key.pem'));
    const request = await requestCertificate({ root, topology, host: 'h1', credential: NAME, kind: 'server', caPem: undefined, writeCsr: false });
    expect(request.keyCreated).toBe(true);
    expect(request.reason).toBe('no certificate yet');
    const newKey = readFileSync(file('server', 'private_key.pem'), 'utf8');
    expect(newKey).not.toBe(oldKey);
    expect(mode(file('server', 'private_key.pem'))).toBe('0440');
    // Until the new certificate is installed there is a key and no certificate, never a mismatched pair.
    expect(existsSync(file('server', 'cert.pem'))).toBe(false);
    const signed = new LeafSigner(ca).signCsr(topology, { csrPem: request.csrPem!, host: 'h1', source: 'rekey.csr' });
    installCertificate({ root, credential: NAME, kind: 'server', certPem: signed.pem, caPem: ca.certPem });
    expect(new X509Certificate(readFileSync(file('server', 'cert.pem'))).checkPrivateKey(createPrivateKey(newKey))).toBe(true);
  });

  it.runIf(isRoot)('as root: pki issue without --credentials-root writes under /etc/credentials (in a private mount namespace)', () => {
    // /etc is overlaid in a mount namespace of its own: the machine's real /etc is never written.
    const upper = join(dir.path, 'etc-upper');
    const work = join(dir.path, 'etc-work');
    mkdirSync(upper);
    mkdirSync(work);
    const existedBefore = existsSync('/etc/credentials');
    const script = `mount --make-rprivate / && mount -t overlay overlay -o lowerdir=/etc,upperdir=${upper},workdir=${work} /etc && exec "$@"`;
    const issue = spawnSync('unshare', ['--mount', 'sh', '-c', script, 'sh', process.execPath, CLI, 'pki', 'issue', '--ca-dir', ca.files.dir, '-t', join(dir.path, 'in2', 'topology.json'), '--host', 'h1'], { encoding: 'utf8' });
    expect(issue.stderr).toBe('');
    expect(issue.status).toBe(0);
    expect(issue.stdout).toContain(`/etc/credentials/x509/${NAME}/server/cert.pem`);
    const base = join(upper, 'credentials', 'x509', NAME);
    expect(readdirSync(base).sort()).toEqual(['ca.pem', 'client', 'crl.pem', 'server']);
    for (const kind of ['client', 'server'] as const) {
      const key = statSync(join(base, kind, 'private_key.pem'));
      expect([mode(join(base, kind, 'private_key.pem')), key.uid, key.gid]).toEqual(['0440', 0, gidOf(GROUP)]);
      expect(execFileSync('openssl', ['verify', '-CAfile', join(base, 'ca.pem'), '-purpose', kind === 'server' ? 'sslserver' : 'sslclient', join(base, kind, 'cert.pem')], { encoding: 'utf8' })).toContain(': OK');
    }
    expect(existsSync('/etc/credentials')).toBe(existedBefore);
  });

  it.runIf(isRoot)('as root: a full disk fails with PKI_ERR_WRITE and leaves the old pair and no temporary files', async () => {
    const mount = join(dir.path, 'small');
    mkdirSync(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'mppki-small', mount]);
    try {
      const smallRoot = join(mount, 'root');
      await issueHost({ ca, topology, host: 'h1', root: smallRoot });
      const cert = join(smallRoot, 'x509', NAME, 'server', 'cert.pem');
      const pair = [readFileSync(cert, 'utf8'), readFileSync(join(smallRoot, 'x509', NAME, 'server', 'private_key.pem'), 'utf8')];
      // Fill the disk, then force a reissue.
      spawnSync('dd', ['if=/dev/zero', `of=${join(mount, 'fill')}`, 'bs=1k', 'count=1000'], { stdio: 'ignore' });
      expect(await asyncCodeOf(issueHost({ ca, topology, host: 'h1', root: smallRoot, force: true }))).toBe('PKI_ERR_WRITE');
      expect([readFileSync(cert, 'utf8'), readFileSync(join(smallRoot, 'x509', NAME, 'server', 'private_key.pem'), 'utf8')]).toEqual(pair);
      const leftovers = execFileSync('find', [smallRoot, '-name', '*.tmp'], { encoding: 'utf8' });
      expect(leftovers).toBe('');
      expect(execFileSync('openssl', ['verify', '-CAfile', ca.files.cert, cert], { encoding: 'utf8' })).toContain('OK');
    } finally {
      execFileSync('umount', [mount]);
    }
  });
});

describe.runIf(isRoot)('without root', () => {
  const dir = scratch('noroot');
  const user = `mppknr${tag}`;
  beforeAll(() => {
    execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  });
  afterAll(() => {
    spawnSync('userdel', [user]);
    dir.remove();
  });

  it('init and issue run as an ordinary user: modes kept, files owned by the user, no group created', () => {
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }));
    const name = `mppknr${tag}`;
    topologyOf(join(dir.path, 'in'), services().replaceAll(NAME, name), inventory());
    const work = join(dir.path, 'work');
    mkdirSync(work);
    chownSync(work, uid, uid);
    chownSync(dir.path, uid, uid);
    const as = (args: string[]) => spawnSync('runuser', ['-u', user, '--', process.execPath, CLI, 'pki', ...args], { encoding: 'utf8', cwd: work });
    const init = as(['init', '--ca-dir', join(work, 'ca'), '-t', join(dir.path, 'in', 'topology.json')]);
    expect(init.stderr).toBe('');
    expect(init.status).toBe(0);
    const issue = as(['issue', '--ca-dir', join(work, 'ca'), '-t', join(dir.path, 'in', 'topology.json'), '--host', 'h1', '--credentials-root', join(work, 'creds')]);
    expect(issue.stderr).toBe('');
    expect(issue.status).toBe(0);
    const key = join(work, 'creds', 'x509', name, 'server', 'private_key.pem');
    expect(mode(key)).toBe('0440');
    expect(statSync(key).uid).toBe(uid);
    expect(mode(join(work, 'ca', 'ca_key.pem'))).toBe('0600');
    expect(spawnSync('getent', ['group', `${name}-credentials`]).status).not.toBe(0);
    // The user can still read its own key (0440 owner read).
    expect(spawnSync('runuser', ['-u', user, '--', 'cat', key]).status).toBe(0);
    expect(existsSync(join(work, 'creds', 'x509', name, 'client', 'cert.pem'))).toBe(true);
  });

  it('npm start (meshplane up) issues the example mesh\'s credentials under ./.meshplane as an ordinary user', async () => {
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }));
    const cwd = join(dir.path, 'start');
    mkdirSync(cwd);
    chownSync(cwd, uid, uid);
    chownSync(dir.path, uid, uid);
    const child = spawn('runuser', ['-u', user, '--', process.execPath, CLI, 'up', '--dns-listen', '127.0.0.1:0'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await waitForOutput(child, 'Ctrl-C stops it', 45_000);
      const state = join(cwd, '.meshplane');
      for (const [host, name, kinds] of [['host1', 'web', ['client', 'server']], ['host2', 'db', ['client', 'server']], ['host3', 'db', ['client', 'server']], ['gw1', 'gateway', ['server']]] as const) {
        const base = join(state, 'credentials', host, 'x509', name);
        expect(readdirSync(base).filter((f) => f !== 'crl.pem').sort(), `${host} ${name}`).toEqual(['ca.pem', ...kinds].sort());
        for (const kind of kinds) {
          const key = join(base, kind, 'private_key.pem');
          expect([mode(key), statSync(key).uid], key).toEqual(['0440', uid]);
          const verify = spawnSync('openssl', ['verify', '-CAfile', join(state, 'ca', 'ca.pem'), '-purpose', kind === 'server' ? 'sslserver' : 'sslclient', join(base, kind, 'cert.pem')], { encoding: 'utf8' });
          expect(verify.stdout, `${host} ${name} ${kind}`).toContain(': OK');
        }
      }
      expect([mode(join(state, 'ca', 'ca_key.pem')), statSync(join(state, 'ca', 'ca_key.pem')).uid]).toEqual(['0600', uid]);
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((done) => child.once('exit', done));
    }
  });
});

describe('the local state directory (npm start)', () => {
  it('issues every host under <state>/credentials/<host> without chown or groups, and a rerun issues nothing', async () => {
    const { issueMeshCredentials } = await import('../../src/pki/index.js');
    const { exampleTopology } = await import('./support.js');
    const dir = scratch('state');
    try {
      const topology = exampleTopology();
      const first = await issueMeshCredentials({ topology, stateDir: dir.path });
      expect(first.caAction).toBe('created');
      expect(Object.fromEntries(Object.entries(first.hosts).map(([h, r]) => [h, r.results.map((x) => `${x.credential}/${x.kind}`)]))).toEqual({
        gw1: ['gateway/server'],
        host1: ['web/client', 'web/server'],
        host2: ['db/client', 'db/server'],
        host3: ['db/client', 'db/server'],
        host4: [],
      });
      const key = join(dir.path, 'credentials', 'host2', 'x509', 'db', 'server', 'private_key.pem');
      expect(mode(key)).toBe('0440');
      // Owned by whoever ran it, even as root: no chown to db-credentials.
      expect([statSync(key).uid, statSync(key).gid]).toEqual([process.getuid?.(), process.getgid?.()]);
      const second = await issueMeshCredentials({ topology, stateDir: dir.path });
      expect(second.caAction).toBe('unchanged');
      expect(Object.values(second.hosts).flatMap((h) => h.results.map((r) => r.action))).toEqual(Array(7).fill('unchanged'));
      expect(loadCa(join(dir.path, 'ca')).constraints?.dns).toContain('mesh.internal');
    } finally {
      dir.remove();
    }
  });
});
