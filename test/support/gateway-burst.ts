/**
 * A third small exposed mesh, on ports of its own (247xx) so that the burst
 * tests never meet the other gateway tests: real `meshplane gateway` and
 * `meshplane agent` processes, haproxy behind them insisting on PROXY
 * protocol, health checks off (a backend serves once it registers).
 *
 *   site  TLS passthrough on :24743 (site.burst.test), PROXY v2, backend
 *         haproxy TLS on :24781
 *   app   plain HTTP on :24780 (app.burst.test), PROXY v1, and CONNECT on
 *         :24728 (app.mesh.internal:24782), PROXY v2; backend haproxy :24782
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, connect as netConnect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { issueMeshCredentials } from '../../src/pki/index.js';
import { writeTopology } from '../../src/topology/index.js';
import { compileMesh } from './dns.js';
import type { GatewayFixture } from './gateway.js';

export const BURST_PORTS = { tls: 24743, http: 24780, connect: 24728, siteBackend: 24781, appBackend: 24782 } as const;

export async function prepareBurstMesh(dir: string): Promise<GatewayFixture> {
  const P = BURST_PORTS;
  const topology = compileMesh(dir, {
    overlays: [{ name: 'buov', network: '100.64.47.0/24', port: 6590 }],
    hosts: [
      { name: 'gw1', ips: ['127.0.47.1'], groups: ['gateway'] },
      { name: 'b1', ips: ['127.0.47.2'], groups: ['web'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [24700]
  service_credentials:
    - {name: gateway, enable_client: false}
site:
  scheduling_group: web
  ports: [${P.siteBackend}]
  service_credentials: [{name: site, extra_san: [site.burst.test]}]
  gateway_endpoints:
    - {name: tls, hostnames: [site.burst.test], port: ${P.tls}, mode: tls, proxy_protocol: v2, health: false}
app:
  scheduling_group: web
  ports: [${P.appBackend}]
  service_credentials: [{name: app}]
  gateway_endpoints:
    - {name: plain, hostnames: [app.burst.test], port: ${P.http}, mode: http, proxy_protocol: v1, health: false}
    - {name: tunnel, hostnames: [app.burst.test], port: ${P.connect}, mode: connect, proxy_protocol: v2, health: false}
`,
  });
  const topologyFile = join(dir, 'topology.json');
  writeTopology(topologyFile, topology);
  const stateDir = join(dir, 'state');
  await issueMeshCredentials({ topology, stateDir });
  return { topology, topologyFile, stateDir, root: (host) => join(stateDir, 'credentials', host) };
}

/** The first TLS record a client sends for `serverName` (its ClientHello), to replay from raw sockets. */
export async function recordClientHello(serverName: string): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const hello = new Promise<Buffer>((resolve) => {
    server.once('connection', (socket: Socket) => {
      let buffered = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt16BE(3)) {
          resolve(buffered.subarray(0, 5 + buffered.readUInt16BE(3)));
          socket.destroy();
        }
      });
    });
  });
  const client = tlsConnect({ host: '127.0.0.1', port, servername: serverName, rejectUnauthorized: false });
  client.on('error', () => undefined);
  const record = await hello;
  client.destroy();
  server.close();
  return record;
}

export interface AbortingClient {
  /** Sends `request` and resets the connection (RST, the answer unread): `early` right after writing, else on the first byte back. */
  readonly request: Buffer;
  readonly early: boolean;
}

/**
 * Runs `count` clients at once against 127.0.0.1:`port`; each sends the
 * request and then resets its connection without reading the answer (the
 * kernel sends RST). Resolves with how many saw a byte back before they
 * reset. Every socket is gone when it resolves.
 */
export async function abortingBurst(port: number, count: number, request: Buffer, earlyEvery: number, timeoutMs = 15_000): Promise<number> {
  let answered = 0;
  const one = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const socket = netConnect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => socket.destroy(), timeoutMs);
      const reset = (): void => {
        if (!socket.destroyed) socket.resetAndDestroy();
      };
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('connect', () => {
        socket.write(request);
        if (earlyEvery > 0 && i % earlyEvery === 0) {
          // Once the request has left: the gateway routes it and opens the tunnel, the client is gone.
          setImmediate(reset);
          return;
        }
        socket.once('data', () => {
          answered++;
          // Stop reading: whatever else arrives stays unread, as with a client that gave up.
          socket.pause();
          reset();
        });
      });
    });
  await Promise.all(Array.from({ length: count }, (_, i) => one(i)));
  return answered;
}

/**
 * TCP connections to these local ports that are not finished (the agent's
 * backend connections), from `ss`: established ones and half-closed ones too
 * (CLOSE-WAIT: the backend closed, the agent never did), not TIME-WAIT.
 */
export async function connectionsTo(ports: readonly number[]): Promise<number> {
  const filter = ports.map((p) => `dport = :${p}`).join(' or ');
  const child = spawn('ss', ['-Htn', 'state', 'connected', 'exclude', 'time-wait', `( ${filter} )`]);
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await once(child, 'close');
  return out.split('\n').filter((line) => line.trim() !== '').length;
}
