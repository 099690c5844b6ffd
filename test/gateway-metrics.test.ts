/**
 * The gateway's metrics without sockets: every name is meshplane_gateway_*
 * and listed in src/gateway/README.md (and every listed name exists), the
 * per-service totals (0 for a service left without backends), the
 * per-backend series, and their removal when a backend goes.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BackendRegistry, GatewayMetrics } from '../src/gateway/testing.js';
import { fakeBackend } from './support/fake-backend.js';

const README = readFileSync(fileURLToPath(new URL('../src/gateway/README.md', import.meta.url)), 'utf8');

function setup(services: string[] = []): { registry: Registry; backends: BackendRegistry; metrics: GatewayMetrics } {
  const registry = new Registry();
  const backends = new BackendRegistry();
  return { registry, backends, metrics: new GatewayMetrics(registry, backends, () => services) };
}

describe('gateway metrics', () => {
  it('are all named meshplane_gateway_* and listed in the gateway README, which lists no other', async () => {
    const { registry } = setup();
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name).sort();
    expect(names.length).toBeGreaterThanOrEqual(14);
    for (const name of names) expect(name).toMatch(/^meshplane_gateway_[a-z_]+$/);
    const section = README.slice(README.indexOf('## Metrics'));
    const listed = [...section.matchAll(/^\| `(meshplane_gateway_[a-z_]+)` \|/gm)].map((m) => m[1]!).sort();
    expect(listed).toEqual(names);
  });

  it('count connected and serving backends per service (0 for a service with none), and show each backend while it is there', async () => {
    const { registry, backends, metrics } = setup(['web', 'api']);
    const a = fakeBackend('aaaa', { load: 3, open: 2 });
    const b = fakeBackend('bbbb', { health: 'unhealthy' });
    a.rttMs = 1.5;
    backends.add(a);
    backends.add(b);
    metrics.firstByte(a, 0.01);
    metrics.healthChecked(a, 'web', { ok: true, durationMs: 4, load: 3, reason: null });
    metrics.healthChecked(b, 'web', { ok: false, durationMs: 150, load: null, reason: 'no answer within 150 ms' });
    metrics.connection(8080, 'routed');
    metrics.connection(8443, 'no_healthy_backend');
    metrics.authFailure('revoked');
    let text = await registry.metrics();
    expect(text).toContain('meshplane_gateway_backends{service="web"} 2\n');
    expect(text).toContain('meshplane_gateway_backends{service="api"} 0\n');
    expect(text).toContain('meshplane_gateway_backends_serving{service="web"} 1\n');
    expect(text).toContain('meshplane_gateway_backends_serving{service="api"} 0\n');
    expect(text).toContain('meshplane_gateway_backend_load{service="web",host="host-aaaa",slot="0"} 3\n');
    expect(text).not.toContain('meshplane_gateway_backend_load{service="web",host="host-bbbb",slot="0"}');
    expect(text).toContain('meshplane_gateway_backend_open_connections{service="web",host="host-aaaa",slot="0"} 2\n');
    expect(text).toContain('meshplane_gateway_backend_rtt_seconds{service="web",host="host-aaaa",slot="0"} 0.0015\n');
    expect(text).toContain('meshplane_gateway_backend_healthy{service="web",host="host-bbbb",slot="0",endpoint="web"} 0\n');
    expect(text).toContain('meshplane_gateway_backend_first_byte_seconds_count{service="web",host="host-aaaa",slot="0"} 1\n');
    expect(text).toContain('meshplane_gateway_health_check_duration_seconds_sum{service="web",host="host-bbbb",slot="0",endpoint="web"} 0.15\n');
    expect(text).toContain('meshplane_gateway_health_checks_total{service="web",host="host-bbbb",slot="0",endpoint="web",result="fail"} 1\n');
    expect(text).toContain('meshplane_gateway_connections_total{port="8080",result="routed"} 1\n');
    expect(text).toContain('meshplane_gateway_connections_total{port="8443",result="no_healthy_backend"} 1\n');
    expect(text).toContain('meshplane_gateway_auth_failures_total{reason="revoked"} 1\n');

    // Both go (killed, disconnected): their series with them, the service at 0.
    for (const backend of [a, b]) {
      backends.remove(backend.id);
      metrics.killed(backend);
      metrics.forget(backend);
    }
    text = await registry.metrics();
    expect(text).not.toMatch(/host="host-(aaaa|bbbb)"/);
    expect(text).toContain('meshplane_gateway_backends{service="web"} 0\n');
    expect(text).toContain('meshplane_gateway_kills_total{service="web"} 2\n');
  });

  it('label a backend by host and slot, so a reconnect (new connection id) keeps its series', async () => {
    const { registry, backends, metrics } = setup(['web']);
    const first = fakeBackend('conn1');
    const again = Object.assign(fakeBackend('conn2'), { agentId: first.agentId, host: first.host });
    backends.add(first);
    metrics.firstByte(first, 0.01);
    // The agent reconnects: the new connection replaces the old, then the old one is forgotten.
    backends.add(again);
    metrics.forget(first);
    metrics.firstByte(again, 0.02);
    const text = await registry.metrics();
    expect(text).toContain('meshplane_gateway_backend_first_byte_seconds_count{service="web",host="host-conn1",slot="0"} 2\n');
    expect(text).not.toContain('conn2');
    expect(text).not.toContain('backend=');
  });
});
