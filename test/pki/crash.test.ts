/**
 * Crash safety: `meshplane pki issue` killed with SIGKILL at many points
 * never leaves half a file or a certificate that does not match its key, and
 * the next run cleans up and completes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from '../support/run.js';
import { scratch, topologyOf } from './support.js';

const dir = scratch('crash');
/** Unique credential names (any <name>-credentials group a run may have created is removed afterwards). */
const tag = `${(process.pid % 46656).toString(36)}${Math.random().toString(36).slice(2, 4)}`;
const NAMES = [`mpcr${tag}`, `mpcr${tag}-adm`];
afterAll(() => {
  if (process.getuid?.() === 0) for (const name of NAMES) spawnSync('groupdel', [`${name}-credentials`]);
  dir.remove();
});

const SERVICES = `app:
  scheduling_group: all
  ports: [7000]
  service_credentials:
    - name: ${NAMES[0]}
    - name: ${NAMES[1]}
`;
const INVENTORY = `all:
  vars:
    domain: mesh.test
  hosts:
    h1: { ip: 198.18.2.11 }
`;

/** Runs the CLI and SIGKILLs it (by its PID) after `ms` (never, when not given); resolves when it is gone, with how long it ran. */
function killedAfter(args: readonly string[], ms = Infinity): Promise<{ code: number | null; ranMs: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
    const timer = Number.isFinite(ms) ? setTimeout(() => child.kill('SIGKILL'), ms) : undefined;
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, ranMs: performance.now() - started });
    });
  });
}

/** Every certificate on disk parses and matches the key beside it. */
function checkPairs(root: string): string[] {
  const problems: string[] = [];
  for (const name of NAMES) {
    for (const kind of ['client', 'server']) {
      const cert = join(root, 'x509', name, kind, 'cert.pem');
      const key = join(root, 'x509', name, kind, 'private_key.pem');
      if (existsSync(key)) {
        try {
          createPrivateKey(readFileSync(key));
        } catch {
          problems.push(`${key} unreadable`);
        }
      }
      if (!existsSync(cert)) continue;
      if (!existsSync(key)) {
        problems.push(`${cert} without a key`);
        continue;
      }
      try {
        if (!new X509Certificate(readFileSync(cert)).checkPrivateKey(createPrivateKey(readFileSync(key)))) problems.push(`${cert} does not match its key`);
      } catch {
        problems.push(`${cert} unreadable`);
      }
    }
  }
  return problems;
}

describe('crash safety', () => {
  it('a pki issue killed at any point leaves only whole, matching pairs', async () => {
    topologyOf(join(dir.path, 'in'), SERVICES, INVENTORY);
    const topology = join(dir.path, 'in', 'topology.json');
    const ca = join(dir.path, 'ca');
    expect(spawnSync(process.execPath, [CLI, 'pki', 'init', '--ca-dir', ca, '-t', topology]).status).toBe(0);
    const root = join(dir.path, 'root');
    const args = ['pki', 'issue', '--ca-dir', ca, '-t', topology, '--host', 'h1', '--credentials-root', root, '--force'];
    // Measure one whole run, then kill runs at points spread over it. How long a run takes
    // changes with the machine's load: a run that ends before its kill point shortens the
    // estimate, so that the later points still land inside a run.
    const first = await killedAfter(args);
    expect(first.code).toBe(0);
    let whole = first.ranMs;
    let killed = 0;
    for (let i = 0; i < 16; i++) {
      const run = await killedAfter(args, Math.round((whole * (i + 1)) / 17));
      if (run.code === null) killed++;
      else whole = Math.min(whole, run.ranMs);
      expect(checkPairs(root), `after kill #${i + 1}`).toEqual([]);
    }
    expect(killed).toBeGreaterThan(4);
    const last = spawnSync(process.execPath, [CLI, ...args.slice(0, -1)], { encoding: 'utf8' });
    expect(last.status).toBe(0);
    expect(checkPairs(root)).toEqual([]);
    expect(spawnSync('find', [root, '-name', '*.tmp'], { encoding: 'utf8' }).stdout).toBe('');
  }, 300_000); // 18 runs of the CLI: a few seconds each on a busy machine
});
