/**
 * The fronts as clients and backends really meet them, beyond the happy
 * paths of gateway-e2e: a large ClientHello cut into many TLS records and
 * TCP segments, the caps and timeouts of the SNI and Host peeks, bytes sent
 * together with CONNECT, SNI from an IPv6 client, a backend that half-closes
 * first, and a backend that stops reading (backpressure). Gateway and agents
 * run in process (a short peek timeout, metrics read from its registry);
 * haproxy is the backend that requires PROXY protocol.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent/index.js';
import { readClientHello } from '../src/gateway/testing.js';
import { runAsync } from './support/dns.js';
import { AUDIT_PORTS as P, auditAgent, prepareAuditMesh, series, startAuditGateway, startAuditHaproxy, waitUntil } from './support/gateway-audit.js';
import type { AuditGateway, AuditMesh } from './support/gateway-audit.js';
import { tempDir } from './support/run.js';

// Short enough for the timeout tests, long enough that the slow senders below (a hello in 20
// packets 15 ms apart, a head a byte every 2 ms: a tenth of it on a quiet machine) finish in
// time on a busy one, and that "closed at once" stays far from "closed at the timeout".
const PEEK_TIMEOUT_MS = 3000;
const work = tempDir('gateway-fronts');
let mesh: AuditMesh;
let haproxy: ReturnType<typeof startAuditHaproxy>;
let gw: AuditGateway;
const agents: Agent[] = [];
let pipeBackend: Server;
/** What the pipe backend does with its next connection (set by each test). */
let onPipe: (socket: Socket, head: Buffer) => void = (socket) => socket.destroy();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  mesh = await prepareAuditMesh(work.path);
  haproxy = startAuditHaproxy(work.path, mesh);
  // The pipe backend hands each connection to the test once the routed request head has arrived.
  pipeBackend = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const rest = head.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      onPipe(socket, head.subarray(0, end + 4));
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => pipeBackend.listen(P.pipeBackend, '127.0.0.1', resolve));
  gw = await startAuditGateway(mesh, { peekTimeoutMs: PEEK_TIMEOUT_MS });
  for (const service of ['site', 'app', 'pipe']) {
    // haproxy's agents keep backend connections ready (--backend-pool): the PROXY headers below are
    // written on pooled connections (the e2e suite covers the default, connect per stream).
    const agent = auditAgent(mesh, service, { gateways: [{ address: '127.0.0.1', port: gw.gateway.port }], backendPool: service === 'pipe' ? 0 : 2 });
    agent.start();
    agents.push(agent);
  }
  await waitUntil(() => gw.gateway.backends.size === 3, 'three agents registered');
  // haproxy is up once it answers through the tunnel.
  await waitUntil(async () => (await runAsync('curl', ['-s', '--max-time', '2', '--resolve', `app.audit.test:${P.http}:127.0.0.1`, `http://app.audit.test:${P.http}/`])).stdout.includes('app client='), 'haproxy answering');
}, 60_000);

afterAll(async () => {
  for (const agent of agents) agent.close();
  gw?.gateway.close();
  pipeBackend?.close();
  haproxy?.kill();
  await sleep(50);
  work.remove();
});

const siteCa = (): Buffer => readFileSync(join(mesh.root('b1'), 'x509', 'site', 'ca.pem'));

/** Counter of front results for a port, from the gateway's own metrics. */
async function results(port: number, result: string): Promise<number> {
  return series(await gw.metrics(), 'meshplane_gateway_connections_total', `port="${port}",result="${result}"`);
}

/** Everything a socket receives until it closes, and when it closed. */
function collect(socket: Socket): Promise<{ text: string; closedAfterMs: number }> {
  const started = Date.now();
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  return new Promise((resolve) => socket.on('close', () => resolve({ text, closedAfterMs: Date.now() - started })));
}

/**
 * A socket for tls.connect that re-frames the client's first flight (the
 * ClientHello) into TLS records of `recordSize` bytes and sends those in
 * TCP writes of `segmentSize` bytes, `delayMs` apart: one hello arriving in
 * many records and many packets, as large post-quantum hellos do.
 */
