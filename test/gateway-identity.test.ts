/**
 * Registrations bound to the workload identity in the agent's certificate
 * (its URI SAN): an agent registers only as the host its certificate names,
 * displaces only an agent of that same host, and a certificate without an
 * identity is refused unless the gateway allows legacy ones. Real agents
 * (and one forged registration, which a real agent cannot send) against an
 * in-process gateway.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { performServerHandshake } from 'node:http2';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent/index.js';
import { generateKeyPair } from '../src/pki/index.js';
import { REGISTRATION_PATH } from '../src/lib/tunnel-io.js';
import type { Topology } from '../src/topology/index.js';
import { auditAgent, clientTls, clientTlsFor, prepareAuditMesh, series, startAuditGateway, waitUntil, withSpareHosts } from './support/gateway-audit.js';
import type { AuditGateway, AuditMesh } from './support/gateway-audit.js';
import { tempDir } from './support/run.js';

const work = tempDir('gateway-identity');
let mesh: AuditMesh;
let topology: Topology;
let gw: AuditGateway;
const agents: Agent[] = [];
const AUTH = 'meshplane_gateway_auth_failures_total';

beforeAll(async () => {
  mesh = await prepareAuditMesh(work.path);
  // b2 runs pipe too, with a pipe certificate of its own.
  topology = withSpareHosts(mesh.topology, 'pipe', ['b2']);
  gw = await startAuditGateway(mesh, { fronts: [] });
  await gw.gateway.reload(topology);
}, 60_000);

afterAll(() => {
  for (const agent of agents) agent.close();
  gw.gateway.close();
  work.remove();
});

function agentFor(host: string, tls: Parameters<typeof auditAgent>[2]['tls']): Agent {
  const agent = auditAgent(mesh, 'pipe', { host, gateways: [{ address: '127.0.0.1', port: gw.gateway.port }], ...(tls === undefined ? {} : { tls }) });
  agents.push(agent);
  agent.start();
  return agent;
}

const refusals = async (reason: string): Promise<number> => series(await gw.metrics(), AUTH, `reason="${reason}"`);

/**
 * A hand-made registration with `tls`, answering the gateway's question
 * with `hello` (a real agent always names its own host in its agent id);
 * resolves with the GOAWAY debug data when refused, or 'registered'.
 */
function forgedRegistration(tls: { ca: Buffer; cert: Buffer; key: Buffer }, hello: object): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: gw.gateway.port, ...tls, servername: 'gateway.mesh.internal', ALPNProtocols: ['h2'] });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const session = performServerHandshake(socket);
      session.on('error', () => undefined);
      session.on('stream', (stream, headers) => {
        if (headers[':path'] !== REGISTRATION_PATH) return;
        stream.respond({ ':status': 200 });
        stream.end(JSON.stringify(hello));
      });
      session.on('goaway', (_code, _last, data?: Buffer) => {
        resolve(data?.toString() ?? '');
        session.destroy();
      });
      session.on('close', () => resolve('closed'));
      setTimeout(() => {
        resolve('registered');
        session.destroy();
      }, 4000).unref();
    });
  });
}

