/**
 * A minimal HTTP endpoint serving Prometheus metrics at /metrics and, when
 * given one, a JSON status at /status. The registry is asked for at every
 * scrape: a process whose components come and go (`meshplane up` restarts
 * its gateway) serves the current ones, merged.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';

export type RegistrySource = Registry | (() => readonly Registry[]);

function current(source: RegistrySource): Registry {
  if (source instanceof Registry) return source;
  const registries = source();
  return registries.length === 1 ? registries[0]! : Registry.merge([...registries]);
}

export async function serveMetrics(source: RegistrySource, host: string, port: number, status?: () => unknown): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (request.method === 'GET' && path === '/status' && status !== undefined) {
      let body: string;
      try {
        body = `${JSON.stringify(status(), null, 2)}\n`;
      } catch (err) {
        response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`);
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end(body);
      return;
    }
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: metrics are at /metrics${status === undefined ? '' : ', the status at /status'}\n`);
      return;
    }
    let registry: Registry;
    try {
      registry = current(source);
    } catch (err) {
      response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`);
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
