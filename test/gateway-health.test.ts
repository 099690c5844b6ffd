/**
 * Health checks through the tunnel, against a real HTTP/2 session standing
 * in for an agent (in-process, loopback): what the gateway asks (path,
 * Host iconia-healthcheck, the endpoint), what passes and what fails (other
 * statuses, a timeout, a broken tunnel) with the reason kept, the reported
 * load, each endpoint's own interval, and rise/fall before a state changes.
 */
import { connect as http2Connect, constants as http2Constants, createServer as http2CreateServer } from 'node:http2';
import type { ClientHttp2Session, Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkOnce, freshBackendState, HealthMonitor } from '../src/gateway/testing.js';
import type { Backend, HealthState } from '../src/gateway/testing.js';
import type { Topology, TopologyGatewayEndpoint } from '../src/topology/index.js';
import { sleep, waitFor } from './support/wait.js';

type Answer = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

let server: Http2Server;
let port: number;
/** How the stand-in agent answers, per endpoint name (x-meshplane-health). */
const answers = new Map<string, Answer>();
/** Every check request the stand-in agent saw. */
const seen: IncomingHttpHeaders[] = [];
const sessions: ClientHttp2Session[] = [];

const answer =
  (status: number, body = '', load?: string): Answer =>
  (stream) => {
    stream.respond({ ':status': status, ...(load === undefined ? {} : { 'x-iconia-load': load }) });
    stream.end(body);
  };

function endpoint(name: string, health: Partial<TopologyGatewayEndpoint['health']> = {}): TopologyGatewayEndpoint {
  return {
    name,
    hostnames: [`${name}.example.test`],
    port: 80,
    mode: 'http',
    proxy_protocol: 'none',
    balance: 'least_load',
    max_connections: null,
    health: { enabled: true, path: '/health', interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 2, ...health },
    outlier: { enabled: true, consecutive_errors: 3, ejection_ms: 1000 },
  };
}

async function tunnel(): Promise<Backend> {
  const session = http2Connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  sessions.push(session);
  await new Promise<void>((resolve) => session.once('connect', () => resolve()));
  return { id: 'abc123', service: 'web', credential: 'web', certificateSerial: '1a', agentId: 'b1/web/0', host: 'b1', peer: '127.0.0.1:40000', connectedAt: new Date(), session, ...freshBackendState() };
}

beforeAll(async () => {
  server = http2CreateServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    seen.push(headers);
    const respond = answers.get(String(headers['x-meshplane-health'])) ?? answer(404, 'no answer set');
    respond(stream, headers);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  port = (server.address() as AddressInfo).port;
});

afterEach(() => {
  answers.clear();
  seen.length = 0;
  for (const session of sessions.splice(0)) session.destroy();
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('one check through the tunnel', () => {
  it('asks GET <path> with Host iconia-healthcheck for the endpoint; 200 passes and X-Iconia-Load is the load', async () => {
    const backend = await tunnel();
    answers.set('web', answer(200, 'ok', '2.5'));
    const result = await checkOnce(backend, endpoint('web', { path: '/ready?deep=1' }));
    expect(result).toMatchObject({ ok: true, load: 2.5, reason: null });
    expect(result.durationMs).toBeGreaterThan(0);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ ':method': 'GET', ':path': '/ready?deep=1', ':authority': 'iconia-healthcheck', 'x-meshplane-health': 'web' });
    expect(seen[0]!['x-meshplane-health-tls']).toBeUndefined();
    // A tls endpoint's check goes to the backend over TLS, as its clients do.
    await checkOnce(backend, { ...endpoint('web'), mode: 'tls' });
    expect(seen[1]).toMatchObject({ ':path': '/health', 'x-meshplane-health-tls': '1' });
  });

  it('fails on any other status and keeps the body as the reason; a load that is not a number is no load', async () => {
    const backend = await tunnel();
    answers.set('web', answer(503, 'disk full\n', '7'));
    expect(await checkOnce(backend, endpoint('web'))).toMatchObject({ ok: false, reason: 'HTTP 503: disk full', load: 7 });
    answers.set('web', answer(204));
    expect(await checkOnce(backend, endpoint('web'))).toMatchObject({ ok: false, reason: 'HTTP 204' });
    answers.set('web', answer(200, 'ok', 'busy'));
    expect(await checkOnce(backend, endpoint('web'))).toMatchObject({ ok: true, load: null });
    answers.set('web', answer(200, 'ok', '-1'));
    expect(await checkOnce(backend, endpoint('web'))).toMatchObject({ ok: true, load: null });
  });

  it('fails when no answer comes within the timeout, and cancels the check stream', async () => {
    const backend = await tunnel();
    let cancelled: number | undefined;
    answers.set('web', (stream) => stream.on('close', () => (cancelled = stream.rstCode)));
    const result = await checkOnce(backend, endpoint('web', { timeout_ms: 120 }));
    expect(result).toMatchObject({ ok: false, reason: 'no answer within 120 ms', load: null });
    // The timeout's timer never fires early; it may fire late on a busy machine, so the
    // ceiling only rules out waiting for something else (the session lives on).
    expect(result.durationMs).toBeGreaterThanOrEqual(110);
    expect(result.durationMs).toBeLessThan(120 + 5000);
    await expect.poll(() => cancelled).toBe(http2Constants.NGHTTP2_CANCEL);
  });

  it('fails on a broken tunnel: a reset stream, or a session that is gone', async () => {
    const backend = await tunnel();
    answers.set('web', (stream) => stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR));
    const reset = await checkOnce(backend, endpoint('web'));
    expect(reset.ok).toBe(false);
    expect(reset.reason).toMatch(/^tunnel: /);
    backend.session.destroy();
    const gone = await checkOnce(backend, endpoint('web'));
    expect(gone.ok).toBe(false);
    expect(gone.reason).toMatch(/^tunnel: /);
  });
});

