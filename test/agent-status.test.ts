/**
 * `meshplane agent --metrics`: a real agent tunnelled to a real gateway
 * serves Prometheus metrics at /metrics and a JSON status at /status (read
 * with curl); a request through the gateway moves the stream and byte
 * counters, a gateway restart shows as a tunnel down and a reconnect, and
 * promtool finds nothing to complain about on either endpoint. Its own small
 * mesh on 127.0.42.x and ports 254xx (no clash with the other gateway tests).
 */
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueMeshCredentials } from '../src/pki/index.js';
import { writeTopology } from '../src/topology/index.js';
import { compileMesh, runAsync } from './support/dns.js';
import { metricsUrl, startDaemon, stopAllDaemons } from './support/gateway.js';
import type { Daemon } from './support/gateway.js';
import { tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const FRONT = 25480;
const REGISTRATION = 25400;
const work = tempDir('meshplane-agent-status-');
let backend: Server;
let gatewayArgs: string[];
let gateway: Daemon;
let agent: Daemon;
let gatewayMetrics: string;
let agentBase: string;

async function curl(url: string): Promise<string> {
  const result = await runAsync('curl', ['-sS', '--fail', '--max-time', '10', url]);
  if (result.status !== 0) throw new Error(`curl ${url}: ${result.stderr}`);
  return result.stdout;
}

/** The value of one series in a scrape (labels exactly as written), or null when absent. */
function sample(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

interface Status {
  service: string;
  host: string;
  credential: string;
  tunnels_up: number;
  gateways: { gateway: string; tunnels: { slot: number; state: string; since: string }[] }[];
  counters: Record<string, unknown> & { streams_opened: number; bytes_from_backend: number; bytes_to_backend: number; reconnects: number };
}

const status = async (): Promise<Status> => JSON.parse(await curl(`${agentBase}/status`)) as Status;

beforeAll(async () => {
  const topology = compileMesh(work.path, {
    overlays: [],
    hosts: [
      { name: 'gw1', ips: ['127.0.42.1'], groups: ['gateway'] },
      { name: 'b1', ips: ['127.0.42.2'], groups: ['web'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [${REGISTRATION}]
  service_credentials:
    - {name: gateway, enable_client: false}
app:
  scheduling_group: web
  ports: [25481]
  service_credentials: [{name: app}]
  gateway_endpoints:
    - {name: plain, hostnames: [app.example.test], port: ${FRONT}, mode: http, health: {interval: 500ms, timeout: 400ms, rise: 1}}
`,
  });
  const topologyFile = join(work.path, 'topology.json');
  writeTopology(topologyFile, topology);
  const stateDir = join(work.path, 'state');
  await issueMeshCredentials({ topology, stateDir });
  backend = createServer((request, response) => response.end(request.url === '/health' ? 'ok\n' : 'hello from the backend\n'));
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const backendPort = (backend.address() as AddressInfo).port;
  gatewayArgs = ['gateway', '--topology', topologyFile, '--credentials-root', join(stateDir, 'credentials', 'gw1'), '--listen', `127.0.0.1:${REGISTRATION}`, '--front-address', '127.0.0.1', '--metrics', '127.0.0.1:0'];
  gateway = startDaemon(gatewayArgs, 'agents register on');
  gatewayMetrics = metricsUrl(await gateway.ready);
  agent = startDaemon(
    ['agent', '--topology', topologyFile, '--host', 'b1', '--service', 'app', '--credentials-root', join(stateDir, 'credentials', 'b1'), '--gateway', `127.0.0.1:${REGISTRATION}`, '--backend', `127.0.0.1:${backendPort}`, '--reconnect-max', '0.3', '--metrics', '127.0.0.1:0'],
    'meshplane agent:',
  );
  const line = await agent.ready;
  agentBase = /status at (http:\/\/\S+)\/status/.exec(line)![1]!;
  expect(metricsUrl(line)).toBe(`${agentBase}/metrics`);
}, 60_000);

afterAll(async () => {
  await stopAllDaemons();
  await new Promise((resolve) => backend?.close(resolve));
  work.remove();
});

describe('agent --metrics', () => {
  it('shows its tunnel up in /status and /metrics, and the gateway labels the backend by host and slot', async () => {
    await waitFor(async () => sample(await curl(`${agentBase}/metrics`), 'meshplane_agent_tunnels_up{gateway="127.0.0.1:25400"}') === 1, { what: 'the agent reports its tunnel up', explain: () => agent.output() });
    const s = await status();
    expect(s).toMatchObject({ service: 'app', host: 'b1', credential: 'app', tunnels_up: 1 });
    expect(s.gateways).toEqual([{ gateway: '127.0.0.1:25400', tunnels: [{ slot: 0, state: 'up', since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown }] }]);
    expect(Date.parse(s.gateways[0]!.tunnels[0]!.since)).toBeLessThanOrEqual(Date.now());
    // The gateway's per-backend series: host and instance, never the connection id.
    await waitFor(async () => sample(await curl(gatewayMetrics), 'meshplane_gateway_backend_healthy{service="app",host="b1",slot="0",endpoint="plain"}') === 1, { what: 'the gateway sees b1 healthy' });
    expect(await curl(gatewayMetrics)).not.toMatch(/backend="/);
  });

  it('counts streams, bytes and health-check answers when traffic goes through the gateway', async () => {
    const before = await status();
    const answer = await runAsync('curl', ['-sS', '--fail', '--max-time', '10', '--resolve', `app.example.test:${FRONT}:127.0.0.1`, `http://app.example.test:${FRONT}/`]);
    expect(answer.stdout).toBe('hello from the backend\n');
    const after = await waitFor(async () => {
      const s = await status();
      return s.counters.streams_opened > before.counters.streams_opened && s.counters.bytes_from_backend > before.counters.bytes_from_backend ? s : null;
    }, { what: 'the stream and its bytes counted' });
    expect(after.counters.bytes_to_backend).toBeGreaterThan(before.counters.bytes_to_backend);
    const text = await curl(`${agentBase}/metrics`);
    expect(sample(text, 'meshplane_agent_streams_opened_total')).toBe(after.counters.streams_opened);
    expect(sample(text, 'meshplane_agent_backend_bytes_total{direction="from_backend"}')).toBeGreaterThanOrEqual(after.counters.bytes_from_backend);
    expect(sample(text, 'meshplane_agent_health_checks_total{result="pass"}')).toBeGreaterThan(0);
    expect(sample(text, 'meshplane_agent_backend_connect_errors_total')).toBe(0);
    expect(text).toMatch(/^process_cpu_seconds_total\{component="agent"\} /m);
  });

  it('shows a gateway restart as the tunnel down, then a reconnect and the tunnel up again', async () => {
    const before = await status();
    await gateway.stop('SIGKILL');
    await waitFor(async () => (await status()).gateways[0]!.tunnels[0]!.state === 'down', { what: 'the tunnel shown down' });
    expect(sample(await curl(`${agentBase}/metrics`), 'meshplane_agent_tunnels_up{gateway="127.0.0.1:25400"}')).toBe(0);
    gateway = startDaemon(gatewayArgs, 'agents register on');
    gatewayMetrics = metricsUrl(await gateway.ready);
    const after = await waitFor(async () => {
      const s = await status();
      return s.tunnels_up === 1 ? s : null;
    }, { what: 'the tunnel up again', explain: () => agent.output() });
    expect(after.counters.reconnects).toBeGreaterThan(before.counters.reconnects);
    expect(sample(await curl(`${agentBase}/metrics`), 'meshplane_agent_reconnects_total{gateway="127.0.0.1:25400"}')).toBe(after.counters.reconnects);
  });

  it('passes promtool check metrics on the agent and the gateway endpoints', async () => {
    for (const url of [`${agentBase}/metrics`, gatewayMetrics]) {
      const text = await curl(url);
      const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect({ url, status: check.status, complaints: `${check.stdout}${check.stderr}` }).toEqual({ url, status: 0, complaints: '' });
    }
  });
});
