/**
 * services.yml `pki_policy:` decides every lifetime the PKI hands out, with
 * the real CLI and openssl as the judge: a mesh-wide leaf lifetime (a
 * credential's own `lifetime` and `--lifetime` still win), the CRL's
 * validity (nextUpdate - lastUpdate), and how often `pki renew --daemon`
 * fetches the CRL (the online CA says so in Cache-Control; curl reads it).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { issueHost, loadCa } from '../../src/pki/index.js';
import type { Topology } from '../../src/topology/index.js';
import { CLI, run, runWithoutBlocking } from '../support/run.js';
import type { RunResult } from '../support/run.js';
import { waitFor } from '../support/wait.js';
import { EXAMPLE_INVENTORY, EXAMPLE_SERVICES, openssl, scratch, topologyOf } from './support.js';

const dir = scratch('lifetimes');
const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** notBefore and thisUpdate are set this far in the past (clock skew), so a validity is the lifetime plus this. */
const BACKDATE = 5 * 60_000;

const children: ChildProcess[] = [];

/** The built CLI, without blocking this worker (a busy machine makes each run slow). */
const meshplane = (args: readonly string[]): Promise<RunResult> => runWithoutBlocking(process.execPath, [CLI, ...args]);

afterAll(async () => {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const closed = new Promise((resolve) => child.once('close', resolve));
    child.kill('SIGTERM');
    await closed;
  }
  dir.remove();
});

