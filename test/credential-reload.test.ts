/**
 * The gateway and the agent follow their credential files without SIGHUP:
 * a certificate renewed on disk by the PKI is served on new handshakes
 * with the tunnels kept, and a CRL written beside the gateway's credential
 * drops the agent it revokes, which redials with its own renewed
 * certificate. Real daemons (the built CLI), real PKI.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueHost, loadCa, revoke } from '../src/pki/index.js';
import { writeFileAtomic } from '../src/lib/atomic-write.js';
import type { GatewayFixture } from './support/gateway.js';
import { count, prepareGatewayMesh, registrationPort, serialOf, servedSerial, startAgent, startGateway, stopAllDaemons } from './support/gateway.js';
import { tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const work = tempDir('credential-reload');
let fixture: GatewayFixture;

beforeAll(async () => {
  fixture = await prepareGatewayMesh(work.path);
}, 60_000);
afterAll(async () => {
  await stopAllDaemons();
  work.remove();
});

describe('credential files followed without SIGHUP', () => {
  it('serves a renewed gateway certificate with tunnels kept, and drops an agent a new CRL revokes; the agent redials with its renewed certificate', async () => {
    const ca = loadCa(join(fixture.stateDir, 'ca'));
    const gw = startGateway(fixture);
    const port = registrationPort(await gw.ready);
    const agent = startAgent(fixture, 'bulk', port);
    await agent.ready;
    await waitFor(() => count(gw.output(), '"msg":"backend registered"') === 1, { what: 'the agent registered', explain: () => gw.output() });

    // 1. Renew the gateway's certificate on disk, as a playbook run would.
    const gatewayCert = join(fixture.root('gw1'), 'x509', 'gateway', 'server', 'cert.pem');
    const before = serialOf(gatewayCert);
    expect(await servedSerial(port)).toBe(before);
    await issueHost({ ca, topology: fixture.topology, host: 'gw1', root: fixture.root('gw1'), force: true });
    const renewed = serialOf(gatewayCert);
    expect(renewed).not.toBe(before);
    await waitFor(async () => (await servedSerial(port)) === renewed, { what: 'new handshakes show the renewed certificate', explain: () => gw.output() });
    expect(gw.output()).toContain('credential files changed; reloading certificates and CRL');
    // The tunnel from before is still there.
    expect(gw.output()).not.toContain('backend deregistered');
    expect(gw.output()).not.toContain('backend killed');

    // 2. Renew the agent's certificate, revoke the old one, and put the new CRL beside the gateway's credential.
    const agentCert = join(fixture.root('b1'), 'x509', 'bulk', 'client', 'cert.pem');
    const oldAgentSerial = serialOf(agentCert);
    await issueHost({ ca, topology: fixture.topology, host: 'b1', root: fixture.root('b1'), force: true });
    expect(serialOf(agentCert)).not.toBe(oldAgentSerial);
    await waitFor(() => agent.output().includes('new tunnels use the new certificate'), { what: 'the agent read its renewed certificate', explain: () => agent.output() });
    await revoke(ca, oldAgentSerial, 'superseded');
    writeFileAtomic(join(fixture.root('gw1'), 'x509', 'gateway', 'crl.pem'), readFileSync(ca.files.crl));
    // Dropped without SIGHUP, and back with the new certificate (the old one would be refused as revoked).
    await waitFor(() => gw.output().includes(`certificate ${oldAgentSerial} revoked by the CRL`), { what: 'the revoked agent dropped', explain: () => gw.output() });
    await waitFor(() => count(gw.output(), '"msg":"backend registered"') === 2, { what: 'the agent back with its renewed certificate', explain: () => gw.output() });
    expect(gw.output()).not.toContain('"reason":"revoked"');
    await agent.stop();
    await gw.stop();
  }, 60_000);
});
