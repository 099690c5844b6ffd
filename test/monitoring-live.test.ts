/**
 * A real Prometheus scrapes a running `meshplane up` (built CLI, the example
 * inputs, its --metrics endpoint), the PKI status metrics of one of its
 * hosts (served as node-exporter's textfile collector would), and a second,
 * small mesh of a real `meshplane gateway` and `meshplane agent` whose
 * backend this test owns; monitoring/alerts.yml is loaded. Through
 * Prometheus' HTTP API every dashboard panel's query returns series, and
 * every alert's FULL expression (threshold included) returns a series
 * because of a real fault, caused the way it happens in the field:
 *
 *   MeshplaneDnsReloadFailing         a broken edit of services.yml (up rejects the reload)
 *   MeshplaneCertificateExpiringSoon  host1's web client certificate re-requested, signed
 *                                     with `pki sign --lifetime 1h` by up's CA, installed
 *   MeshplaneCRLExpiringSoon          the superseded certificate revoked by the CA's own
 *                                     revoke() with its clock six days back (the CRL a
 *                                     `pki revoke` six days ago wrote: nextUpdate in 1 day),
 *                                     installed beside the credential with `pki install --crl`
 *   MeshplaneRefusalSpike             500 connections asking up's http front for an unknown
 *                                     Host (loopback, bounded), so rate(...[5m]) > 1
 *   MeshplaneAgentReconnectStorm      the second gateway's admin API kills the agent's
 *                                     tunnel 12 times (DELETE /backends/:id); it redials each
 *   MeshplaneBackendDown and          the second mesh's backend process stopped: the
 *   MeshplaneNoHealthyBackend         gateway's health check (every 1 s) fails through the tunnel
 *
 * The second mesh is there because up's demo backends live inside up's own
 * process (nothing outside can stop one) and up's agents use the default
 * reconnect backoff (up to 30 s), which makes a storm of 11 redials take
 * minutes; a separate agent takes --reconnect-max.
 *
 * `for:` is ignored: the expressions are queried through /api/v1/query, and
 * /api/v1/alerts must list each alert as pending (with `for:`) or firing.
 * Where a fault picks one series, the result must be exactly that series
 * (the healthy ones beside it stay quiet). Runs in 35-50 s here (2 cores,
 * load average 5-12). Each fault is sized past its threshold, not at it:
 * 200 refusals, 7 kills, a certificate of 8 days or a CRL with 3 days left
 * fire nothing (checked by hand).
 * Also: promtool check metrics passes on up's endpoint (DNS, gateway, agent
 * and process metrics) and on the PKI status file.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectCert, issueMeshCredentials, loadCa, revoke } from '../src/pki/index.js';
import { credentialFiles, stateCredentialsRoot, writeTopology } from '../src/topology/index.js';
import { compileMesh, runAsync } from './support/dns.js';
import { startDaemon, stopAllDaemons } from './support/gateway.js';
import { CLI, REPO_ROOT, tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const work = tempDir('meshplane-monitoring-live-');
const TCP_FRONT = 10090;
/** The second mesh: its http front and the gateway service's port (only in the topology: --listen picks one). */
const EDGE = { front: 24880, gateway: 24800, service: 24801 } as const;
const DAY_MS = 86_400_000;
/** Refused connections in the burst: rate(...[5m]) = 500 / 300 s > 1. */
const REFUSALS = 500;
/** Tunnels killed: increase(...[10m]) > 10 needs 11. */
const KILLS = 12;
const curlResults: { line: string; status: number; stdout: string }[] = [];
const stopped: (() => void)[] = [];
let up: ChildProcess;
let upOut = '';
let prometheus: ChildProcess;
let promOut = '';
let promBase = '';
let metricsUrl = '';
let textfile: Server;
let front: { address: string; port: number };
let webClientCert = '';
let webCrl = '';
let edgeAdmin = '';
let edgeToken = '';
let edgeAgentStatus = '';
let edgeRegistration = '';
let backend: Server;

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function query(expr: string): Promise<Sample[]> {
  const response = await fetch(`${promBase}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await response.json()) as { status: string; error?: string; data?: { result: Sample[] } };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? response.status}`);
  return body.data!.result;
}

