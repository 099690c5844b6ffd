/**
 * The admin API through fastify.inject: who gets in (token from loopback
 * only; mutual TLS needs a certificate, so an injected request without one
 * is refused), what each route answers, and JSON errors with codes. The
 * same API over real mutual TLS with curl is in gateway-ops.test.ts.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { AdminServer } from '../src/gateway/index.js';
import { BackendRegistry, buildAdminApi } from '../src/gateway/testing.js';
import type { AdminTarget } from '../src/gateway/testing.js';
import { silentLogger } from './support/dns.js';
import { fakeBackend } from './support/fake-backend.js';

const TOKEN = 'test-token-0123456789abcdef';
const registry = new BackendRegistry();
const web1 = fakeBackend('0a1b2c3d4e5f', { load: 3, open: 2 });
const web2 = fakeBackend('aaaaaaaaaaaa', { health: 'unhealthy' });
web2.health.get('web')!.reason = 'HTTP 503: <b>disk full</b>';
const api1 = fakeBackend('bbbbbbbbbbbb', { service: 'api', endpoint: 'rpc' });
for (const b of [web1, web2, api1]) registry.add(b);
const killed: string[] = [];
const target: AdminTarget = {
  backends: () => registry.all(),
  backend: (id) => registry.get(id),
  kill: (id, why) => {
    const b = registry.get(id);
    if (b !== undefined) {
      registry.remove(id);
      b.session.destroy();
      killed.push(`${id}: ${why}`);
    }
    return b;
  },
  status: () => ({ backends: registry.size }),
};
const app = buildAdminApi(target, { auth: { kind: 'token', token: TOKEN }, logger: silentLogger });
const mtls = buildAdminApi(target, { auth: { kind: 'mtls', credentials: ['gateway-admin'] }, tls: {}, logger: silentLogger });
const auth = { authorization: `Bearer ${TOKEN}` };

afterAll(async () => {
  await app.close();
  await mtls.close();
});

describe('who gets in', () => {
  it('refuses callers without the token, or with a wrong one, with 401 and a code', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${TOKEN}` }]) {
      const response = await app.inject({ method: 'GET', url: '/backends', headers });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toMatchObject({ code: 'GW_ERR_ADMIN_UNAUTHENTICATED' });
    }
  });

  it('refuses the right token from a non-loopback address', async () => {
    const response = await app.inject({ method: 'GET', url: '/backends', headers: auth, remoteAddress: '198.18.7.1' });
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ code: 'GW_ERR_ADMIN_FORBIDDEN' });
    const kill = await app.inject({ method: 'DELETE', url: `/backends/${api1.id}`, headers: auth, remoteAddress: '198.18.7.1' });
    expect(kill.statusCode).toBe(403);
    expect(registry.get(api1.id)).toBeDefined();
  });

  it('protects every route, the status page, /healthz and unknown routes included', async () => {
    for (const url of ['/', '/healthz', '/backends', `/backends/${web1.id}`, '/nope', '/metrics']) {
      const response = await app.inject({ method: 'GET', url });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toMatchObject({ code: 'GW_ERR_ADMIN_UNAUTHENTICATED' });
    }
    expect((await app.inject({ method: 'DELETE', url: `/backends/${web1.id}` })).statusCode).toBe(401);
    expect(registry.get(web1.id)).toBeDefined();
    expect((await app.inject({ method: 'GET', url: '/healthz', headers: auth })).json()).toMatchObject({ status: 'ok', backends: 3 });
  });

  it('over mutual TLS, refuses a caller that shows no client certificate', async () => {
    const response = await mtls.inject({ method: 'GET', url: '/backends' });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ code: 'GW_ERR_ADMIN_UNAUTHENTICATED', message: expect.stringContaining('gateway-admin') as unknown });
  });
});

describe('setup', () => {
  it('refuses a token on a non-loopback address, and mutual TLS without certificates', async () => {
    const server = new AdminServer(target, { auth: { kind: 'token', token: TOKEN }, logger: silentLogger });
    await expect(server.start('0.0.0.0', 0)).rejects.toMatchObject({ code: 'GW_ERR_ADMIN_CONFIG' });
    await server.close();
    let thrown: unknown;
    try {
      buildAdminApi(target, { auth: { kind: 'mtls', credentials: ['gateway-admin'] }, logger: silentLogger });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: 'GW_ERR_ADMIN_CONFIG' });
  });
});

describe('routes', () => {
  it('lists backends, filtered by service', async () => {
    const all = (await app.inject({ method: 'GET', url: '/backends', headers: auth })).json<{ backends: { id: string }[] }>();
    expect(all.backends.map((b) => b.id)).toEqual([api1.id, web1.id, web2.id]);
    const web = (await app.inject({ method: 'GET', url: '/backends?service=web', headers: auth })).json<{ backends: { id: string }[] }>();
    expect(web.backends.map((b) => b.id)).toEqual([web1.id, web2.id]);
    const bad = await app.inject({ method: 'GET', url: '/backends?service=no%20such', headers: auth });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'GW_ERR_ADMIN_BAD_REQUEST' });
  });

  it('shows one backend with everything an operator asks about', async () => {
    web1.rttMs = 0.42;
    const response = await app.inject({ method: 'GET', url: `/backends/${web1.id}`, headers: auth });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      id: web1.id,
      service: 'web',
      credential: 'web',
      agent_id: web1.agentId,
      host: web1.host,
      agent_address: '127.0.0.1:40000',
      connected_since: '2026-01-01T00:00:00.000Z',
      health: 'healthy',
      checks: { web: { state: 'healthy', reason: null, last_check_at: null, duration_ms: null } },
      load: 3,
      open_connections: 2,
      rtt_ms: 0.42,
      ejected_until: null,
    });
    expect((await app.inject({ method: 'GET', url: `/backends/${web2.id}`, headers: auth })).json()).toMatchObject({ health: 'unhealthy', checks: { web: { reason: 'HTTP 503: <b>disk full</b>' } } });
  });

  it('answers 404 with a code for an unknown id and for an unknown route, 400 for a malformed id', async () => {
    const missing = await app.inject({ method: 'GET', url: '/backends/ffffffffffff', headers: auth });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ code: 'GW_ERR_BACKEND_NOT_FOUND' });
    const route = await app.inject({ method: 'GET', url: '/nope', headers: auth });
    expect(route.statusCode).toBe(404);
    expect(route.json()).toMatchObject({ code: 'GW_ERR_ADMIN_NOT_FOUND' });
    const malformed = await app.inject({ method: 'DELETE', url: '/backends/..%2F..', headers: auth });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json()).toMatchObject({ code: 'GW_ERR_ADMIN_BAD_REQUEST' });
  });

  it('kills a backend by id: its tunnel is closed and it is gone from the list', async () => {
    const response = await app.inject({ method: 'DELETE', url: `/backends/${web2.id}`, headers: auth });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ killed: { id: web2.id, service: 'web' } });
    expect(web2.destroyed()).toBe(true);
    expect(killed).toEqual([expect.stringMatching(new RegExp(`^${web2.id}: killed through the admin API by token`)) as unknown]);
    expect((await app.inject({ method: 'GET', url: `/backends/${web2.id}`, headers: auth })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: `/backends/${web2.id}`, headers: auth })).statusCode).toBe(404);
  });

  it('serves the status page with a script locked to its nonce', async () => {
    const response = await app.inject({ method: 'GET', url: `/?token=${TOKEN}` });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/html/);
    const nonce = /script-src 'nonce-([^']+)'/.exec(String(response.headers['content-security-policy']))?.[1];
    expect(nonce).toBeDefined();
    expect(response.body).toContain(`<script nonce="${nonce}">`);
    expect(response.body).not.toContain('innerHTML');
  });
});
