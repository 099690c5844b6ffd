/**
 * Backend selection and health state, without sockets: the eligibility
 * rules (health, ejection, max_connections), each balance policy, rise/fall,
 * and outlier ejection whose length grows with repeats (see
 * support/fake-backend.ts for the backends).
 */
import { describe, expect, it } from 'vitest';
import { BackendRegistry, Balancer, nextHealth, rendezvousWeight } from '../src/gateway/testing.js';
import type { Backend, PickResult, Route } from '../src/gateway/testing.js';
import type { TopologyGatewayEndpoint } from '../src/topology/index.js';
import { fakeBackend } from './support/fake-backend.js';

function endpoint(overrides: Partial<TopologyGatewayEndpoint> = {}): TopologyGatewayEndpoint {
  return {
    name: 'web',
    hostnames: ['web.example.test'],
    port: 80,
    mode: 'http',
    proxy_protocol: 'none',
    balance: 'least_load',
    max_connections: null,
    health: { enabled: true, path: '/health', interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 3 },
    outlier: { enabled: true, consecutive_errors: 3, ejection_ms: 1000 },
    ...overrides,
  };
}

const backend = (id: string, options: Parameters<typeof fakeBackend>[1] = {}): Backend => fakeBackend(id, options);

function setup(backends: Backend[], now = { t: 1_000_000 }): { balancer: Balancer; registry: BackendRegistry; ejected: string[]; now: { t: number } } {
  const registry = new BackendRegistry();
  for (const b of backends) registry.add(b);
  const ejected: string[] = [];
  // A seeded generator: the same picks every run.
  let seed = 42;
  const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const balancer = new Balancer(registry, { ejected: (b, forMs) => ejected.push(`${b.id}:${forMs}`) }, random, () => now.t);
  return { balancer, registry, ejected, now };
}

const picked = (result: PickResult): string => ('backend' in result ? result.backend.id : `refused:${result.refusal}`);

function tally(balancer: Balancer, route: Route, n: number, client = '127.0.0.1'): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const id = picked(balancer.pick(route, client));
    counts[id] = (counts[id] ?? 0) + 1;
  }
  return counts;
}

describe('eligibility', () => {
  it('never picks an unhealthy or not yet checked backend, and says why when none is left', () => {
    const { balancer } = setup([backend('a', { health: 'unhealthy' }), backend('b', { health: 'unknown' }), backend('c')]);
    const route = { service: 'web', servicePorts: [], endpoint: endpoint() };
    expect(tally(balancer, route, 200)).toEqual({ c: 200 });
    const none = setup([backend('a', { health: 'unhealthy' })]).balancer.pick(route, '127.0.0.1');
    expect(none).toMatchObject({ refusal: 'no_healthy_backend' });
    expect(setup([]).balancer.pick(route, '127.0.0.1')).toMatchObject({ refusal: 'no_backend' });
  });

  it('ignores health state when the endpoint has checks off', () => {
    const { balancer } = setup([backend('a', { health: 'unknown' })]);
    expect(picked(balancer.pick({ service: 'web', servicePorts: [], endpoint: endpoint({ health: { ...endpoint().health, enabled: false } }) }, '127.0.0.1'))).toBe('a');
  });

  it('skips backends at max_connections and refuses when all are full', () => {
    const { balancer } = setup([backend('a', { open: 2 }), backend('b', { open: 1 })]);
    const route = { service: 'web', servicePorts: [], endpoint: endpoint({ max_connections: 2 }) };
    expect(tally(balancer, route, 50)).toEqual({ b: 50 });
    const full = setup([backend('a', { open: 2 })]).balancer.pick(route, '127.0.0.1');
    expect(full).toMatchObject({ refusal: 'backends_full' });
  });
});

