/** Helpers for tests that run real programs (the built CLI, ansible-inventory). */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(REPO_ROOT, 'dist/cli/bin.js');
export const FIXTURES = join(REPO_ROOT, 'test/fixtures');

export interface RunResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function run(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): RunResult {
  const result = spawnSync(command, [...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
    timeout: 300_000, // a ceiling for a busy machine (npx alone took 2.5 min beside CPU hogs)
    maxBuffer: 256 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Like run(), without blocking the event loop: for commands that may take minutes on a busy
 * machine (npm, ansible-lint), during which a blocked vitest worker misses its own RPC deadlines.
 */
export function runWithoutBlocking(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(command, [...args], { cwd: options.cwd ?? REPO_ROOT, env: { ...process.env, ...options.env }, encoding: 'utf8', timeout: 300_000, maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== 'number') return reject(new Error(`${command}: ${error.message}`));
      resolve({ status: error === null ? 0 : (error.code as number), stdout, stderr });
    });
  });
}

/** Runs the built `meshplane` CLI (npm test builds it first). */
export function meshplane(args: readonly string[], options: { cwd?: string } = {}): RunResult {
  return run(process.execPath, [CLI, ...args], options);
}

/** ansible-inventory with its config kept away from the user's. */
export function ansibleInventory(args: readonly string[], cwd: string): RunResult {
  const config = join(cwd, 'ansible.cfg');
  writeFileSync(config, '[defaults]\n');
  return run('ansible-inventory', args, {
    cwd,
    env: { ANSIBLE_CONFIG: config, ANSIBLE_LOCALHOST_WARNING: 'False', ANSIBLE_NOCOLOR: '1', ANSIBLE_HOME: join(cwd, '.ansible') },
  });
}

export function tempDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), `meshplane-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
