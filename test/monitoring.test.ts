/**
 * The monitoring folder: promtool accepts the alerting rules and their unit
 * tests pass (every alert fires on its fault), and the dashboard has a panel
 * with a query for every view the README promises.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './support/run.js';

const DIR = join(REPO_ROOT, 'monitoring');

function promtool(args: readonly string[]): { status: number | null; output: string } {
  const result = spawnSync('promtool', [...args], { cwd: DIR, encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('monitoring/', () => {
  it('has alerting rules promtool accepts, seven of them', () => {
    const check = promtool(['check', 'rules', 'alerts.yml']);
    expect(check.status, check.output).toBe(0);
    expect(check.output).toContain('SUCCESS: 7 rules found');
  });

  it('passes its rule unit tests, which exercise every alert', () => {
    const run = promtool(['test', 'rules', 'alerts.test.yml']);
    expect(run.status, run.output).toBe(0);
    const alerts = [...readFileSync(join(DIR, 'alerts.yml'), 'utf8').matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);
    const tests = readFileSync(join(DIR, 'alerts.test.yml'), 'utf8');
    // Each alert is expected to fire at least once (an alertname followed by a non-empty exp_alerts).
    for (const alert of alerts) expect(tests, alert).toMatch(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
  });

  it('has a dashboard panel with a query for each view', () => {
    const dashboard = JSON.parse(readFileSync(join(DIR, 'grafana-dashboard.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    const queries = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    for (const metric of [
      'meshplane_dns_queries_total',
      'meshplane_dns_reloads_total',
      'meshplane_gateway_connections_total',
      'meshplane_gateway_backends_serving',
      'meshplane_gateway_backend_healthy',
      'meshplane_gateway_backend_first_byte_seconds_bucket',
      'meshplane_agent_tunnels_up',
      'meshplane_agent_reconnects_total',
      'meshplane_pki_certificate_expiry_timestamp_seconds',
      'meshplane_gateway_connections_limited_total',
    ]) {
      expect(queries.some((q) => q.includes(metric)), metric).toBe(true);
    }
    for (const panel of dashboard.panels) expect(panel.targets.length, panel.title).toBeGreaterThan(0);
  });
});
