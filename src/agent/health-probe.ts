/**
 * The agent's half of a health check: the gateway asks over the tunnel
 * (a GET stream carrying the endpoint name), the agent asks its local
 * backend the same over HTTP/1.1 with Host `iconia-healthcheck`, and hands
 * back the status, the `X-Iconia-Load` header and the start of the body.
 *
 * The check takes the path real clients take: a PROXY header first when the
 * endpoint uses one (LOCAL / UNKNOWN: "this connection is the proxy's own"),
 * and TLS when the endpoint passes TLS through, so a backend that insists
 * on either still answers.
 */
import { request as httpRequest } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { HEALTH_BODY_MAX_BYTES, HEALTH_HOST, LOAD_HEADER } from '../lib/tunnel-io.js';
import { proxyHeader } from './proxy-protocol.js';
import type { ProxyVersion } from './proxy-protocol.js';

interface ProbeOptions {
  readonly address: string;
  readonly port: number;
  readonly path: string;
  readonly proxy: ProxyVersion | 'none';
  readonly tls: boolean;
  readonly timeoutMs: number;
}

interface ProbeResult {
  /** HTTP status, or 502 when the backend could not be asked at all. */
  readonly status: number;
  readonly load: string | null;
  readonly body: string;
}

export function probeBackend(options: ProbeOptions): { result: Promise<ProbeResult>; cancel(): void } {
  let cancel = (): void => undefined;
  const result = new Promise<ProbeResult>((resolve) => {
    const fail = (message: string): void => resolve({ status: 502, load: null, body: `cannot ask the local backend ${options.address}:${options.port}: ${message}` });
    const request = httpRequest({
      method: 'GET',
      path: options.path,
      headers: { host: HEALTH_HOST, 'user-agent': 'meshplane-health', connection: 'close' },
      // No agent: each check is its own connection, opened here (PROXY header, TLS).
      createConnection: () => openConnection(options),
    });
    const timer = setTimeout(() => request.destroy(new Error(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    cancel = () => request.destroy(new Error('cancelled'));
    request.on('error', (err) => {
      clearTimeout(timer);
      fail(err.message);
    });
    request.on('response', (response: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        if (size < HEALTH_BODY_MAX_BYTES) chunks.push(chunk.subarray(0, HEALTH_BODY_MAX_BYTES - size));
        size += chunk.length;
        // Enough to explain a failure; a huge health page is not read to its end.
        if (size >= HEALTH_BODY_MAX_BYTES) response.destroy();
      });
      const done = (): void => {
        clearTimeout(timer);
        const load = response.headers[LOAD_HEADER];
        resolve({ status: response.statusCode ?? 0, load: typeof load === 'string' ? load : null, body: Buffer.concat(chunks).toString('utf8') });
      };
      response.on('end', done);
      response.on('close', done);
      response.on('error', () => undefined);
    });
    request.end();
  });
  return { result, cancel: () => cancel() };
}

function openConnection(options: ProbeOptions): Socket {
  const raw = netConnect({ host: options.address, port: options.port, noDelay: true });
  if (options.proxy !== 'none') raw.write(proxyHeader(options.proxy, null));
  if (!options.tls) return raw;
  // Liveness, not identity: the backend's certificate is whatever it shows clients
  // (often a public CA's), and this connection never leaves the host.
  return tlsConnect({ socket: raw, servername: HEALTH_HOST, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
}