function splittingSocket(port: number, recordSize: number, segmentSize: number, delayMs: number): { socket: Duplex; hello: Promise<Buffer> } {
  const raw = connect({ host: '127.0.0.1', port, noDelay: true });
  const opened = new Promise((resolve) => raw.once('connect', resolve));
  let first = true;
  let gotHello!: (b: Buffer) => void;
  const hello = new Promise<Buffer>((resolve) => (gotHello = resolve));
  const socket = new Duplex({
    read: () => void raw.resume(),
    write: (chunk: Buffer, _encoding, callback) => {
      if (!first) {
        raw.write(chunk, (err) => callback(err ?? null));
        return;
      }
      first = false;
      // The payload of every handshake record in the first flight, framed again.
      const payload: Buffer[] = [];
      for (let at = 0; at < chunk.length; ) {
        expect(chunk[at]).toBe(22);
        const length = chunk.readUInt16BE(at + 3);
        payload.push(chunk.subarray(at + 5, at + 5 + length));
        at += 5 + length;
      }
      const body = Buffer.concat(payload);
      const records: Buffer[] = [];
      for (let at = 0; at < body.length; at += recordSize) {
        const part = body.subarray(at, at + recordSize);
        records.push(Buffer.from([22, 3, 1, part.length >> 8, part.length & 0xff]), part);
      }
      const wire = Buffer.concat(records);
      gotHello(wire);
      void (async () => {
        await opened;
        for (let at = 0; at < wire.length; at += segmentSize) {
          raw.write(wire.subarray(at, at + segmentSize));
          await sleep(delayMs);
        }
        callback();
      })();
    },
    final: (callback) => {
      raw.end();
      callback();
    },
    destroy: (error, callback) => {
      raw.destroy();
      callback(error);
    },
  });
  raw.on('data', (chunk: Buffer) => {
    if (!socket.push(chunk)) raw.pause();
  });
  raw.on('end', () => socket.push(null));
  raw.on('error', (err) => socket.destroy(err));
  return { socket, hello };
}

describe('TLS passthrough by SNI', () => {
  it('reads SNI from a 6 KB ClientHello cut into 40 records and sent in 20 packets, and the handshake completes end to end', async () => {
    // 24 ALPN names of 250 bytes make the hello as large as a post-quantum one.
    const alpn = Array.from({ length: 24 }, (_, i) => `${String(i).padStart(2, '0')}${'x'.repeat(248)}`);
    const { socket, hello } = splittingSocket(P.tls, 160, 333, 15);
    const tls = tlsConnect({ socket, servername: 'site.audit.test', ca: siteCa(), ALPNProtocols: alpn });
    const reply = new Promise<string>((resolve, reject) => {
      let text = '';
      tls.on('data', (chunk: Buffer) => (text += chunk.toString()));
      tls.on('end', () => resolve(text));
      tls.on('error', reject);
    });
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', resolve);
      tls.once('error', reject);
    });
    tls.end('GET /split HTTP/1.1\r\nHost: site.audit.test\r\nConnection: close\r\n\r\n');
    const wire = await hello;
    // It really was large and cut up, and still a well-formed hello naming the site.
    expect(wire.length).toBeGreaterThan(6000);
    expect(Math.ceil(wire.length / 333)).toBeGreaterThanOrEqual(18);
    expect(readClientHello(wire)).toEqual({ kind: 'hello', serverName: 'site.audit.test', version: 0x0303 });
    // haproxy terminated TLS behind the tunnel and learnt the client from the PROXY v2 header.
    expect(await reply).toMatch(/site client=127\.0\.0\.1 port=\d+/);
  });

  it('routes an IPv6 client by SNI, and the backend sees ::1 through PROXY v2', async () => {
    const ca = join(mesh.root('b1'), 'x509', 'site', 'ca.pem');
    const result = await runAsync('curl', ['-sS', '--max-time', '10', '-g', '--cacert', ca, '--resolve', `site.audit.test:${P.tls}:[::1]`, `https://site.audit.test:${P.tls}/six`]);
    expect(result.stdout, result.stderr).toMatch(/^site client=::1 port=\d+$/m);
  });

  it('answers an unknown SNI with a fatal unrecognized_name alert that openssl and curl report, counted as no_route', async () => {
    const before = await results(P.tls, 'no_route');
    const ssl = await runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${P.tls}`, '-servername', 'unknown.example'], 10_000);
    expect(ssl.stdout + ssl.stderr).toMatch(/tlsv1 unrecognized name/);
    expect(ssl.stdout + ssl.stderr).toMatch(/alert number 112/);
    const curl = await runAsync('curl', ['-sS', '--max-time', '10', '--resolve', `unknown.example:${P.tls}:127.0.0.1`, `https://unknown.example:${P.tls}/`]);
    expect(curl.status).toBe(35);
    expect(curl.stderr).toMatch(/unrecognized name/);
    expect(await results(P.tls, 'no_route')).toBe(before + 2);
  });

  it('closes a hello over the 16 KiB cap at once, counted as bad_hello', async () => {
    const before = await results(P.tls, 'bad_hello');
    const socket = connect(P.tls, '127.0.0.1');
    const closed = collect(socket);
    // A handshake record announcing a 20 KiB ClientHello.
    socket.write(Buffer.from([22, 3, 1, 0x40, 0x00, 1, 0x00, 0x50, 0x00, 3, 3]));
    const { text, closedAfterMs } = await closed;
    expect(text).toBe('');
    expect(closedAfterMs).toBeLessThan(PEEK_TIMEOUT_MS);
    expect(await results(P.tls, 'bad_hello')).toBe(before + 1);
  });

  it('times out a hello that never completes, counted as timeout', async () => {
    const before = await results(P.tls, 'timeout');
    const socket = connect(P.tls, '127.0.0.1');
    const closed = collect(socket);
    // The first 9 bytes of a 300-byte hello, and then nothing.
    socket.write(Buffer.from([22, 3, 1, 0x01, 0x30, 1, 0x00, 0x01, 0x2c]));
    const { text, closedAfterMs } = await closed;
    expect(text).toBe('');
    // Not before the timeout (its timer never fires early), then as soon as a busy machine lets it.
    expect(closedAfterMs).toBeGreaterThanOrEqual(PEEK_TIMEOUT_MS - 50);
    expect(closedAfterMs).toBeLessThan(PEEK_TIMEOUT_MS + 10_000);
    expect(await results(P.tls, 'timeout')).toBe(before + 1);
  });
});

