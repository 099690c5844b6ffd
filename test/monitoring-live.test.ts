/**
 * A real Prometheus scrapes a running `meshplane up` (built CLI, the example
 * inputs, its --metrics endpoint) and the PKI status metrics of one of its
 * hosts (served as node-exporter's textfile collector would), with
 * monitoring/alerts.yml loaded. Through Prometheus' HTTP API every
 * dashboard panel's query and every alert expression must return series.
 *
 * Faults: a broken edit of services.yml makes the DNS reload fail, so
 * MeshplaneDnsReloadFailing's full expression returns a series. The other
 * alerts' faults are not practical here (a certificate days from expiry, a
 * CRL about to lapse, a demo backend failing its check inside up's own
 * process, a storm of reconnects or hundreds of refusals a second): for
 * them the series the alert compares (its expression without the
 * threshold) must be there, which proves the names and labels match. The
 * rules' thresholds are covered by monitoring/alerts.test.yml.
 * Also: promtool check metrics passes on up's endpoint (DNS, gateway, agent
 * and process metrics) and on the PKI status file.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAsync } from './support/dns.js';
import { CLI, REPO_ROOT, tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const work = tempDir('meshplane-monitoring-live-');
const TCP_FRONT = 10090;
const curlResults: { line: string; status: number; stdout: string }[] = [];
const stopped: (() => void)[] = [];
let up: ChildProcess;
let upOut = '';
let prometheus: ChildProcess;
let promOut = '';
let promBase = '';
let metricsUrl = '';
let textfile: Server;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const response = await fetch(`${promBase}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await response.json()) as { status: string; error?: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? response.status}`);
  return body.data!.result;
}

const kill = (child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): void => {
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill(signal);
};

beforeAll(async () => {
  const services = join(work.path, 'services.yml');
  const inventory = join(work.path, 'hosts.yml');
  // The example, plus a tcp front: up must print a working command for that kind too.
  const example = readFileSync(join(REPO_ROOT, 'services.yml.example'), 'utf8');
  const connect = '      mode: connect\n      proxy_protocol: v1\n';
  expect(example).toContain(connect);
  writeFileSync(services, example.replace(connect, `${connect}    - name: raw\n      port: ${TCP_FRONT}\n      mode: tcp\n`));
  copyFileSync(join(REPO_ROOT, 'hosts.yml.example'), inventory);
  const stateDir = join(work.path, 'state');
  up = spawn(process.execPath, [CLI, 'up', '--state-dir', stateDir, '-s', services, '-i', inventory, '--dns-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { cwd: work.path });
  stopped.push(() => kill(up));
  up.stdout!.on('data', (chunk: Buffer) => (upOut += chunk.toString()));
  up.stderr!.on('data', (chunk: Buffer) => (upOut += chunk.toString()));
  await waitFor(() => upOut.includes('Ctrl-C stops it'), { what: 'meshplane up serving', deadline: 60_000, explain: () => upOut });
  metricsUrl = /^ {2}curl -sS (http:\/\/\S+\/metrics)$/m.exec(upOut)![1]!;

  // The PKI status of a host, served the way node-exporter's textfile collector would.
  const pkiFile = join(work.path, 'meshplane_pki.prom');
  const status = spawnSync(process.execPath, [CLI, 'pki', 'status', '--credentials-root', join(stateDir, 'credentials', 'host1'), '--metrics-file', pkiFile], { encoding: 'utf8' });
  expect(status.status, `${status.stdout}${status.stderr}`).toBe(0);
  textfile = createServer((_request, response) => response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(readFileSync(pkiFile)));
  await new Promise<void>((resolve) => textfile.listen(0, '127.0.0.1', resolve));
  stopped.push(() => textfile.close());

  const port = await freePort();
  promBase = `http://127.0.0.1:${port}`;
  const config = join(work.path, 'prometheus.yml');
  writeFileSync(
    config,
    `global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [${JSON.stringify(join(REPO_ROOT, 'monitoring', 'alerts.yml'))}]
scrape_configs:
  - job_name: up
    static_configs: [{targets: [${JSON.stringify(new URL(metricsUrl).host)}]}]
  - job_name: pki
    static_configs: [{targets: ["127.0.0.1:${(textfile.address() as AddressInfo).port}"]}]
`,
  );
  prometheus = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${join(work.path, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`], { cwd: work.path });
  stopped.push(() => kill(prometheus));
  prometheus.stdout!.on('data', (chunk: Buffer) => (promOut += chunk.toString()));
  prometheus.stderr!.on('data', (chunk: Buffer) => (promOut += chunk.toString()));
  await waitFor(async () => (await fetch(`${promBase}/-/ready`)).ok, { what: 'Prometheus ready', explain: () => promOut });

  // Traffic: DNS queries, a request through every front, a refused one; then a broken edit (a failed reload).
  for (const line of upOut.match(/^ {2}dig .*$/gm) ?? []) await runAsync('sh', ['-c', line.replace(/#.*$/, '')]);
  for (const line of upOut.match(/^ {2}curl .*$/gm) ?? []) curlResults.push({ line, ...(await runAsync('sh', ['-c', `${line} -sS --fail --max-time 10`])) });
  const front = /--resolve \S+:(\d+):(\S+) http:/.exec(upOut)!;
  await runAsync('curl', ['-sS', '--max-time', '10', '-o', '/dev/null', '-H', 'Host: nowhere.example', `http://${front[2]}:${front[1]}/`]);
  // Prometheus must have seen the counter at 0 first: increase() needs the step.
  await waitFor(async () => (await query('meshplane_dns_reloads_total{result="failure"} == 0')).length > 0, { what: 'the failure counter scraped at 0', explain: () => promOut });
  writeFileSync(services, `${readFileSync(services, 'utf8')}\nbroken: [\n`);
  await waitFor(() => upOut.includes('edit rejected'), { what: 'the broken edit rejected', explain: () => upOut });
}, 90_000);

afterAll(() => {
  for (const stop of stopped.reverse()) stop();
  work.remove();
});

/** Every panel's query, and every alert's expression or the series it compares (see the header). */
function queries(): { what: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'monitoring', 'grafana-dashboard.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
  const panels = dashboard.panels.flatMap((p) => p.targets.map((t, i) => ({ what: `panel "${p.title}" #${i}`, expr: t.expr })));
  const alerts = [
    { what: 'MeshplaneCertificateExpiringSoon (without < 7d)', expr: 'meshplane_pki_certificate_expiry_timestamp_seconds - time()' },
    { what: 'MeshplaneCRLExpiringSoon (both sides, without <)', expr: 'meshplane_pki_crl_next_update_timestamp_seconds - time() and (meshplane_pki_crl_next_update_timestamp_seconds - meshplane_pki_crl_this_update_timestamp_seconds) / 4' },
    { what: 'MeshplaneBackendDown (without == 0)', expr: 'meshplane_gateway_backend_healthy' },
    { what: 'MeshplaneNoHealthyBackend (without == 0)', expr: 'sum by (job, service, endpoint) (meshplane_gateway_backend_healthy) or on (job, service) (meshplane_gateway_backends_serving)' },
    { what: 'MeshplaneDnsReloadFailing (in full)', expr: 'increase(meshplane_dns_reloads_total{result="failure"}[15m]) > 0' },
    { what: 'MeshplaneAgentReconnectStorm (without > 10)', expr: 'sum by (job, instance, gateway) (increase(meshplane_agent_reconnects_total[10m]))' },
    { what: 'MeshplaneRefusalSpike (without > 1)', expr: 'sum by (job, instance) (rate(meshplane_gateway_connections_total{result!="routed"}[5m]) or rate(meshplane_gateway_connections_limited_total[5m]))' },
  ];
  // The alerts' texts in this table must stay those of alerts.yml.
  const rules = readFileSync(join(REPO_ROOT, 'monitoring', 'alerts.yml'), 'utf8');
  for (const alert of alerts) expect(rules).toContain(`alert: ${alert.what.split(' ')[0]!}`);
  return [...panels, ...alerts];
}