describe('balance policies', () => {
  it('least_load: power of two choices sends most to the least loaded and none to the most loaded', () => {
    const { balancer } = setup([backend('low', { load: 1 }), backend('mid', { load: 5 }), backend('high', { load: 20 })]);
    const counts = tally(balancer, { service: 'web', servicePorts: [], endpoint: endpoint() }, 3000);
    // Of three, the lowest wins every pair it is in (2/3); the highest never wins.
    expect(counts['low']! / 3000).toBeGreaterThan(0.6);
    expect(counts['mid']! / 3000).toBeGreaterThan(0.25);
    expect(counts['high'] ?? 0).toBe(0);
  });

  it('least_load counts open connections too: an idle backend beats a busy one that reports the same load', () => {
    const { balancer } = setup([backend('busy', { load: 1, open: 50 }), backend('idle', { load: 1, open: 0 })]);
    expect(tally(balancer, { service: 'web', servicePorts: [], endpoint: endpoint() }, 100)).toEqual({ idle: 100 });
  });

  it('round_robin takes each backend in turn', () => {
    const { balancer } = setup([backend('a'), backend('b'), backend('c')]);
    const route = { service: 'web', servicePorts: [], endpoint: endpoint({ balance: 'round_robin' }) };
    expect(Array.from({ length: 6 }, () => picked(balancer.pick(route, '127.0.0.1')))).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('random reaches every backend', () => {
    const { balancer } = setup([backend('a'), backend('b'), backend('c')]);
    const counts = tally(balancer, { service: 'web', servicePorts: [], endpoint: endpoint({ balance: 'random' }) }, 600);
    for (const id of ['a', 'b', 'c']) expect(counts[id]).toBeGreaterThan(120);
  });

  it('client_affinity keeps each client on one backend; a backend leaving moves only its clients, one joining takes only those it wins', () => {
    const backends = ['a', 'b', 'c', 'd'].map((id) => backend(id));
    const { balancer, registry } = setup(backends);
    const route = { service: 'web', servicePorts: [], endpoint: endpoint({ balance: 'client_affinity' }) };
    const clients = Array.from({ length: 400 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
    const before = new Map(clients.map((c) => [c, picked(balancer.pick(route, c))]));
    for (const c of clients.slice(0, 50)) expect(picked(balancer.pick(route, c))).toBe(before.get(c));
    expect(new Set(before.values()).size).toBe(4);
    registry.remove('c');
    const moved = clients.filter((c) => picked(balancer.pick(route, c)) !== before.get(c));
    expect(moved.length).toBeGreaterThan(0);
    expect(moved.every((c) => before.get(c) === 'c')).toBe(true);
    // It comes back (a reconnect is a new connection id, same agent id): its clients return.
    registry.add({ ...backend('c2'), agentId: backends[2]!.agentId });
    expect(clients.filter((c) => picked(balancer.pick(route, c)) !== before.get(c)!.replace('c', 'c2'))).toEqual([]);
    // A new agent joins: only the clients it now wins move (about a fifth of them), all of them to it.
    const settled = new Map(clients.map((c) => [c, picked(balancer.pick(route, c))]));
    registry.add(backend('e'));
    const joined = clients.filter((c) => picked(balancer.pick(route, c)) !== settled.get(c));
    expect(joined.length).toBeGreaterThan(40);
    expect(joined.length).toBeLessThan(140);
    expect(joined.every((c) => picked(balancer.pick(route, c)) === 'e')).toBe(true);
    // IPv4-mapped IPv6 is the same client.
    expect(picked(balancer.pick(route, '::ffff:10.0.0.7'))).toBe(picked(balancer.pick(route, '10.0.0.7')));
    // The weight depends on the agent, not the connection id.
    expect(rendezvousWeight('10.0.0.1', backends[2]!)).toBe(rendezvousWeight('10.0.0.1', { ...backend('x'), agentId: backends[2]!.agentId }));
  });
});

describe('outlier ejection', () => {
  it('ejects after consecutive failures for the base time, longer on a repeat, and forgives with time', () => {
    const a = backend('a');
    const { balancer, ejected, now } = setup([a, backend('b')]);
    const route = { service: 'web', servicePorts: [], endpoint: endpoint() };
    balancer.failed(a, route.endpoint);
    balancer.failed(a, route.endpoint);
    balancer.succeeded(a); // a success in between resets the count
    balancer.failed(a, route.endpoint);
    balancer.failed(a, route.endpoint);
    expect(ejected).toEqual([]);
    balancer.failed(a, route.endpoint);
    expect(ejected).toEqual(['a:1000']);
    expect(tally(balancer, route, 50)).toEqual({ b: 50 });
    now.t += 1001;
    expect(tally(balancer, route, 200)['a']).toBeGreaterThan(0);
    for (let i = 0; i < 3; i++) balancer.failed(a, route.endpoint);
    expect(ejected).toEqual(['a:1000', 'a:2000']);
    now.t += 1999;
    expect(tally(balancer, route, 20)).toEqual({ b: 20 });
    // Long good behaviour forgives the earlier ejections: back to the base time.
    now.t += 10_000;
    for (let i = 0; i < 3; i++) balancer.failed(a, route.endpoint);
    expect(ejected.at(-1)).toBe('a:1000');
  });

  it('never ejects the last healthy backends: with all of them ejected, they still serve', () => {
    const a = backend('a');
    const { balancer } = setup([a]);
    const route = { service: 'web', servicePorts: [], endpoint: endpoint() };
    for (let i = 0; i < 3; i++) balancer.failed(a, route.endpoint);
    expect(picked(balancer.pick(route, '127.0.0.1'))).toBe('a');
  });

  it('does nothing when the endpoint turns ejection off', () => {
    const a = backend('a');
    const { balancer, ejected } = setup([a, backend('b')]);
    const route = { service: 'web', servicePorts: [], endpoint: endpoint({ outlier: { enabled: false, consecutive_errors: 1, ejection_ms: 1000 } }) };
    for (let i = 0; i < 10; i++) balancer.failed(a, route.endpoint);
    expect(ejected).toEqual([]);
  });
});

describe('health state', () => {
  const start = { state: 'unknown' as const, streak: 0, reason: null, lastCheckAt: null, lastDurationMs: null };
  it('lets the first result decide, then needs `fall` failures or `rise` passes in a row to change', () => {
    expect(nextHealth(start, true, 2, 3)).toEqual({ state: 'healthy', streak: 0 });
    expect(nextHealth(start, false, 2, 3)).toEqual({ state: 'unhealthy', streak: 0 });
    let h = { ...start, state: 'healthy' as 'healthy' | 'unhealthy' | 'unknown' };
    const step = (ok: boolean): string => {
      const next = nextHealth(h, ok, 2, 3);
      h = { ...h, ...next };
      return next.state;
    };
    expect([step(false), step(false), step(true), step(false), step(false), step(false)]).toEqual(['healthy', 'healthy', 'healthy', 'healthy', 'healthy', 'unhealthy']);
    expect([step(true), step(false), step(true), step(true)]).toEqual(['unhealthy', 'unhealthy', 'unhealthy', 'healthy']);
  });
});