describe('plain HTTP by Host', () => {
  it('answers 400 to a request head over 16 KiB, counted as bad_request', async () => {
    const before = await results(P.http, 'bad_request');
    const socket = connect(P.http, '127.0.0.1');
    const closed = collect(socket);
    socket.write(`GET / HTTP/1.1\r\nHost: app.audit.test\r\nX-Big: ${'a'.repeat(17 * 1024)}`);
    const { text } = await closed;
    expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(await results(P.http, 'bad_request')).toBe(before + 1);
  });

  it('times out a request head that never ends, counted as timeout', async () => {
    const before = await results(P.http, 'timeout');
    const socket = connect(P.http, '127.0.0.1');
    const closed = collect(socket);
    socket.write('GET / HTTP/1.1\r\nHost: app.audit.test\r\n');
    const { closedAfterMs } = await closed;
    // Not before the timeout (its timer never fires early), then as soon as a busy machine lets it.
    expect(closedAfterMs).toBeGreaterThanOrEqual(PEEK_TIMEOUT_MS - 50);
    expect(closedAfterMs).toBeLessThan(PEEK_TIMEOUT_MS + 10_000);
    expect(await results(P.http, 'timeout')).toBe(before + 1);
  });

  it('passes a head that arrives a byte at a time, and the backend sees the client port through PROXY v1', async () => {
    const socket = connect({ host: '127.0.0.1', port: P.http, noDelay: true });
    const closed = collect(socket);
    await new Promise((r) => socket.once('connect', r));
    const clientPort = socket.localPort;
    for (const byte of Buffer.from('GET /slow HTTP/1.1\r\nHost: app.audit.test\r\nConnection: close\r\n\r\n')) {
      socket.write(Buffer.from([byte]));
      await sleep(2);
    }
    const { text } = await closed;
    expect(text).toContain(`app client=127.0.0.1 port=${clientPort} path=/slow`);
  });
});

