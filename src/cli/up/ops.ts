/**
 * What `up` shows an operator: one metrics endpoint (DNS's registry, the
 * current gateway's, and the process's) and the gateway's admin API and
 * status page. The admin API uses the token mode (plain HTTP on loopback,
 * the token in STATE_DIR/admin-token): `up` runs on a developer's machine,
 * and a token a curl line can read beats issuing an admin client
 * certificate the example inputs do not declare. The admin API asks for the
 * running gateway at every request, since `up` restarts it when its host or
 * ports change.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { AdminServer } from '../../gateway/index.js';
import type { Gateway } from '../../gateway/index.js';
import { writeFileAtomic } from '../../lib/atomic-write.js';
import { parseSocketAddress } from '../../lib/socket-address.js';
import { processMetrics, startMetrics } from '../daemon.js';

export const UP_METRICS_LISTEN = '127.0.0.1:19154';
export const UP_ADMIN_LISTEN = '127.0.0.1:19155';
const ADMIN_TOKEN_FILE = 'admin-token';

/** The admin token, kept across runs (a bookmarked status page still works); made on first use. */
export function adminToken(stateDir: string): { token: string; path: string } {
  const path = join(stateDir, ADMIN_TOKEN_FILE);
  try {
    const token = readFileSync(path, 'utf8').trim();
    if (token.length >= 16) return { token, path };
  } catch {
    // none yet: made below
  }
  const token = randomBytes(24).toString('hex');
  writeFileAtomic(path, `${token}\n`, 0o600);
  return { token, path };
}

export async function startUpMetrics(text: string, registries: () => readonly (Registry | null)[]): Promise<{ url: string; close(): void }> {
  const process = new Registry();
  processMetrics(process, 'up');
  const served = await startMetrics(() => [process, ...registries().filter((r): r is Registry => r !== null)], text, 19154);
  return served!;
}

type AdminTarget = ReturnType<Gateway['adminTarget']>;

export async function startUpAdmin(text: string, token: string, gateway: () => Gateway | null, logger: Logger): Promise<{ base: string; close(): Promise<void> }> {
  const address = parseSocketAddress(text, 19155);
  const current = (): AdminTarget | null => gateway()?.adminTarget() ?? null;
  const target: AdminTarget = {
    backends: () => current()?.backends() ?? [],
    backend: (id) => current()?.backend(id),
    kill: (id, why) => current()?.kill(id, why),
    status: () => current()?.status() ?? { gateway: 'not running' },
  };
  let port = 0;
  const admin = new AdminServer(target, {
    auth: { kind: 'token', token },
    logger: logger.child({ component: 'admin' }),
    events: {
      limited: (reason, peer) => gateway()?.adminEvents(() => port).limited(reason, peer),
      refused: (code, peer, detail) => gateway()?.adminEvents(() => port).refused(code, peer, detail),
    },
  });
  port = await admin.start(address.address, address.port);
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  return { base: `http://${host}:${port}`, close: () => admin.close() };
}