/** The example mesh with `policy` (YAML lines under pki_policy:) in place of the example's own. */
function meshWith(name: string, policy: readonly string[]): { topology: Topology; file: string } {
  const example = readFileSync(EXAMPLE_SERVICES, 'utf8');
  // The example shows pki_policy with the defaults: replace that block.
  const services = example.replace(/^pki_policy:\n(?:[ #].*\n|\n)*?(?=\S)/m, `pki_policy:\n${policy.map((line) => `  ${line}\n`).join('')}\n`);
  expect(services, 'the example has a pki_policy block').not.toBe(example);
  const where = join(dir.path, name);
  return { topology: topologyOf(where, services, readFileSync(EXAMPLE_INVENTORY, 'utf8')), file: join(where, 'topology.json') };
}

/** openssl's reading of two dates, as milliseconds between them. */
function span(args: readonly string[], from: string, to: string): number {
  const result = openssl(args);
  expect(result.status, result.stderr).toBe(0);
  const date = (field: string): number => Date.parse(new RegExp(`^${field}=(.*)$`, 'm').exec(result.stdout)?.[1] ?? 'missing');
  return date(to) - date(from);
}

const certLife = (path: string): number => span(['x509', '-noout', '-startdate', '-enddate', '-in', path], 'notBefore', 'notAfter');
const crlLife = (path: string): number => span(['crl', '-noout', '-lastupdate', '-nextupdate', '-in', path], 'lastUpdate', 'nextUpdate');

describe('pki_policy.leaf_lifetime', () => {
  it('pki issue signs for the mesh default (24h); a credential\'s own lifetime wins over it, and --lifetime over both', async () => {
    const { topology, file } = meshWith('leaf', ['leaf_lifetime: 24h']);
    const caDir = join(dir.path, 'leaf', 'ca');
    expect((await meshplane(['pki', 'init', '--ca-dir', caDir, '-t', file])).status).toBe(0);
    // db has no lifetime of its own; web says 30d in the example.
    expect(topology.credentials.db?.lifetime_ms).toBeUndefined();
    expect(topology.credentials.web?.lifetime_ms).toBe(30 * DAY);
    for (const credential of ['db', 'web']) {
      const host = topology.credentials[credential]?.hosts[0] as string;
      const root = join(dir.path, 'leaf', host);
      const issued = await meshplane(['pki', 'issue', '--ca-dir', caDir, '-t', file, '--host', host, '--credentials-root', root]);
      expect(issued.status, issued.stderr).toBe(0);
      const cert = join(root, 'x509', credential, 'server', 'cert.pem');
      expect(certLife(cert), `${credential} on ${host}`).toBe((credential === 'db' ? 24 * HOUR : 30 * DAY) + BACKDATE);
      const flagged = await meshplane(['pki', 'issue', '--ca-dir', caDir, '-t', file, '--host', host, '--credentials-root', root, '--force', '--lifetime', '48h']);
      expect(flagged.status, flagged.stderr).toBe(0);
      expect(certLife(cert), `${credential} with --lifetime`).toBe(48 * HOUR + BACKDATE);
    }
  }, 120_000);
});

describe('pki_policy.crl_lifetime', () => {
  it('the CRL lives crl_lifetime (openssl crl), beside every credential too; a changed lifetime applies at the next init; revoke keeps it; a rerun changes nothing', async () => {
    const two = meshWith('crl', ['crl_lifetime: 2d']);
    const caDir = join(dir.path, 'crl', 'ca');
    const crl = join(caDir, 'crl.pem');
    expect((await meshplane(['pki', 'init', '--ca-dir', caDir, '-t', two.file])).status).toBe(0);
    expect(crlLife(crl)).toBe(2 * DAY);
    const root = join(dir.path, 'crl', 'host2');
    expect((await meshplane(['pki', 'issue', '--ca-dir', caDir, '-t', two.file, '--host', 'host2', '--credentials-root', root])).status).toBe(0);
    expect(crlLife(join(root, 'x509', 'db', 'crl.pem'))).toBe(2 * DAY);

    // Idempotent: the CRL is only re-signed once half its life has passed, or when the policy changed.
    const before = readFileSync(crl, 'utf8');
    expect((await meshplane(['pki', 'init', '--ca-dir', caDir, '-t', two.file])).status).toBe(0);
    expect(readFileSync(crl, 'utf8')).toBe(before);
    const three = meshWith('crl', ['crl_lifetime: 3d']);
    expect((await meshplane(['pki', 'init', '--ca-dir', caDir, '-t', three.file])).status).toBe(0);
    expect(crlLife(crl)).toBe(3 * DAY);

    // revoke reads no topology: it re-signs with the lifetime of the CRL it replaces.
    const cert = join(root, 'x509', 'db', 'client', 'cert.pem');
    const revoked = await meshplane(['pki', 'revoke', '--ca-dir', caDir, '--cert', cert]);
    expect(revoked.status, revoked.stderr).toBe(0);
    expect(crlLife(crl)).toBe(3 * DAY);
    const check = run('openssl', ['verify', '-CAfile', join(caDir, 'ca.pem'), '-CRLfile', crl, '-crl_check', cert]);
    expect(check.stdout + check.stderr).toContain('certificate revoked');
  }, 120_000);
});

describe('pki_policy.crl_refresh', () => {
  it('pki renew --daemon fetches the CRL every crl_refresh, which the online CA announces from its Topology, and installs the CRL signed for its crl_lifetime', async () => {
    // Bootstrapped offline under another policy (a 2-day CRL); pki serve follows its own Topology's.
    const offline = meshWith('refresh-offline', ['crl_lifetime: 2d']);
    const { file } = meshWith('refresh', ['leaf_lifetime: 24h', 'crl_lifetime: 1h', 'crl_refresh: 2s']);
    const caDir = join(dir.path, 'refresh', 'ca');
    expect((await meshplane(['pki', 'init', '--ca-dir', caDir, '-t', offline.file])).status).toBe(0);
    const root = join(dir.path, 'refresh', 'host2');
    await issueHost({ ca: loadCa(caDir), topology: offline.topology, host: 'host2', root });
    const hostCrl = join(root, 'x509', 'db', 'crl.pem');
    expect(crlLife(hostCrl)).toBe(2 * DAY);

    const serve = await started(['pki', 'serve', '--ca-dir', caDir, '-t', file, '--listen', '127.0.0.1:0', '--no-watch'], /online CA at (https:\/\/127\.0\.0\.1:\d+)\//);
    const caUrl = serve.match[1] as string;
    const curl = run('curl', ['-sS', '--cacert', join(caDir, 'ca.pem'), '-D', '-', '-o', '/dev/null', `${caUrl}/crl`]);
    expect(curl.status, curl.stderr).toBe(0);
    expect(curl.stdout).toMatch(/^cache-control: max-age=2\r?$/im);

    const begun = Date.now();
    const renewer = await started(['pki', 'renew', '--daemon', '--host', 'host2', '--ca-url', caUrl, '--credentials-root', root, '--metrics', '127.0.0.1:0', '--log-level', 'debug'], /metrics at (\S+)/);
    const metricsUrl = renewer.match[1] as string;
    const fetches = async (): Promise<number> => Number(/^meshplane_pki_renew_crl_fetches_total (\d+)$/m.exec(await (await fetch(metricsUrl)).text())?.[1] ?? 0);
    await waitFor(async () => (await fetches()) >= 3, { what: 'three CRL fetches, 2 s apart', explain: () => renewer.out.text });
    // Three fetches are two intervals: the daemon waited for crl_refresh, it did not poll faster.
    expect(Date.now() - begun).toBeGreaterThanOrEqual(2 * 2000);
    const text = await (await fetch(metricsUrl)).text();
    expect(text).toMatch(/^meshplane_pki_renew_crl_refresh_seconds 2$/m);
    expect(renewer.out.text).toMatch(/"refreshSeconds":2\b.*"msg":"CRL fetched"/);
    // The CA re-signed for the lifetime its Topology says (the policy changed), and the host has it.
    expect(crlLife(hostCrl)).toBe(HOUR);
  }, 120_000);
});

interface Started {
  readonly child: ChildProcess;
  readonly out: { text: string };
  readonly match: RegExpExecArray;
}

/** Starts the built CLI; resolves once `ready` matches its output. */
async function started(args: readonly string[], ready: RegExp): Promise<Started> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const out = { text: '' };
  child.stdout?.on('data', (chunk: Buffer) => (out.text += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out.text += chunk.toString()));
  const match = await waitFor(() => ready.exec(out.text) ?? (child.exitCode !== null ? Promise.reject(new Error(`exited ${child.exitCode}: ${out.text}`)) : undefined), {
    what: `${args.slice(0, 2).join(' ')} to start`,
    explain: () => out.text,
  });
  return { child, out, match };
}
