/**
 * The gateway and agent as operators run them: `meshplane gateway` and
 * `meshplane agent` processes with PKI-issued credentials, curl as the
 * client through each front (SNI, Host, CONNECT; IPv4 and IPv6), haproxy as
 * the backend that requires PROXY protocol and reports the client address
 * it learnt from it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAsync } from './support/dns.js';
import { PORTS, metricsUrl, prepareGatewayMesh, registrationPort, startAgent, startGateway, stopAllDaemons, startHaproxy } from './support/gateway.js';
import type { Daemon, GatewayFixture } from './support/gateway.js';
import { tempDir } from './support/run.js';
import { waitFor as waitUntil } from './support/wait.js';

const work = tempDir('gateway-e2e');
let fixture: GatewayFixture;
let haproxy: ReturnType<typeof startHaproxy>;
let gateway: Daemon;
let port: number;
let metrics: string;
const agents: Daemon[] = [];

async function curl(args: readonly string[]): Promise<string> {
  const result = await runAsync('curl', ['-sS', '--max-time', '10', ...args]);
  if (result.status !== 0) throw new Error(`curl ${args.join(' ')} failed (${result.status}): ${result.stderr}\n--- gateway ---\n${gateway.output()}`);
  return result.stdout;
}

async function scrape(): Promise<string> {
  return (await runAsync('curl', ['-sf', metrics])).stdout;
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  await waitUntil(check, { what, interval: 50, explain: () => `--- gateway ---\n${gateway.output()}` });
}

const backends = async (service: string): Promise<number> => Number(new RegExp(`meshplane_gateway_backends\\{service="${service}"\\} (\\d+)`).exec(await scrape())?.[1] ?? 0);
const serving = async (service: string): Promise<number> => Number(new RegExp(`meshplane_gateway_backends_serving\\{service="${service}"\\} (\\d+)`).exec(await scrape())?.[1] ?? 0);

beforeAll(async () => {
  fixture = await prepareGatewayMesh(work.path);
  haproxy = startHaproxy(work.path, fixture);
  gateway = startGateway(fixture);
  const line = await gateway.ready;
  port = registrationPort(line);
  metrics = metricsUrl(line);
  for (const service of ['site', 'app']) {
    const agent = startAgent(fixture, service, port);
    agents.push(agent);
    await agent.ready;
  }
  // Registered is not enough: a backend takes traffic once its first health check passed.
  await waitFor(async () => (await backends('site')) === 1 && (await backends('app')) === 1 && (await serving('site')) === 1 && (await serving('app')) === 1, 'agents registered and healthy');
}, 60_000);

afterAll(async () => {
  for (const agent of agents) await agent.stop();
  await gateway?.stop();
  await stopAllDaemons();
  haproxy?.kill();
  work.remove();
});

describe('fronts', () => {
  it('passes TLS through by SNI to a backend that terminates it, with the client address in PROXY v2', async () => {
    const ca = `${fixture.root('b1')}/x509/site/ca.pem`;
    const body = await curl(['--cacert', ca, '--resolve', `site.example.test:${PORTS.tls}:127.0.0.1`, `https://site.example.test:${PORTS.tls}/`]);
    expect(body).toMatch(/^site client=127\.0\.0\.1 port=\d+$/m);
  });

  it('routes plain HTTP by Host, PROXY v1, for IPv4 and IPv6 clients', async () => {
    expect(await curl(['--resolve', `app.example.test:${PORTS.http}:127.0.0.1`, `http://app.example.test:${PORTS.http}/v4`])).toMatch(/^app client=127\.0\.0\.1 port=\d+ path=\/v4$/m);
    expect(await curl(['-g', '--resolve', `app.example.test:${PORTS.http}:[::1]`, `http://app.example.test:${PORTS.http}/v6`])).toMatch(/^app client=::1 port=\d+ path=\/v6$/m);
  });

  it('tunnels HTTP CONNECT to service.<domain>, PROXY v2', async () => {
    const body = await curl(['--proxytunnel', '-x', `http://127.0.0.1:${PORTS.connect}`, `http://app.mesh.internal:${PORTS.appBackend}/through-connect`]);
    expect(body).toMatch(/^app client=127\.0\.0\.1 port=\d+ path=\/through-connect$/m);
    const six = await curl(['-g', '--proxytunnel', '-x', `http://[::1]:${PORTS.connect}`, `http://app.mesh.internal:${PORTS.appBackend}/six`]);
    expect(six).toMatch(/^app client=::1 /m);
  });

  it('forwards a tcp-mode port as it is, with nothing read first', async () => {
    expect(await curl([`http://127.0.0.1:${PORTS.tcp}/raw`])).toMatch(/^app client=127\.0\.0\.1 port=\d+ path=\/raw$/m);
  });

  it('answers 404 for unknown hosts and 503 when no agent serves the service', async () => {
    const unknown = await runAsync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--resolve', `nope.example.test:${PORTS.http}:127.0.0.1`, `http://nope.example.test:${PORTS.http}/`]);
    expect(unknown.stdout).toBe('404');
    const noAgent = await runAsync('curl', ['-s', '-w', ' %{http_code}', '--resolve', `other.example.test:${PORTS.http}:127.0.0.1`, `http://other.example.test:${PORTS.http}/`]);
    expect(noAgent.stdout).toMatch(/no backend connected for service other\n 503$/);
    expect(await scrape()).toMatch(/meshplane_gateway_connections_total\{port="24080",result="no_backend"\} [1-9]/);
  });
});

describe('TLS without SNI, and reloads', () => {
  it('sends TLS hellos without SNI to the first TLS endpoint of the port', async () => {
    const ca = `${fixture.root('b1')}/x509/site/ca.pem`;
    const result = await runAsync('sh', ['-c', `printf 'GET /nosni HTTP/1.0\\r\\n\\r\\n' | openssl s_client -quiet -noservername -connect 127.0.0.1:${PORTS.tls} -CAfile ${ca} 2>/dev/null`], 10_000);
    expect(result.stdout).toMatch(/site client=127\.0\.0\.1/);
  });

  it('reloads routes and certificates on SIGHUP while a tunnelled connection stays up', async () => {
    // A keep-alive connection through CONNECT, used before and after the reload.
    const socket = connect(PORTS.connect, '127.0.0.1');
    const reader = lines(socket);
    socket.write(`CONNECT app.mesh.internal:${PORTS.appBackend} HTTP/1.1\r\nHost: app.mesh.internal:${PORTS.appBackend}\r\n\r\n`);
    expect(await reader.until(/200 Connection established/)).toBeTruthy();
    socket.write('GET /before HTTP/1.1\r\nHost: app\r\n\r\n');
    expect(await reader.until(/path=\/before/)).toBeTruthy();

    const topology = JSON.parse(readFileSync(fixture.topologyFile, 'utf8')) as { services: Record<string, { gateway_endpoints: { name: string; hostnames: string[] }[] }> };
    topology.services['app']!.gateway_endpoints.find((e) => e.name === 'plain')!.hostnames.push('app2.example.test');
    writeFileSync(fixture.topologyFile, JSON.stringify(topology));
    gateway.child.kill('SIGHUP');
    await waitFor(() => gateway.output().includes('gateway reloaded'), 'reload logged');
    expect(await curl(['--resolve', `app2.example.test:${PORTS.http}:127.0.0.1`, `http://app2.example.test:${PORTS.http}/after-reload`])).toMatch(/path=\/after-reload/);

    socket.write('GET /after HTTP/1.1\r\nHost: app\r\n\r\n');
    expect(await reader.until(/path=\/after/)).toBeTruthy();
    socket.destroy();
  });
});

/** Collects text from a socket and waits for a pattern. */
function lines(socket: Socket): { until(pattern: RegExp): Promise<boolean> } {
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return {
    async until(pattern) {
      await waitFor(() => pattern.test(text), `${String(pattern)} on the tunnelled connection (got ${JSON.stringify(text)})`);
      return true;
    },
  };
}