describe('HTTP CONNECT', () => {
  it('reaches the service port the CONNECT names, and refuses a port the service does not have', async () => {
    const second = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.end('second port\n');
    });
    await new Promise<void>((resolve) => second.listen(P.pipeSecondPort, '127.0.0.1', resolve));
    const ask = async (port: number): Promise<string> => {
      const socket = connect({ host: '127.0.0.1', port: P.connect });
      const closed = collect(socket);
      await new Promise((r) => socket.once('connect', r));
      socket.write(`CONNECT pipe.mesh.internal:${port} HTTP/1.1\r\nHost: pipe.mesh.internal:${port}\r\n\r\n`);
      return (await closed).text;
    };
    try {
      expect(await ask(P.pipeSecondPort)).toBe('HTTP/1.1 200 Connection established\r\n\r\nsecond port\n');
      const before = await results(P.connect, 'no_route');
      const refused = await ask(9);
      expect(refused).toMatch(/^HTTP\/1\.1 404 /);
      expect(refused).toContain(`pipe has no port 9 (its ports: ${P.pipeBackend}, ${P.pipeSecondPort})`);
      expect(await results(P.connect, 'no_route')).toBe(before + 1);
    } finally {
      second.close();
    }
  });


  it('answers 405 with how to use the port to a plain request and to a plain proxy request, counted as not_connect', async () => {
    const before = await results(P.connect, 'not_connect');
    const direct = await runAsync('curl', ['-sS', '-i', '--max-time', '10', `http://127.0.0.1:${P.connect}/`]);
    expect(direct.stdout).toMatch(/^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    expect(direct.stdout).toMatch(/^Allow: CONNECT\r$/m);
    expect(direct.stdout).toContain(`This port (${P.connect}) is an HTTP CONNECT proxy port: it expects CONNECT, not GET.`);
    expect(direct.stdout).toContain(`curl --proxytunnel -x http://127.0.0.1:${P.connect} https://SERVICE.DOMAIN:PORT/`);
    // curl -x without --proxytunnel sends "GET http://app.audit.test/": a proxy request, not a CONNECT.
    const proxied = await runAsync('curl', ['-sS', '-i', '--max-time', '10', '-x', `http://127.0.0.1:${P.connect}`, 'http://app.audit.test/']);
    expect(proxied.stdout).toMatch(/^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    expect(proxied.stdout).toContain('expects CONNECT, not GET');
    expect(await results(P.connect, 'not_connect')).toBe(before + 2);
    // With --proxytunnel the same proxy works.
    const tunnelled = await runAsync('curl', ['-sS', '--max-time', '10', '--proxytunnel', '-x', `http://127.0.0.1:${P.connect}`, `http://app.mesh.internal:${P.appBackend}/ok`]);
    expect(tunnelled.stdout, tunnelled.stderr).toContain('app client=127.0.0.1');
  });

  it('forwards the bytes that came in the same packet as the CONNECT head', async () => {
    const socket = connect({ host: '127.0.0.1', port: P.connect, noDelay: true });
    const closed = collect(socket);
    await new Promise((r) => socket.once('connect', r));
    const clientPort = socket.localPort;
    // One write: the CONNECT head and, right behind it, the first request of the tunnel.
    socket.write(`CONNECT app.mesh.internal:${P.appBackend} HTTP/1.1\r\nHost: app.mesh.internal:${P.appBackend}\r\n\r\nGET /early HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n`);
    const { text } = await closed;
    expect(text).toMatch(/^HTTP\/1\.1 200 Connection established\r\n\r\nHTTP\/1\.1 200/);
    expect(text).toContain(`app client=127.0.0.1 port=${clientPort} path=/early`);
  });
});

describe('half-close and backpressure through the tunnel', () => {
  const pattern = (size: number): Buffer => {
    const b = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4) b.writeUInt32BE(i, i);
    return b;
  };

  it('keeps the upload going after the backend has closed its side (FIN from the backend first)', async () => {
    const upload = pattern(8 * 1024 * 1024);
    const received = new Promise<{ bytes: number; sha: string }>((resolve) => {
      onPipe = (socket) => {
        socket.end('ready\n'); // the backend is done talking, and says so with a FIN
        const hash = createHash('sha256');
        let bytes = 0;
        socket.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          hash.update(chunk);
        });
        socket.on('end', () => resolve({ bytes, sha: hash.digest('hex') }));
        socket.resume();
      };
    });
    const socket = connect({ host: '127.0.0.1', port: P.http, allowHalfOpen: true });
    socket.on('error', () => undefined);
    let got = '';
    socket.on('data', (chunk: Buffer) => (got += chunk.toString()));
    socket.write('PIPE / HTTP/1.1\r\nHost: pipe.audit.test\r\n\r\n');
    await new Promise((r) => socket.once('end', r));
    expect(got).toBe('ready\n');
    // Only now, with the other direction closed, the client sends its data.
    socket.end(upload);
    const result = await received;
    expect(result).toEqual({ bytes: upload.length, sha: createHash('sha256').update(upload).digest('hex') });
    socket.destroy();
  });

  it('holds a fast client back while the backend does not read, and loses nothing when it reads again', async () => {
    let resumeBackend!: () => void;
    const received = new Promise<number>((resolve) => {
      onPipe = (socket) => {
        let bytes = 0;
        socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
        socket.on('end', () => {
          resolve(bytes);
          socket.end();
        });
        // Paused until the test says so: nothing is read meanwhile.
        resumeBackend = () => socket.resume();
      };
    });
    const socket = connect({ host: '127.0.0.1', port: P.http, allowHalfOpen: true });
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    socket.write('PIPE / HTTP/1.1\r\nHost: pipe.audit.test\r\n\r\n');
    const chunk = pattern(1024 * 1024);
    const LIMIT = 512 * 1024 * 1024;
    let written = 0;
    let stalled = false;
    while (written < LIMIT) {
      const more = socket.write(chunk);
      written += chunk.length;
      if (!more) {
        const drained = await Promise.race([new Promise<boolean>((r) => socket.once('drain', () => r(true))), sleep(1500).then(() => false)]);
        if (!drained) {
          stalled = true;
          break;
        }
      }
    }
    // Windows and socket buffers hold some; without backpressure the whole 512 MiB would be taken.
    expect(stalled).toBe(true);
    expect(written).toBeLessThan(128 * 1024 * 1024);
    resumeBackend();
    socket.end();
    expect(await received).toBe(written);
    socket.destroy();
  }, 60_000);
});
