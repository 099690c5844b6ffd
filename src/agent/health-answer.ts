/**
 * Answers the gateway's health-check stream: probes the local backend the
 * way the endpoint's clients reach it and relays status, load and body.
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { HEADER, LOAD_HEADER } from '../lib/tunnel-io.js';
import { probeBackend } from './health-probe.js';
import type { ProxyVersion } from './proxy-protocol.js';

/** The gateway times checks out itself; this only bounds a check whose stream was never cancelled. */
const PROBE_CAP_MS = 60_000;

export function answerHealthCheck(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, backend: { readonly address: string; readonly port: number }, proxyProtocol: ReadonlyMap<string, ProxyVersion | 'none'>, answered: (status: number) => void = () => undefined): void {
  const endpoint = String(headers[HEADER.healthEndpoint]);
  const probe = probeBackend({
    address: backend.address,
    port: backend.port,
    path: String(headers[':path'] ?? '/health'),
    proxy: proxyProtocol.get(endpoint) ?? 'none',
    tls: headers[HEADER.healthTls] === '1',
    timeoutMs: PROBE_CAP_MS,
  });
  stream.once('close', () => probe.cancel());
  void probe.result.then((result) => {
    if (stream.destroyed) return;
    // An informational or nonsense status from the backend is not an answer to relay as-is.
    const status = result.status >= 200 && result.status <= 599 ? result.status : 502;
    const body = status === result.status ? result.body : `the local backend answered status ${result.status}`;
    answered(status);
    stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8', ...(result.load === null ? {} : { [LOAD_HEADER]: result.load }) });
    stream.end(body);
  });
}
