/**
 * Registry entries for tests that exercise selection and the admin API
 * without sockets: the HTTP/2 session is a plain object saying "open" (or
 * recording that it was destroyed), which is all those parts look at.
 */
import type { ClientHttp2Session } from 'node:http2';
import { freshBackendState } from '../../src/gateway/testing.js';
import type { Backend, HealthState } from '../../src/gateway/testing.js';

export function fakeBackend(id: string, options: { service?: string; load?: number | null; open?: number; health?: HealthState; endpoint?: string } = {}): Backend & { destroyed(): boolean } {
  let destroyed = false;
  const session = {
    get closed() {
      return destroyed;
    },
    get destroyed() {
      return destroyed;
    },
    destroy() {
      destroyed = true;
    },
  } as unknown as ClientHttp2Session;
  const service = options.service ?? 'web';
  const b: Backend = { id, service, credential: service, certificateSerial: '1a', agentId: `host-${id}/${service}/0`, host: `host-${id}`, peer: '127.0.0.1:40000', connectedAt: new Date(Date.UTC(2026, 0, 1)), session, ...freshBackendState() };
  b.load = options.load ?? null;
  b.openStreams = options.open ?? 0;
  b.health.set(options.endpoint ?? 'web', { state: options.health ?? 'healthy', streak: 0, reason: null, lastCheckAt: null, lastDurationMs: null });
  return Object.assign(b, { destroyed: () => destroyed });
}