describe('registration bound to the workload identity', () => {
  it('refuses an agent claiming another host than its certificate names, counting and saying why', async () => {
    const before = await refusals('wrong_host');
    // The attack seen: b1's pipe certificate, an agent claiming b2 (which does run pipe).
    agentFor('b2', clientTls(mesh, 'pipe'));
    await waitUntil(async () => (await refusals('wrong_host')) > before, 'wrong_host refusal counted');
    expect(gw.gateway.backends.all().some((b) => b.host === 'b2')).toBe(false);
    // And the detail the agent is told names the claim and the certificate's identity.
    const answer = await forgedRegistration(clientTls(mesh, 'pipe'), { agent_id: 'b2/pipe/0', host: 'b2', service: 'pipe', credential: 'pipe' });
    expect(answer).toMatch(/^wrong_host: the agent claims host "b2" but client certificate pipe \(serial [0-9A-F]+\) belongs to spiffe:\/\/mesh\.internal\/host\/b1\/credential\/pipe$/);
  });

  it('registers each host with its own certificate, and refuses displacing another host\'s agent', async () => {
    const b2Tls = await clientTlsFor(mesh, topology, 'pipe', 'b2');
    agentFor('b1', undefined);
    agentFor('b2', b2Tls);
    await waitUntil(() => ['b1', 'b2'].every((host) => gw.gateway.backends.all().some((b) => b.host === host)), 'b1 and b2 registered');
    const b1Backend = gw.gateway.backends.all().find((b) => b.agentId === 'b1/pipe/0')!;
    const before = await refusals('displacement');
    // b2's own certificate and host, but b1's agent id: it would replace b1's tunnel.
    const answer = await forgedRegistration(b2Tls, { agent_id: 'b1/pipe/0', host: 'b2', service: 'pipe', credential: 'pipe' });
    expect(answer).toMatch(/^displacement: agent id "b1\/pipe\/0" is registered by host b1 \(backend [0-9a-f]+\); host b2 may not displace it$/);
    expect(await refusals('displacement')).toBe(before + 1);
    expect(gw.gateway.backends.get(b1Backend.id)).toBe(b1Backend);
    expect(b1Backend.session.destroyed).toBe(false);
  });

  it('lets the same host replace its own stale tunnel', async () => {
    await waitUntil(() => gw.gateway.backends.forAgent('b1/pipe/0') !== undefined, 'b1 registered');
    const stale = gw.gateway.backends.all().find((b) => b.agentId === 'b1/pipe/0')!;
    // A restarted agent on b1 (same agent id, same certificate) while the old tunnel is still up.
    agentFor('b1', undefined);
    await waitUntil(() => gw.gateway.backends.all().some((b) => b.agentId === 'b1/pipe/0' && b.id !== stale.id), 'the new tunnel replaced the stale one');
    expect(gw.gateway.backends.get(stale.id)).toBeUndefined();
    expect(gw.gateway.backends.all().filter((b) => b.agentId === 'b1/pipe/0')).toHaveLength(1);
  });

  it('refuses a certificate without an identity, telling the operator to reissue; --allow-legacy-identity admits it', async () => {
    // A certificate as issued before identities existed, made with openssl under the mesh CA.
    const dir = work.path;
    const key = generateKeyPair();
    writeFileSync(join(dir, 'legacy.key'), key.privateKeyPem);
    writeFileSync(join(dir, 'legacy.ext'), 'subjectAltName=DNS:pipe,DNS:pipe.mesh.internal\nextendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n');
    execFileSync('openssl', ['req', '-new', '-key', join(dir, 'legacy.key'), '-subj', '/CN=pipe', '-out', join(dir, 'legacy.csr')]);
    const ca = join(mesh.stateDir, 'ca');
    execFileSync('openssl', ['x509', '-req', '-in', join(dir, 'legacy.csr'), '-CA', join(ca, 'ca.pem'), '-CAkey', join(ca, 'ca_key.pem'), '-set_serial', '0x4242', '-days', '2', '-extfile', join(dir, 'legacy.ext'), '-out', join(dir, 'legacy.pem')]);
    expect(execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', join(dir, 'legacy.pem')], { encoding: 'utf8' })).not.toContain('URI:');
    const legacy = { ...clientTls(mesh, 'pipe'), cert: readFileSync(join(dir, 'legacy.pem')), key: Buffer.from(key.privateKeyPem) };
    const hello = { agent_id: 'b1/pipe/7', host: 'b1', service: 'pipe', credential: 'pipe' };
    const before = await refusals('no_identity');
    const answer = await forgedRegistration(legacy, hello);
    expect(answer).toContain('no_identity: client certificate pipe (serial 4242) carries no workload identity');
    expect(answer).toContain('reissue it (meshplane pki issue, or the playbook), or start the gateway with --allow-legacy-identity');
    expect(await refusals('no_identity')).toBe(before + 1);

    const lenient = await startAuditGateway(mesh, { fronts: [], allowLegacyIdentity: true });
    try {
      const agent = auditAgent(mesh, 'pipe', { host: 'b1', gateways: [{ address: '127.0.0.1', port: lenient.gateway.port }], tls: legacy });
      agents.push(agent);
      agent.start();
      await waitUntil(() => lenient.gateway.backends.size === 1, 'legacy certificate admitted with allowLegacyIdentity');
    } finally {
      lenient.gateway.close();
    }
  });
});
