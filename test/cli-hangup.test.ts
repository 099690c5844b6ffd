/**
 * A SIGHUP that reaches a daemon while it is still starting (a reload sent
 * as its unit restarts) must not kill it: Node's default for SIGHUP is to
 * exit, and the daemon's reload handler comes only once it serves. The
 * entry point holds hangups from its first statement and the daemon replays
 * one as a reload when it is up.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LOOPBACK_MESH, writeMesh } from './support/dns.js';
import { startDaemon, stopAllDaemons } from './support/gateway.js';
import { waitFor } from './support/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'meshplane-hangup-'));
afterAll(async () => {
  await stopAllDaemons();
  rmSync(dir, { recursive: true, force: true });
});

/** True once the process has a SIGHUP handler (bit 1 of SigCgt in /proc/PID/status). */
function catchesHangup(pid: number): boolean {
  try {
    const mask = /SigCgt:\s+([0-9a-f]+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '0';
    return (BigInt(`0x${mask}`) & 1n) === 1n;
  } catch {
    return false;
  }
}

describe('SIGHUP during start-up', () => {
  it('does not kill the DNS daemon: it starts, then reloads once', async () => {
    const paths = writeMesh(dir, LOOPBACK_MESH);
    const dns = startDaemon(['dns', '-s', paths.services, '-i', paths.inventory, '--listen', '127.0.0.1:0', '--no-forward', '--no-watch'], 'serving on');
    const pid = dns.child.pid!;
    await waitFor(() => catchesHangup(pid) || dns.child.exitCode !== null, { what: 'the daemon to catch SIGHUP', interval: 2 });
    // The point of the test: the handler is there before the daemon serves.
    expect(dns.output()).not.toContain('serving on');
    dns.child.kill('SIGHUP');
    await dns.ready;
    await waitFor(() => dns.output().includes('SIGHUP arrived during start-up'), { what: 'the held SIGHUP to be replayed' });
    expect(dns.child.exitCode).toBeNull();
    expect(dns.child.signalCode).toBeNull();
  });
});