const kill = (child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): void => {
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill(signal);
};

async function cli(args: readonly string[]): Promise<string> {
  const result = await runAsync(process.execPath, [CLI, ...args]);
  expect(result.status, `meshplane ${args.join(' ')}\n${result.stdout}${result.stderr}`).toBe(0);
  return result.stdout;
}

/** The alert's expression, exactly as alerts.yml has it (one line or a block). */
function alertExpr(alert: string): string {
  const rules = readFileSync(join(REPO_ROOT, 'monitoring', 'alerts.yml'), 'utf8');
  const rule = new RegExp(`- alert: ${alert}\\n(?:\\s+#.*\\n)*\\s+expr: (?:\\|\\n((?:\\s{10}.*\\n)+)|(.*)\\n)`).exec(rules);
  if (rule === null) throw new Error(`no expr for ${alert} in alerts.yml`);
  return (rule[1] ?? rule[2]!).trim();
}

/** Waits until the alert's full expression returns series, and returns them (labels only). */
async function firing(alert: string, what: string): Promise<Record<string, string>[]> {
  const expr = alertExpr(alert);
  const result = await waitFor(async () => {
    const samples = await query(expr);
    return samples.length > 0 ? samples : false;
  }, { what: `${alert} (${what}): ${expr} returning a series`, deadline: 60_000, interval: 500, explain: () => `up:\n${upOut.slice(-3000)}\nprometheus:\n${promOut.slice(-2000)}` });
  return result.map((s) => s.metric);
}

