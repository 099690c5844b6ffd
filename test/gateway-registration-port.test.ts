/**
 * The gateway's registration port comes from one rule (registrationPort in
 * src/topology/gateway-ports.ts): the first port of the service named
 * `gateway`, whatever its credential is called. `meshplane gateway` used to
 * look the port up under the credential's name and fell back to 8443 when
 * the two differed. The built CLI, a real certificate from the real PKI, and
 * a real TLS client on the port it says it listens on.
 */
import { connect } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueMeshCredentials } from '../src/pki/index.js';
import { registrationPort, writeTopology } from '../src/topology/index.js';
import type { Topology } from '../src/topology/index.js';
import { compileMesh } from './support/dns.js';
import { startDaemon, stopAllDaemons } from './support/gateway.js';
import { tempDir } from './support/run.js';

// Unusual fixed ports: the default listen address is what is under test, so it cannot be port 0.
const REGISTRATION = 24471;
const FRONT = 24473;

const work = tempDir('registration-port');
let topology: Topology;
let topologyFile: string;
let root: string;

beforeAll(async () => {
  topology = compileMesh(work.path, {
    overlays: [],
    hosts: [
      { name: 'gw1', ips: ['127.0.47.1'], groups: ['gateway'] },
      { name: 'b1', ips: ['127.0.47.2'], groups: ['web'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [${REGISTRATION}, 24472]
  service_credentials:
    - {name: edge, enable_client: false}
site:
  scheduling_group: web
  ports: [24474]
  service_credentials: [{name: site}]
  gateway_endpoints:
    - {name: tls, hostnames: [site.example.test], port: ${FRONT}}
`,
  });
  topologyFile = join(work.path, 'topology.json');
  writeTopology(topologyFile, topology);
  const stateDir = join(work.path, 'state');
  await issueMeshCredentials({ topology, stateDir });
  root = join(stateDir, 'credentials', 'gw1');
}, 60_000);

afterAll(async () => {
  await stopAllDaemons();
  work.remove();
});

describe('meshplane gateway without --listen', () => {
  it('listens for agents on the gateway service first port, not on a port looked up by the credential name', async () => {
    expect(registrationPort(topology)).toBe(REGISTRATION);
    const gateway = startDaemon(['gateway', '--topology', topologyFile, '--credentials-root', root, '--credential', 'edge', '--front-address', '127.0.0.1'], 'agents register on');
    const line = await gateway.ready;
    expect(line).toContain(`agents register on 0.0.0.0:${REGISTRATION}; fronts ${FRONT}`);
    // A real TLS handshake there: the gateway's certificate (credential edge) answers.
    const subject = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: REGISTRATION, rejectUnauthorized: false, servername: 'gateway.mesh.internal' }, () => {
        const cn = socket.getPeerCertificate().subject?.CN ?? '';
        socket.destroy();
        resolve(String(cn));
      });
      socket.on('error', reject);
    });
    expect(subject).toBe('edge');
    expect(await gateway.stop()).not.toBeNull();
  });
});
