/**
 * No round trip before the first byte: on a plain HTTP front (and TLS and
 * tcp ones) the gateway sends what the client sends after its request head
 * on the CONNECT stream at once, before the agent has answered 200. The
 * agent here is a stand-in that answers only once the client's body has
 * arrived: a gateway that waited for the 200 would never deliver it.
 * A mesh of its own on ports 247xx.
 */
import { connect as netConnect } from 'node:net';
import { performServerHandshake } from 'node:http2';
import type { ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway, credentialTlsFiles } from '../src/gateway/index.js';
import { REGISTRATION_PATH, TUNNEL_SESSION_OPTIONS } from '../src/lib/tunnel-io.js';
import { issueMeshCredentials } from '../src/pki/index.js';
import type { Topology } from '../src/topology/index.js';
import { compileMesh, silentLogger } from './support/dns.js';
import { tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const P = { registration: 24700, http: 24780, backend: 24781 } as const;
const work = tempDir('gateway-first-byte');
let topology: Topology;
let gateway: Gateway;
let agentSocket: TLSSocket | null = null;
let agentSession: ServerHttp2Session | null = null;
/** CONNECT streams the stand-in agent has seen. */
let streams = 0;

beforeAll(async () => {
  topology = compileMesh(work.path, {
    overlays: [{ name: 'fbov', network: '100.64.47.0/24', port: 6581 }],
    hosts: [
      { name: 'gw1', ips: ['127.0.47.1'], groups: ['gateway'] },
      { name: 'b1', ips: ['127.0.47.2'], groups: ['web'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [${P.registration}]
  service_credentials:
    - {name: gateway, enable_client: false}
echo:
  scheduling_group: web
  ports: [${P.backend}]
  service_credentials: [{name: echo}]
  gateway_endpoints:
    - {name: plain, hostnames: [echo.first.test], port: ${P.http}, mode: http, health: false}
`,
  });
  const stateDir = join(work.path, 'state');
  await issueMeshCredentials({ topology, stateDir });
  gateway = new Gateway({
    topology,
    tls: credentialTlsFiles(join(stateDir, 'credentials', 'gw1'), 'gateway', null),
    registration: { address: '127.0.0.1', port: P.registration },
    frontAddresses: ['127.0.0.1'],
    registry: new Registry(),
    logger: silentLogger,
  });
  await gateway.start();
  const dir = join(stateDir, 'credentials', 'b1', 'x509', 'echo');
  const socket = tlsConnect({
    host: '127.0.0.1',
    port: P.registration,
    ca: readFileSync(join(dir, 'ca.pem')),
    cert: readFileSync(join(dir, 'client', 'cert.pem')),
    key: readFileSync(join(dir, 'client', 'private_key.pem')),
    servername: `gateway.${topology.domain}`,
    ALPNProtocols: ['h2'],
  });
  agentSocket = socket;
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  const session = performServerHandshake(socket, { ...TUNNEL_SESSION_OPTIONS });
  agentSession = session;
  session.on('error', () => undefined);
  session.on('stream', (stream: ServerHttp2Stream, headers) => {
    stream.on('error', () => undefined);
    if (headers[':method'] === 'GET' && headers[':path'] === REGISTRATION_PATH) {
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(JSON.stringify({ agent_id: 'b1/echo/0', host: 'b1', service: 'echo', credential: 'echo', version: 'test' }));
      return;
    }
    // A CONNECT stream: say nothing until the client's head and body are both here.
    streams++;
    let received = '';
    stream.setEncoding('latin1');
    stream.on('data', (chunk: string) => {
      received += chunk;
      if (!received.endsWith('BODY') || stream.headersSent) return;
      stream.respond({ ':status': 200 });
      stream.end(`HTTP/1.1 200 OK\r\nContent-Length: ${received.length}\r\nConnection: close\r\n\r\n${received}`);
    });
  });
  await waitFor(() => gateway.backends.size === 1, { what: 'the stand-in agent registered' });
}, 60_000);

afterAll(() => {
  agentSession?.destroy();
  agentSocket?.destroy();
  gateway?.close();
  work.remove();
});

describe('the first bytes of a tunnelled connection', () => {
  it('reach the agent before it answers 200: the body sent after the routed head arrives without waiting for the agent', async () => {
    const client = netConnect(P.http, '127.0.0.1');
    client.setEncoding('latin1');
    let reply = '';
    client.on('data', (chunk: string) => (reply += chunk));
    const ended = new Promise<void>((resolve, reject) => {
      client.on('end', resolve);
      client.on('error', reject);
    });
    await new Promise<void>((resolve) => client.once('connect', resolve));
    // The head first, alone: the gateway routes on it and opens the stream. The body follows only
    // once the stream is open (the head reached the agent), so it cannot ride along with the head.
    client.write('POST / HTTP/1.1\r\nHost: echo.first.test\r\nContent-Length: 4\r\n\r\n');
    await waitFor(() => streams === 1, { what: 'the CONNECT stream at the agent' });
    client.write('BODY');
    await ended;
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(reply).toContain('Host: echo.first.test');
    expect(reply.endsWith('BODY')).toBe(true);
  });
});