/** Waits until /api/v1/alerts lists the alert as pending (its `for:` running) or firing. */
async function listed(alert: string): Promise<void> {
  await waitFor(
    async () => {
      const body = (await (await fetch(`${promBase}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
      return body.data.alerts.some((a) => a.labels.alertname === alert && (a.state === 'pending' || a.state === 'firing'));
    },
    { what: `${alert} pending or firing in /api/v1/alerts`, deadline: 30_000, interval: 500 },
  );
}

async function edgeApi<T>(method: string, path: string): Promise<{ status: number; body: T }> {
  const response = await fetch(`${edgeAdmin}${path}`, { method, headers: { authorization: `Bearer ${edgeToken}` } });
  return { status: response.status, body: (await response.json()) as T };
}

const shopBackends = async (): Promise<{ id: string; health: string }[]> => (await edgeApi<{ backends: { id: string; health: string }[] }>('GET', '/backends?service=shop')).body.backends;

const agentReconnects = async (): Promise<number> => ((await (await fetch(edgeAgentStatus)).json()) as { counters: { reconnects: number } }).counters.reconnects;

/**
 * One connection asking the front for a Host it has no route for; resolves when it closes
 * (an answer and a close, or a reset: either way the gateway refused it; whether it counted
 * is for the alert to show).
 */
function refusedRequest(): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(front.port, front.address);
    socket.setTimeout(10_000, () => socket.destroy());
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: nowhere.example\r\nConnection: close\r\n\r\n'));
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
  });
}

/** The second mesh: a gateway host and a host running `shop`, checked every second. */
async function startEdge(): Promise<string[]> {
  const dir = join(work.path, 'edge');
  mkdirSync(dir);
  const topology = compileMesh(dir, {
    overlays: [{ name: 'edgeov', network: '100.64.48.0/24', port: 6578 }],
    hosts: [
      { name: 'egw', ips: ['127.0.48.1'], groups: ['gateway'] },
      { name: 'eb1', ips: ['127.0.48.2'], groups: ['shop'] },
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [${EDGE.gateway}]
  service_credentials:
    - {name: gateway, enable_client: false}
shop:
  scheduling_group: shop
  ports: [${EDGE.service}]
  service_credentials: [{name: shop}]
  gateway_endpoints:
    - {name: store, hostnames: [shop.example.test], port: ${EDGE.front}, mode: http, health: {interval: 1s, timeout: 1s, rise: 1, fall: 2}}
`,
  });
  const topologyFile = join(dir, 'topology.json');
  writeTopology(topologyFile, topology);
  const stateDir = join(dir, 'state');
  await issueMeshCredentials({ topology, stateDir });
  edgeToken = 'edge-admin-token-0123456789abcdef';
  const tokenFile = join(dir, 'admin-token');
  writeFileSync(tokenFile, `${edgeToken}\n`, { mode: 0o600 });

  backend = createServer((request, response) => response.writeHead(200, { 'content-type': 'text/plain' }).end(request.url === '/health' ? 'ok' : 'shop\n'));
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  stopped.push(() => backend.closeAllConnections());
  stopped.push(() => backend.close());

  const gateway = startDaemon(
    ['gateway', '--topology', topologyFile, '--credentials-root', stateCredentialsRoot(stateDir, 'egw'), '--listen', '127.0.0.1:0', '--front-address', '127.0.0.1', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--admin-token-file', tokenFile],
    'agents register on',
  );
  const gatewayLine = await gateway.ready;
  edgeRegistration = /agents register on (\S+);/.exec(gatewayLine)![1]!;
  edgeAdmin = /admin API at (http:\/\/\S+?)\/?;/.exec(gatewayLine)![1]!;
  const agent = startDaemon(
    ['agent', '--topology', topologyFile, '--host', 'eb1', '--service', 'shop', '--credentials-root', stateCredentialsRoot(stateDir, 'eb1'), '--gateway', edgeRegistration, '--reconnect-max', '0.3', '--backend', `127.0.0.1:${(backend.address() as AddressInfo).port}`, '--metrics', '127.0.0.1:0'],
    'meshplane agent:',
  );
  const agentLine = await agent.ready;
  edgeAgentStatus = /status at (\S+)/.exec(agentLine)![1]!;
  await waitFor(async () => (await shopBackends()).some((b) => b.health === 'healthy'), { what: 'shop healthy at the second gateway', explain: () => `${gateway.output()}\n${agent.output()}` });
  return [/metrics at (\S+)/.exec(gatewayLine)![1]!, /metrics at (\S+)/.exec(agentLine)![1]!].map((url) => new URL(url).host);
}

beforeAll(async () => {
  const services = join(work.path, 'services.yml');
  const inventory = join(work.path, 'hosts.yml');
  // The example, plus a tcp front: up must print a working command for that kind too.
  const example = readFileSync(join(REPO_ROOT, 'services.yml.example'), 'utf8');
  const connectEndpoint = '      mode: connect\n      proxy_protocol: v1\n';
  expect(example).toContain(connectEndpoint);
  writeFileSync(services, example.replace(connectEndpoint, `${connectEndpoint}    - name: raw\n      port: ${TCP_FRONT}\n      mode: tcp\n`));
  copyFileSync(join(REPO_ROOT, 'hosts.yml.example'), inventory);
  const stateDir = join(work.path, 'state');
  up = spawn(process.execPath, [CLI, 'up', '--state-dir', stateDir, '-s', services, '-i', inventory, '--dns-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { cwd: work.path });
  stopped.push(() => kill(up));
  up.stdout!.on('data', (chunk: Buffer) => (upOut += chunk.toString()));
  up.stderr!.on('data', (chunk: Buffer) => (upOut += chunk.toString()));
  await waitFor(() => upOut.includes('Ctrl-C stops it'), { what: 'meshplane up serving', deadline: 60_000, explain: () => upOut });
  metricsUrl = /^ {2}curl -sS (http:\/\/\S+\/metrics)$/m.exec(upOut)![1]!;
  const printedFront = /--resolve \S+:(\d+):(\S+) http:/.exec(upOut)!;
  front = { address: printedFront[2]!, port: Number(printedFront[1]) };

  // Faults on host1's credentials, as an operator would cause them: its web client certificate
  // re-requested and signed for one hour, and a CRL signed six days ago installed beside it.
  const host1 = stateCredentialsRoot(stateDir, 'host1');
  const caDir = join(stateDir, 'ca');
  const topologyFile = join(stateDir, 'topology.json');
  const web = credentialFiles(host1, 'web', 'client');
  webClientCert = web.cert;
  webCrl = web.crl;
  const superseded = inspectCert(readFileSync(web.cert, 'utf8'), web.cert).serial;
  const csr = join(work.path, 'web-client.csr');
  const signed = join(work.path, 'web-client.pem');
  await cli(['pki', 'request', '-t', topologyFile, '--host', 'host1', '--credential', 'web', '--kind', 'client', '--credentials-root', host1, '--force', '--out', csr]);
  await cli(['pki', 'sign', '--ca-dir', caDir, '-t', topologyFile, '--host', 'host1', '--csr', csr, '--out', signed, '--lifetime', '1h']);
  await revoke(loadCa(caDir), superseded, 'superseded', new Date(Date.now() - 6 * DAY_MS));
  await cli(['pki', 'install', '--credential', 'web', '--kind', 'client', '--cert', signed, '--ca', join(caDir, 'ca.pem'), '--crl', join(caDir, 'crl.pem'), '--credentials-root', host1]);

  // The PKI status of host1, served the way node-exporter's textfile collector would.
  const pkiFile = join(work.path, 'meshplane_pki.prom');
  await cli(['pki', 'status', '--credentials-root', host1, '--metrics-file', pkiFile]);
  textfile = createServer((_request, response) => response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(readFileSync(pkiFile)));
  await new Promise<void>((resolve) => textfile.listen(0, '127.0.0.1', resolve));
  stopped.push(() => textfile.close());

  const [edgeGateway, edgeAgent] = await startEdge();

  const port = await freePort();
  promBase = `http://127.0.0.1:${port}`;
  const config = join(work.path, 'prometheus.yml');
  const job = (name: string, target: string): string => `  - job_name: ${name}\n    static_configs: [{targets: [${JSON.stringify(target)}]}]\n`;
  writeFileSync(
    config,
    `global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [${JSON.stringify(join(REPO_ROOT, 'monitoring', 'alerts.yml'))}]
scrape_configs:
${job('up', new URL(metricsUrl).host)}${job('pki', `127.0.0.1:${(textfile.address() as AddressInfo).port}`)}${job('gateway', edgeGateway!)}${job('agent', edgeAgent!)}`,
  );
  prometheus = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${join(work.path, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`], { cwd: work.path });
  stopped.push(() => kill(prometheus));
  prometheus.stdout!.on('data', (chunk: Buffer) => (promOut += chunk.toString()));
  prometheus.stderr!.on('data', (chunk: Buffer) => (promOut += chunk.toString()));
  await waitFor(async () => (await fetch(`${promBase}/-/ready`)).ok, { what: 'Prometheus ready', explain: () => promOut });

  // Traffic: DNS queries, a request through every front, a refused one.
  for (const line of upOut.match(/^ {2}dig .*$/gm) ?? []) await runAsync('sh', ['-c', line.replace(/#.*$/, '')]);
  for (const line of upOut.match(/^ {2}curl .*$/gm) ?? []) curlResults.push({ line, ...(await runAsync('sh', ['-c', `${line} -sS --fail --max-time 10`])) });
  await runAsync('curl', ['-sS', '--max-time', '10', '-o', '/dev/null', '-H', 'Host: nowhere.example', `http://${front.address}:${front.port}/`]);
  // Prometheus must have seen each counter a fault moves before the fault: increase() and rate() need the step.
  for (const before of ['meshplane_dns_reloads_total{job="up",result="failure"} == 0', 'meshplane_agent_reconnects_total{job="agent"} == 0', 'meshplane_gateway_connections_total{job="up",result="no_route"}']) {
    await waitFor(async () => (await query(before)).length > 0, { what: `Prometheus seeing ${before}`, explain: () => promOut });
  }
}, 120_000);

afterAll(async () => {
  for (const stop of stopped.reverse()) stop();
  await stopAllDaemons();
  work.remove();
});

describe('a real Prometheus scraping meshplane up and a gateway with its agent', () => {
  it('ran every printed curl line with success, the tcp front\'s among them', () => {
    expect(curlResults.some((r) => r.line.includes(`:${TCP_FRONT}/`))).toBe(true);
    for (const r of curlResults) expect({ line: r.line, status: r.status }).toEqual({ line: r.line, status: 0 });
    const tcp = curlResults.find((r) => r.line.includes(`:${TCP_FRONT}/`))!;
    expect(tcp.stdout).toMatch(/^hello from web on \S+: you are 127\.0\.0\.1:\d+ \(PROXY none\)/);
  });

  it('gets series for every dashboard query, from four healthy targets', async () => {
    const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'monitoring', 'grafana-dashboard.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    const panels = dashboard.panels.flatMap((p) => p.targets.map((t, i) => ({ what: `panel "${p.title}" #${i}`, expr: t.expr })));
    const empty = async (): Promise<string[]> => {
      const missing: string[] = [];
      for (const q of panels) if ((await query(q.expr).catch(() => [])).length === 0) missing.push(`${q.what}: ${q.expr}`);
      return missing;
    };
    await waitFor(async () => (await empty()).length === 0, { what: 'every panel query returning series', deadline: 30_000, interval: 1000, explain: async () => `empty:\n${(await empty()).join('\n')}` });
    const targets = (await (await fetch(`${promBase}/api/v1/targets`)).json()) as { data: { activeTargets: { labels: { job: string }; health: string; lastError: string }[] } };
    expect(targets.data.activeTargets.map((t) => [t.labels.job, t.health, t.lastError]).sort()).toEqual([['agent', 'up', ''], ['gateway', 'up', ''], ['pki', 'up', ''], ['up', 'up', '']]);
  }, 60_000);

  it('has every alert of alerts.yml covered below', () => {
    const rules = readFileSync(join(REPO_ROOT, 'monitoring', 'alerts.yml'), 'utf8');
    const alerts = [...rules.matchAll(/- alert: (\w+)/g)].map((m) => m[1]!).sort();
    const tests = readFileSync(new URL(import.meta.url), 'utf8');
    for (const alert of alerts) expect(tests, alert).toContain(`firing('${alert}'`);
    expect(alerts).toHaveLength(7);
  });

  it('fires MeshplaneDnsReloadFailing on a broken edit of services.yml', async () => {
    writeFileSync(join(work.path, 'services.yml'), `${readFileSync(join(work.path, 'services.yml'), 'utf8')}\nbroken: [\n`);
    await waitFor(() => upOut.includes('edit rejected'), { what: 'the broken edit rejected', explain: () => upOut });
    expect(await firing('MeshplaneDnsReloadFailing', 'a rejected reload')).toEqual([{ job: 'up', instance: new URL(metricsUrl).host, result: 'failure' }]);
    await listed('MeshplaneDnsReloadFailing');
  });

  it('fires MeshplaneCertificateExpiringSoon for the one-hour certificate only', async () => {
    const series = await firing('MeshplaneCertificateExpiringSoon', 'a certificate signed for 1h');
    expect(series).toEqual([{ job: 'pki', instance: expect.any(String) as unknown, credential: 'web', kind: 'client', path: webClientCert }]);
    const left = Number((await query(`meshplane_pki_certificate_expiry_timestamp_seconds{kind="client",credential="web"} - time()`))[0]!.value[1]);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(3600);
    await listed('MeshplaneCertificateExpiringSoon');
  });

  it('fires MeshplaneCRLExpiringSoon for the CRL signed six days ago only', async () => {
    const series = await firing('MeshplaneCRLExpiringSoon', 'a CRL with nextUpdate in a day');
    expect(series).toEqual([{ job: 'pki', instance: expect.any(String) as unknown, path: webCrl }]);
    await listed('MeshplaneCRLExpiringSoon');
  });

  it('fires MeshplaneRefusalSpike after a burst of requests for an unknown Host', async () => {
    // Eight at a time: a burst, under the per-source cap, over in a few seconds.
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < REFUSALS) {
        next++;
        await refusedRequest();
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
    expect(await firing('MeshplaneRefusalSpike', `${REFUSALS} refused connections`)).toEqual([{ job: 'up', instance: new URL(metricsUrl).host }]);
    await listed('MeshplaneRefusalSpike');
  });

  it('fires MeshplaneAgentReconnectStorm after the gateway kills the agent\'s tunnel again and again', async () => {
    let previous = '';
    for (let i = 0; i < KILLS; i++) {
      const [current] = await waitFor(
        async () => {
          const list = await shopBackends();
          return list.length === 1 && list[0]!.id !== previous ? list : false;
        },
        { what: `the agent registered again (kill ${i})` },
      );
      const reconnects = await agentReconnects();
      expect((await edgeApi('DELETE', `/backends/${current!.id}`)).status).toBe(200);
      await waitFor(async () => (await agentReconnects()) > reconnects, { what: `the agent redialling (kill ${i})` });
      previous = current!.id;
    }
    expect(await agentReconnects()).toBeGreaterThanOrEqual(KILLS);
    const series = await firing('MeshplaneAgentReconnectStorm', `${KILLS} tunnels killed`);
    expect(series).toEqual([{ job: 'agent', instance: expect.any(String) as unknown, gateway: edgeRegistration }]);
    await listed('MeshplaneAgentReconnectStorm');
  });

  it('fires MeshplaneBackendDown and MeshplaneNoHealthyBackend when the backend process stops', async () => {
    // Healthy again after the storm's new registrations (each starts unchecked, counted as 0).
    const down = alertExpr('MeshplaneBackendDown');
    await waitFor(async () => (await query(down)).length === 0, { what: `${down} empty before the backend stops` });
    await new Promise<void>((resolve) => {
      backend.close(() => resolve());
      backend.closeAllConnections();
    });
    await waitFor(async () => (await shopBackends())[0]?.health === 'unhealthy', { what: 'the gateway seeing shop unhealthy' });
    expect(await firing('MeshplaneBackendDown', 'a stopped backend')).toEqual([
      { __name__: 'meshplane_gateway_backend_healthy', job: 'gateway', instance: expect.any(String) as unknown, service: 'shop', host: 'eb1', slot: '0', endpoint: 'store' },
    ]);
    expect(await firing('MeshplaneNoHealthyBackend', 'its only backend stopped')).toEqual([{ job: 'gateway', service: 'shop', endpoint: 'store' }]);
    await listed('MeshplaneBackendDown');
    await listed('MeshplaneNoHealthyBackend');
  });

  it('passes promtool check metrics on up’s endpoint and the PKI status file', async () => {
    const text = await (await fetch(metricsUrl)).text();
    for (const input of [text, readFileSync(join(work.path, 'meshplane_pki.prom'), 'utf8')]) {
      const check = spawnSync('promtool', ['check', 'metrics'], { input, encoding: 'utf8' });
      expect({ status: check.status, complaints: `${check.stdout}${check.stderr}` }).toEqual({ status: 0, complaints: '' });
    }
  });
});