describe('the monitor', () => {
  function topologyWith(endpoints: TopologyGatewayEndpoint[]): Topology {
    return { services: { web: { gateway_endpoints: endpoints } } } as unknown as Topology;
  }

  it("checks each endpoint at its own interval and path, and checks none of an endpoint whose checks are off", async () => {
    const backend = await tunnel();
    for (const name of ['fast', 'slow', 'off']) answers.set(name, answer(200, 'ok'));
    const monitor = new HealthMonitor(topologyWith([endpoint('fast', { interval_ms: 50, timeout_ms: 40, path: '/fast' }), endpoint('slow', { interval_ms: 400, timeout_ms: 300, path: '/slow' }), endpoint('off', { enabled: false })]), { checked: () => undefined, changed: () => undefined });
    const count = (name: string): number => seen.filter((h) => h['x-meshplane-health'] === name).length;
    const added = performance.now();
    monitor.add(backend);
    // Long enough for the slow endpoint's third check (800 ms on a quiet machine; later on a busy one).
    await waitFor(() => count('slow') >= 3, { what: 'three checks of the slow endpoint' });
    monitor.close();
    const elapsed = performance.now() - added;
    const [fast, slow] = [count('fast'), count('slow')];
    // A check starts no sooner than its interval after the last one began (timers never fire
    // early, whatever the load): a ceiling from the configured intervals and the time that passed...
    expect(fast).toBeLessThanOrEqual(Math.floor(elapsed / 49) + 1);
    expect(slow).toBeLessThanOrEqual(Math.floor(elapsed / 399) + 1);
    // ...and each endpoint keeps its own: the 50 ms one is checked far more often than the
    // 400 ms one (8 times as often on a quiet machine).
    expect(fast).toBeGreaterThanOrEqual(2 * slow);
    expect(count('off')).toBe(0);
    expect(new Set(seen.map((h) => `${String(h['x-meshplane-health'])} ${String(h[':path'])}`))).toEqual(new Set(['fast /fast', 'slow /slow']));
    expect([...backend.health.keys()].sort()).toEqual(['fast', 'slow']);
    // Closed: no more checks, beyond one per endpoint that may still have been on its way.
    const after = seen.length;
    await sleep(4 * 400);
    expect(seen.length).toBeLessThanOrEqual(after + 2);
  });

  it('changes state only after `fall` failures or `rise` passes in a row, keeping the failing reason until healthy', async () => {
    // What led to a change: checks go on while the test looks (more of them on a busy machine).
    const upTo = (entries: string[], change: string): string[] => entries.slice(0, entries.indexOf(change) + 1);
    const backend = await tunnel();
    const log: string[] = [];
    // A timeout far above the interval (the stand-in always answers): a check that is merely
    // slow on a busy machine must not count as a failure and upset the sequences below.
    const monitor = new HealthMonitor(topologyWith([endpoint('web', { interval_ms: 40, timeout_ms: 10_000, rise: 3, fall: 2 })]), {
      checked: (_b, _e, result) => {
        log.push(result.ok ? 'pass' : 'fail');
      },
      changed: (_b, _e, from: HealthState, to: HealthState, reason) => log.push(`${from}->${to}${reason === null ? '' : ` (${reason})`}`),
    });
    const state = (): string | undefined => backend.health.get('web')?.state;
    answers.set('web', answer(200, 'ok', '4'));
    monitor.add(backend);
    expect(state()).toBe('unknown');
    await expect.poll(state).toBe('healthy');
    expect(backend.load).toBe(4);
    expect(log[0]).toBe('pass');
    expect(log[1]).toBe('unknown->healthy');

    log.length = 0;
    answers.set('web', answer(500, 'database down', '4'));
    await expect.poll(state).toBe('unhealthy');
    // Exactly two failures, then the change (a pass may still have been under way when the answer changed).
    expect(upTo(log, 'healthy->unhealthy (HTTP 500: database down)').filter((l) => l !== 'pass')).toEqual(['fail', 'fail', 'healthy->unhealthy (HTTP 500: database down)']);
    expect(backend.health.get('web')!.reason).toBe('HTTP 500: database down');

    log.length = 0;
    answers.set('web', answer(200, 'ok', '1'));
    await expect.poll(state).toBe('healthy');
    expect(upTo(log, 'unhealthy->healthy').filter((l) => l !== 'fail')).toEqual(['pass', 'pass', 'pass', 'unhealthy->healthy']);
    expect(backend.health.get('web')!.reason).toBeNull();
    expect(backend.load).toBe(1);
    monitor.close();
  });

  it('stops checking a backend once it is removed', async () => {
    const backend = await tunnel();
    answers.set('web', answer(200, 'ok'));
    const monitor = new HealthMonitor(topologyWith([endpoint('web', { interval_ms: 30, timeout_ms: 20 })]), { checked: () => undefined, changed: () => undefined });
    monitor.add(backend);
    await expect.poll(() => seen.length).toBeGreaterThanOrEqual(2);
    monitor.remove(backend);
    // At most the check already on its way arrives; none starts after, over ten intervals.
    const count = seen.length;
    await sleep(10 * 30);
    expect(seen.length).toBeLessThanOrEqual(count + 1);
    monitor.close();
  });
});