describe('a real Prometheus scraping meshplane up', () => {
  it('ran every printed curl line with success, the tcp front\'s among them', () => {
    expect(curlResults.some((r) => r.line.includes(`:${TCP_FRONT}/`))).toBe(true);
    for (const r of curlResults) expect({ line: r.line, status: r.status }).toEqual({ line: r.line, status: 0 });
    const tcp = curlResults.find((r) => r.line.includes(`:${TCP_FRONT}/`))!;
    expect(tcp.stdout).toMatch(/^hello from web on \S+: you are 127\.0\.0\.1:\d+ \(PROXY none\)/);
  });

  it('gets series for every dashboard query and every alert expression', async () => {
    const missing = await waitFor(
      async () => {
        const empty: string[] = [];
        for (const q of queries()) if ((await query(q.expr)).length === 0) empty.push(`${q.what}: ${q.expr}`);
        return empty.length === 0 ? [] : false;
      },
      {
        what: 'every query returning series',
        deadline: 30_000,
        interval: 1000,
        explain: async () => {
          const empty: string[] = [];
          for (const q of queries()) if ((await query(q.expr).catch(() => [])).length === 0) empty.push(`${q.what}: ${q.expr}`);
          return `empty:\n${empty.join('\n')}`;
        },
      },
    );
    expect(missing).toEqual([]);
    const targets = (await (await fetch(`${promBase}/api/v1/targets`)).json()) as { data: { activeTargets: { health: string; lastError: string }[] } };
    expect(targets.data.activeTargets.map((t) => [t.health, t.lastError])).toEqual([['up', ''], ['up', '']]);
  }, 60_000);

  it('passes promtool check metrics on up’s endpoint and the PKI status file', async () => {
    const text = await (await fetch(metricsUrl)).text();
    for (const input of [text, readFileSync(join(work.path, 'meshplane_pki.prom'), 'utf8')]) {
      const check = spawnSync('promtool', ['check', 'metrics'], { input, encoding: 'utf8' });
      expect({ status: check.status, complaints: `${check.stdout}${check.stderr}` }).toEqual({ status: 0, complaints: '' });
    }
  });
});
