/**
 * Online renewal as it runs on a fleet: `meshplane pki serve` holds the CA,
 * `meshplane pki renew --daemon` runs on the gateway host and on a backend
 * host, and the gateway and the agent follow what the daemons write. The
 * daemons renew both hosts' due certificates through the online CA; the
 * gateway serves its renewed certificate on new handshakes and the agent's
 * tunnel stays up (tunnels kept); then the agent's old certificate is
 * revoked on the CA, the gateway host's daemon fetches the refreshed CRL,
 * the gateway drops the tunnel that still runs on the revoked certificate,
 * and the agent comes back with its renewed one. Real processes throughout
 * (the built CLI), no file written by the test on a host.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectCert, issueHost, loadCa, readCrl } from '../src/pki/index.js';
import type { Daemon, GatewayFixture } from './support/gateway.js';
import { count, prepareGatewayMesh, registrationPort, serialOf, servedSerial, startAgent, startDaemon, stopAllDaemons } from './support/gateway.js';
import { meshplane, tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const work = tempDir('online-renewal-daemons');
const HOUR = 3600_000;
let fixture: GatewayFixture;
let caDir = '';

beforeAll(async () => {
  fixture = await prepareGatewayMesh(work.path);
  caDir = join(fixture.stateDir, 'ca');
  // Both hosts hold certificates 70 minutes into a 90-minute life: past two
  // thirds, so due for renewal when the daemons start.
  const ca = loadCa(caDir);
  const issuedAt = new Date(Date.now() - 70 * 60_000);
  for (const host of ['gw1', 'b1']) await issueHost({ ca, topology: fixture.topology, host, root: fixture.root(host), now: issuedAt, lifetimeMs: 1.5 * HOUR, force: true });
}, 60_000);
afterAll(async () => {
  await stopAllDaemons();
  work.remove();
});

function startRenewDaemon(host: string, caUrl: string): Daemon {
  return startDaemon(['pki', 'renew', '--daemon', '--host', host, '--ca-url', caUrl, '--credentials-root', fixture.root(host), '--crl-interval', '1', '--retry-max', '1', '--no-system-owners'], 'meshplane pki renew: renewing under');
}

describe('pki renew --daemon beside a gateway and an agent', () => {
  it('renews both ends with tunnels kept, and the CRL it fetches makes the gateway drop the agent on its revoked certificate', async () => {
    const serve = startDaemon(['pki', 'serve', '--ca-dir', caDir, '-t', fixture.topologyFile, '--listen', '127.0.0.1:0', '--no-watch'], 'online CA at');
    const caUrl = /online CA at (https:\/\/127\.0\.0\.1:\d+)\//.exec(await serve.ready)![1]!;

    const gw = startDaemon(
      ['gateway', '--topology', fixture.topologyFile, '--credentials-root', fixture.root('gw1'), '--listen', '127.0.0.1:0', '--front-address', '127.0.41.1', '--metrics', '127.0.0.1:0'],
      'agents register on',
    );
    const port = registrationPort(await gw.ready);
    const agent = startAgent(fixture, 'bulk', port);
    await agent.ready;
    await waitFor(() => count(gw.output(), '"msg":"backend registered"') === 1, { what: 'the agent registered', explain: () => gw.output() });

    const gatewayCert = join(fixture.root('gw1'), 'x509', 'gateway', 'server', 'cert.pem');
    const agentCert = join(fixture.root('b1'), 'x509', 'bulk', 'client', 'cert.pem');
    const gatewayBefore = serialOf(gatewayCert);
    const agentBefore = serialOf(agentCert);
    expect(await servedSerial(port)).toBe(gatewayBefore);

    // 1. The daemons renew every due credential of both hosts through the online CA.
    const gwDaemon = startRenewDaemon('gw1', caUrl);
    const b1Daemon = startRenewDaemon('b1', caUrl);
    await waitFor(() => serialOf(gatewayCert) !== gatewayBefore, { what: "the gateway host's daemon to renew its certificate", explain: () => gwDaemon.output() });
    await waitFor(() => serialOf(agentCert) !== agentBefore, { what: "the backend host's daemon to renew the agent's certificate", explain: () => b1Daemon.output() });
    const gatewayRenewed = serialOf(gatewayCert);
    expect(inspectCert(readFileSync(gatewayCert, 'utf8'), gatewayCert).notAfter.getTime()).toBeGreaterThan(Date.now() + 60 * 60_000);

    // The gateway serves the renewed certificate on new handshakes; the agent reads its own; the tunnel stays.
    await waitFor(async () => (await servedSerial(port)) === gatewayRenewed, { what: 'new handshakes show the renewed certificate', explain: () => gw.output() });
    await waitFor(() => agent.output().includes('new tunnels use the new certificate'), { what: 'the agent read its renewed certificate', explain: () => agent.output() });
    expect(count(gw.output(), '"msg":"backend registered"')).toBe(1);
    expect(gw.output()).not.toContain('backend deregistered');

    // 2. Revoke the certificate the live tunnel still runs on, on the CA only.
    meshplane(['pki', 'revoke', '--ca-dir', caDir, '--serial', agentBefore, '--reason', 'superseded']);
    // The gateway host's daemon installs the refreshed CRL beside the gateway's credential...
    const gatewayCrl = join(fixture.root('gw1'), 'x509', 'gateway', 'crl.pem');
    await waitFor(
      () => {
        try {
          return readCrl(readFileSync(gatewayCrl, 'utf8'), gatewayCrl).serials.has(agentBefore);
        } catch {
          return false;
        }
      },
      { what: 'the refreshed CRL on the gateway host', explain: () => gwDaemon.output() },
    );
    // ...and the gateway drops the tunnel on the revoked certificate; the agent is back with its renewed one.
    await waitFor(() => gw.output().includes(`certificate ${agentBefore} revoked by the CRL`), { what: 'the revoked agent dropped', explain: () => gw.output() });
    await waitFor(() => count(gw.output(), '"msg":"backend registered"') === 2, { what: 'the agent back with its renewed certificate', explain: () => gw.output() });
    expect(gw.output()).not.toContain('"reason":"revoked"');
  }, 120_000);
});
