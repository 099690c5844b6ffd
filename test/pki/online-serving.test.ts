/**
 * pki serve renews its own TLS certificate in place: at two thirds of its
 * (here short) lifetime, again and again, and at once when the CA is read
 * again. Real TLS clients see it: `openssl s_client` verifies each serving
 * certificate against the CA and the address, and a node:tls connection
 * opened before a swap keeps working with the certificate it started with.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PkiServer, initCa } from '../../src/pki/index.js';
import { writeTopology } from '../../src/topology/index.js';
import { meshplane } from '../support/run.js';
import { waitFor } from '../support/wait.js';
import { exampleTopology, runAsync, scratch } from './support.js';

const dir = scratch('online-serving');
const topology = exampleTopology();
const caDir = join(dir.path, 'ca');
const servers: PkiServer[] = [];

interface Started {
  readonly server: PkiServer;
  readonly registry: Registry;
  readonly logs: string[];
}

async function serve(servingLifetimeMs?: number): Promise<Started> {
  const logs: string[] = [];
  const registry = new Registry();
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
  const server = new PkiServer({ caDir, topology: () => topology, address: '127.0.0.1', port: 0, logger, registry, servingLifetimeMs });
  servers.push(server);
  await server.start();
  return { server, registry, logs };
}

interface Seen {
  readonly serial: string;
  readonly cert: X509Certificate;
}

/** The serving certificate as `openssl s_client` sees it, verified against the CA and for 127.0.0.1 (it fails otherwise). */
async function served(port: number): Promise<Seen> {
  const result = await runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', join(caDir, 'ca.pem'), '-verify_return_error', '-verify_ip', '127.0.0.1']);
  const pem = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/.exec(result.stdout)?.[0];
  if (result.status !== 0 || !result.stdout.includes('Verify return code: 0 (ok)') || pem === undefined) throw new Error(`s_client: exit ${result.status}\n${result.stdout}\n${result.stderr}`);
  const cert = new X509Certificate(pem);
  return { serial: cert.serialNumber, cert };
}

/** GET /ca on an open connection; resolves with the status line once the whole answer is in. */
function getCa(socket: TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? NaN);
      if (end >= 0 && text.length - end - 4 >= length) {
        socket.off('data', onData);
        socket.off('error', reject);
        resolve(text.slice(0, text.indexOf('\r\n')));
      }
    };
    socket.on('data', onData);
    socket.on('error', reject);
    socket.write('GET /ca HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  });
}

const expiryMetric = async (registry: Registry): Promise<number> => Number(/ (\d+(\.\d+)?)$/m.exec(await registry.getSingleMetricAsString('meshplane_pki_serve_certificate_expiry_timestamp_seconds'))?.[1]);

beforeAll(async () => {
  await initCa({ caDir, topology });
}, 60_000);

afterAll(async () => {
  for (const server of servers) await server.close();
  dir.remove();
});

describe("pki serve's own certificate", () => {
  it('is remade at two thirds of its life, every time, and each one verifies against the CA', async () => {
    const lifetimeMs = 3000;
    const { server, registry, logs } = await serve(lifetimeMs);
    const first = await served(server.port);
    // Made at t, valid from t - 5 min (clock skew) to t + 3 s.
    expect(new Date(first.cert.validTo).getTime() - new Date(first.cert.validFrom).getTime()).toBe(5 * 60_000 + lifetimeMs);
    // The gauge holds the notAfter of the certificate served now (this one, or a later one on a slow machine).
    expect(await expiryMetric(registry)).toBeGreaterThanOrEqual(new Date(first.cert.validTo).getTime() / 1000);
    const next = (previous: Seen, what: string): Promise<Seen> =>
      waitFor(
        async () => {
          const seen = await served(server.port);
          return seen.serial !== previous.serial ? seen : undefined;
        },
        { what, explain: () => logs.join('') },
      );
    const second = await next(first, 'a new serving certificate after two thirds of 3 s');
    const third = await next(second, 'another one two seconds later');
    expect(new Set([first.serial, second.serial, third.serial]).size).toBe(3);
    // Never early: each was made at least two thirds of a lifetime after the one before.
    expect(new Date(third.cert.validTo).getTime() - new Date(second.cert.validTo).getTime()).toBeGreaterThanOrEqual(2000 - 1000);
    expect(logs.join('')).toContain('"msg":"serving certificate renewed"');
    await waitFor(async () => (await expiryMetric(registry)) > new Date(first.cert.validTo).getTime() / 1000, { what: 'the expiry metric to follow' });
  });

  it('is remade when the CA is read again; a connection opened before keeps its certificate and keeps working', async () => {
    const { server, logs } = await serve();
    const before = await served(server.port);
    const ca = readFileSync(join(caDir, 'ca.pem'), 'utf8');
    const socket = await new Promise<TLSSocket>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: server.port, ca }, () => resolve(s));
      s.on('error', reject);
    });
    try {
      expect(socket.authorized).toBe(true);
      expect(await getCa(socket)).toBe('HTTP/1.1 200 OK');
      server.reloadCa();
      // The open connection: same certificate, still answered.
      expect(await getCa(socket)).toBe('HTTP/1.1 200 OK');
      expect(socket.getPeerX509Certificate()?.serialNumber).toBe(before.serial);
      // New connections: a new certificate, verified against the CA.
      const after = await served(server.port);
      expect(after.serial).not.toBe(before.serial);
      expect(logs.join('')).toContain('"reason":"the CA was read again"');
    } finally {
      socket.destroy();
    }
  });

  it('refuses a lifetime it cannot keep (PKI_ERR_VALIDITY), from the library and from --serving-lifetime', async () => {
    const logger = pino({ level: 'silent' });
    const server = new PkiServer({ caDir, topology: () => topology, address: '127.0.0.1', port: 0, logger, registry: new Registry(), servingLifetimeMs: 10 });
    await expect(server.start()).rejects.toMatchObject({ code: 'PKI_ERR_VALIDITY' });
    // The built CLI: --serving-lifetime reaches it, and pki serve stops before listening.
    const topologyFile = join(dir.path, 'topology.json');
    writeTopology(topologyFile, topology);
    const cli = meshplane(['pki', 'serve', '--ca-dir', caDir, '-t', topologyFile, '--listen', '127.0.0.1:0', '--no-watch', '--serving-lifetime', '0m']);
    expect(cli.status).not.toBe(0);
    expect(cli.stderr).toContain('PKI_ERR_VALIDITY');
  });
});
