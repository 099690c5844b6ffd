/**
 * Bursts of clients that give up: each sends a request through a front and
 * resets its connection with the answer unread. The tunnel must carry on
 * (no GOAWAY, no deregistration, no reconnect), the agent must stay up, and
 * every backend connection must close. Real `meshplane gateway` and
 * `meshplane agent` processes, haproxy as the backend.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAsync } from './support/dns.js';
import { BURST_PORTS as P, abortingBurst, connectionsTo, prepareBurstMesh, recordClientHello } from './support/gateway-burst.js';
import { metricsUrl, registrationPort, startAgent, startGateway, startProxyProtocolHaproxy, stopAllDaemons } from './support/gateway.js';
import type { Daemon, GatewayFixture } from './support/gateway.js';
import { tempDir } from './support/run.js';

const work = tempDir('gateway-burst');
let fixture: GatewayFixture;
let haproxy: ReturnType<typeof startProxyProtocolHaproxy>;
let gateway: Daemon;
let metrics: string;
const agents = new Map<string, Daemon>();

const CLIENTS = 1000;
const ROUNDS = 3;

function logs(): string {
  return `--- gateway ---\n${gateway.output().slice(-4000)}\n${[...agents].map(([name, agent]) => `--- agent ${name} ---\n${agent.output().slice(-3000)}`).join('\n')}`;
}

async function waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function scrape(): Promise<string> {
  return (await runAsync('curl', ['-sf', metrics])).stdout;
}

function sum(text: string, pattern: RegExp): number {
  return text
    .split('\n')
    .filter((line) => pattern.test(line))
    .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

async function curl(args: readonly string[]): Promise<string> {
  const result = await runAsync('curl', ['-sS', '-k', '--max-time', '10', ...args]);
  if (result.status !== 0) throw new Error(`curl ${args.join(' ')} failed (${result.status}): ${result.stderr}\n${logs()}`);
  return result.stdout;
}

/** A real client through each front gets its answer. */
async function answersThroughEveryFront(tag: string): Promise<void> {
  expect(await curl(['--resolve', `app.burst.test:${P.http}:127.0.0.1`, `http://app.burst.test:${P.http}/${tag}`])).toMatch(new RegExp(`^app client=127\\.0\\.0\\.1 port=\\d+ path=/${tag}$`, 'm'));
  expect(await curl(['--proxytunnel', '-x', `http://127.0.0.1:${P.connect}`, `http://app.mesh.internal:${P.appBackend}/${tag}`])).toMatch(new RegExp(`path=/${tag}$`, 'm'));
  expect(await curl(['--resolve', `site.burst.test:${P.tls}:127.0.0.1`, `https://site.burst.test:${P.tls}/${tag}`])).toMatch(/^site client=127\.0\.0\.1 /m);
}

beforeAll(async () => {
  fixture = await prepareBurstMesh(work.path);
  haproxy = startProxyProtocolHaproxy(work.path, join(fixture.root('b1'), 'x509', 'site', 'server'), { site: P.siteBackend, app: P.appBackend });
  // The bursts come from one address, 127.0.0.1: lift the per-source cap (its own tests are in gateway-limits).
  gateway = startGateway(fixture, ['--max-connections', '8000', '--max-connections-per-source', '8000']);
  const line = await gateway.ready;
  metrics = metricsUrl(line);
  for (const service of ['site', 'app']) {
    const agent = startAgent(fixture, service, registrationPort(line));
    agents.set(service, agent);
    await agent.ready;
  }
  await waitFor(() => (gateway.output().match(/"msg":"backend registered"/g) ?? []).length === 2, 'both agents registered');
  // haproxy is up once it answers through the tunnel.
  await waitFor(async () => (await runAsync('curl', ['-s', '--max-time', '2', '--resolve', `app.burst.test:${P.http}:127.0.0.1`, `http://app.burst.test:${P.http}/`])).stdout.includes('app client='), 'haproxy answering');
  await answersThroughEveryFront('before');
}, 90_000);

