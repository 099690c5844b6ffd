/**
 * The status page in a real browser: headless Chromium opens the admin
 * API's `/` (development token, loopback), the page shows the live
 * backends with their health and load, and — without being reloaded —
 * shows a backend gone once it is killed through the API. Then, with a
 * third backend, a PNG of the page: the README's docs/status-page.png when
 * run as `npm run screenshot:status` (UPDATE_SCREENSHOT=1).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/index.js';
import { AdminServer, Gateway, credentialTlsFiles } from '../src/gateway/index.js';
import { writeFileAtomic } from '../src/lib/atomic-write.js';
import { launchChromium } from './support/chromium.js';
import type { Browser } from './support/chromium.js';
import { silentLogger } from './support/dns.js';
import { prepareOpsMesh, startTestBackend } from './support/gateway-ops.js';
import type { OpsFixture, TestBackend } from './support/gateway-ops.js';
import { REPO_ROOT, tempDir } from './support/run.js';
import { waitFor as waitUntil } from './support/wait.js';

const TOKEN = 'status-page-token-0123456789';
const work = tempDir('gateway-status-page');
let fixture: OpsFixture;
let gateway: Gateway;
let admin: AdminServer;
let adminUrl: string;
let browser: Browser | undefined;
const agents: Agent[] = [];
const backends: TestBackend[] = [];

function startAgent(host: string, backend: TestBackend): Agent {
  const dir = join(fixture.root(host), 'x509', 'pool');
  const agent = new Agent({
    credential: 'pool',
    service: 'pool',
    host,
    tls: { ca: readFileSync(join(dir, 'ca.pem')), cert: readFileSync(join(dir, 'client', 'cert.pem')), key: readFileSync(join(dir, 'client', 'private_key.pem')) },
    gateways: [{ address: '127.0.0.1', port: gateway.port }],
    gatewayName: 'gateway.mesh.internal',
    backend: { address: '127.0.0.1', port: backend.port },
    proxyProtocol: new Map(),
    backoff: { initialMs: 250, maxMs: 1000 },
    version: 'test',
    logger: silentLogger,
  });
  agent.start();
  agents.push(agent);
  return agent;
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  await waitUntil(check, { what, interval: 100 });
}

beforeAll(async () => {
  fixture = await prepareOpsMesh(work.path);
  gateway = new Gateway({ topology: fixture.topology, tls: credentialTlsFiles(fixture.root('gw1'), 'gateway', null), registration: { address: '127.0.0.1', port: 0 }, frontAddresses: [], logger: silentLogger });
  await gateway.start();
  admin = new AdminServer(gateway.adminTarget(), { auth: { kind: 'token', token: TOKEN }, logger: silentLogger });
  adminUrl = `http://127.0.0.1:${await admin.start('127.0.0.1', 0)}`;
  for (const [host, load] of [['b1', 7], ['b2', 11]] as const) {
    const backend = await startTestBackend(host, load);
    backends.push(backend);
    startAgent(host, backend);
  }
  await waitFor(() => gateway.backends.forService('pool').filter((b) => b.health.get('lb')?.state === 'healthy').length === 2, 'two healthy pool backends');
  browser = await launchChromium(join(work.path, 'chromium-profile'));
}, 60_000);

afterAll(async () => {
  await browser?.close();
  for (const agent of agents) agent.close();
  await admin?.close();
  gateway?.close();
  for (const backend of backends) await backend.close();
  work.remove();
});

const rows = (): Promise<{ id: string; text: string }[]> =>
  browser!.evaluate(`[...document.querySelectorAll('tr[data-backend]')].map((tr) => ({ id: tr.dataset.backend, text: tr.innerText }))`);

describe('status page', () => {
  it('loads, shows each live backend with health and load, and shows a killed one gone without a reload', async () => {
    await browser!.open(`${adminUrl}/?token=${TOKEN}`);
    expect(await browser!.evaluate<string>('document.title')).toBe('meshplane gateway');
    const live = gateway.backends.forService('pool');
    await waitFor(async () => (await rows()).length === 2, 'two rows on the page');
    const shown = await rows();
    expect(shown.map((r) => r.id).sort()).toEqual(live.map((b) => b.id).sort());
    const b1 = live.find((b) => b.host === 'b1')!;
    expect(shown.find((r) => r.id === b1.id)!.text).toMatch(/b1[\s\S]*healthy[\s\S]*\b7\b/);
    expect(await browser!.evaluate<string>(`document.querySelector('h2').textContent`)).toBe('pool (2)');

    // A marker in the page: if it survives, the page updated itself rather than being reloaded.
    await browser!.evaluate(`window.__sameDocument = true`);
    const response = await fetch(`${adminUrl}/backends/${b1.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(response.status).toBe(200);
    await waitFor(async () => !(await rows()).some((r) => r.id === b1.id), 'the killed backend gone from the page');
    expect(await browser!.evaluate<boolean>('window.__sameDocument === true')).toBe(true);
    // The other one is still there (the killed agent may already be back, under a new id).
    expect((await rows()).map((r) => r.id)).toContain(live.find((b) => b.host === 'b2')!.id);
  });

  it('renders as a PNG with three backends (docs/status-page.png when UPDATE_SCREENSHOT=1)', async () => {
    const backend = await startTestBackend('b3', 3);
    backends.push(backend);
    startAgent('b3', backend);
    await waitFor(() => gateway.backends.forService('pool').filter((b) => b.health.get('lb')?.state === 'healthy').length === 3, 'three healthy pool backends');
    await browser!.open(`${adminUrl}/?token=${TOKEN}`);
    // Each with its RTT (agents are PINGed every 3 s), for a page as an operator sees it.
    await waitFor(async () => {
      const shown = await rows();
      return shown.length === 3 && shown.every((r) => /healthy/.test(r.text) && /\d ms/.test(r.text));
    }, 'three healthy rows with their RTT on the page');
    const png = await browser!.screenshot(1100);
    // A PNG (signature, IHDR) of the width asked for, with the content's height, and not blank.
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR');
    expect(png.readUInt32BE(16)).toBe(1100);
    expect(png.readUInt32BE(20)).toBeGreaterThanOrEqual(200);
    expect(png.length).toBeGreaterThan(10_000);
    writeFileSync(join(work.path, 'status-page.png'), png);
    if (process.env.UPDATE_SCREENSHOT === '1') writeFileAtomic(join(REPO_ROOT, 'docs', 'status-page.png'), png);
  });

  it('shows an error instead of data when opened without the token', async () => {
    await browser!.open(`${adminUrl}/`);
    expect(await browser!.evaluate<string>('document.body.innerText')).toContain('GW_ERR_ADMIN_UNAUTHENTICATED');
  });
});