afterAll(async () => {
  for (const agent of agents.values()) await agent.stop('SIGINT');
  await gateway?.stop('SIGINT');
  await stopAllDaemons();
  haproxy?.kill();
  work.remove();
});

describe('clients that reset their connections in bursts', () => {
  it(`keeps the tunnels, the agents and the backends sound through ${ROUNDS} rounds of ${CLIENTS} aborting clients on each front`, async () => {
    const hello = await recordClientHello('site.burst.test');
    const httpRequest = Buffer.from(`GET /burst HTTP/1.1\r\nHost: app.burst.test\r\n\r\n`);
    // The backend answers and closes at once; the client resets after the first byte back, so many
    // tunnels are cut after the backend's FIN (its connection must still close, not sit in CLOSE-WAIT).
    const closingRequest = Buffer.from(`GET /burst HTTP/1.1\r\nHost: app.burst.test\r\nConnection: close\r\n\r\n`);
    const connectRequest = Buffer.from(`CONNECT app.mesh.internal:${P.appBackend} HTTP/1.1\r\nHost: app.mesh.internal:${P.appBackend}\r\n\r\nGET /burst HTTP/1.1\r\nHost: app\r\n\r\n`);
    const routedBefore = sum(await scrape(), /^meshplane_gateway_connections_total\{.*result="routed"\}/);
    const answered: number[][] = [];
    const closing: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // One in four resets right after sending (often before the agent answered), the rest on the first byte back.
      answered.push(await Promise.all([abortingBurst(P.connect, CLIENTS, connectRequest, 4), abortingBurst(P.http, CLIENTS, httpRequest, 4), abortingBurst(P.tls, CLIENTS, hello, 4)]));
      closing.push(await abortingBurst(P.http, CLIENTS / 4, closingRequest, 0));
    }
    const routed = sum(await scrape(), /^meshplane_gateway_connections_total\{.*result="routed"\}/) - routedBefore;

    for (const [name, agent] of agents) {
      expect(agent.child.exitCode, `agent ${name} exited\n${logs()}`).toBeNull();
      expect(agent.child.signalCode).toBeNull();
    }
    const dropped = gateway.output().match(/.*(backend deregistered|did not answer PING).*/g) ?? [];
    expect(dropped, `a backend was dropped:\n${dropped.join('\n')}\n${logs()}`).toEqual([]);
    // Clients that went away are no failures of the backend's.
    const ejected = gateway.output().match(/.*backend ejected.*/g) ?? [];
    expect(ejected, `a backend was ejected:\n${ejected.join('\n')}`).toEqual([]);

    // Every tunnelled connection closes: none open at the gateway, none from the agents to haproxy.
    await waitFor(async () => sum(await scrape(), /^meshplane_gateway_backend_open_connections\{/) === 0, 'no tunnelled connection left open at the gateway', 20_000);
    await waitFor(async () => (await connectionsTo([P.siteBackend, P.appBackend])) === 0, 'no backend connection left open by the agents', 20_000);

    // A real client still gets answers, through the same tunnels.
    await answersThroughEveryFront('after');
    for (const [name, agent] of agents) {
      expect(agent.output(), `agent ${name} lost its tunnel`).not.toMatch(/tunnel closed|did not answer PING/);
      expect((agent.output().match(/"msg":"tunnel up"/g) ?? []).length, `agent ${name} reconnected`).toBe(1);
    }
    expect((gateway.output().match(/"msg":"backend registered"/g) ?? []).length).toBe(2);
    // Most clients got as far as an answer, so the bursts went through the tunnels.
    for (const counts of answered) for (const count of counts) expect(count, `answered per round and front: ${JSON.stringify(answered)}`).toBeGreaterThan(CLIENTS / 2);
    for (const count of closing) expect(count, `answered per round, closing backend: ${JSON.stringify(closing)}`).toBeGreaterThan(CLIENTS / 8);
    expect(routed).toBeGreaterThan(ROUNDS * CLIENTS * 3 * 0.5);
  }, 240_000);
});
