/** Helpers for the PKI tests: topologies, a CA and issued material, openssl. */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MeshplaneError } from '../../src/errors.js';
import { compileTopology, loadConfig } from '../../src/config/index.js';
import { writeTopology } from '../../src/topology/index.js';
import type { Topology } from '../../src/topology/index.js';
import { REPO_ROOT, run, tempDir } from '../support/run.js';
import type { RunResult } from '../support/run.js';
import { SOON_MS } from '../support/wait.js';

export const EXAMPLE_SERVICES = join(REPO_ROOT, 'services.yml.example');
export const EXAMPLE_INVENTORY = join(REPO_ROOT, 'hosts.yml.example');

/** The shipped example mesh (host1..4, gw1; db on host2+host3 with host2 master). */
export function exampleTopology(): Topology {
  return compile(EXAMPLE_SERVICES, EXAMPLE_INVENTORY);
}

export function compile(services: string, inventory: string): Topology {
  const config = loadConfig({ services, inventory });
  if (config.diagnostics.errors.length > 0) throw new Error(`test inputs invalid: ${JSON.stringify(config.diagnostics.errors)}`);
  return compileTopology(config);
}

/** Compiles services/inventory texts written into `dir`; also writes dir/topology.json. */
export function topologyOf(dir: string, services: string, inventory: string): Topology {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'services.yml'), services);
  writeFileSync(join(dir, 'hosts.yml'), inventory);
  const topology = compile(join(dir, 'services.yml'), join(dir, 'hosts.yml'));
  writeTopology(join(dir, 'topology.json'), topology);
  return topology;
}

export function openssl(args: readonly string[], input?: string): RunResult {
  if (input === undefined) return run('openssl', args);
  return run('sh', ['-c', `printf '%s' "$0" | openssl "$@"`, input, ...args]);
}

export function scratch(prefix: string): { path: string; remove: () => void } {
  return tempDir(`pki-${prefix}`);
}

export interface AsyncResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program without blocking the event loop (servers in this process keep answering). */
export function runAsync(command: string, args: readonly string[], input = '', timeoutMs = 20_000): Promise<AsyncResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

export interface SServer {
  readonly port: number;
  /** Stops it (by its PID) and returns everything it printed. */
  stop(): Promise<string>;
}

/** `openssl s_server` on 127.0.0.1, port 0, for one connection; resolves once it is accepting. */
export function sServer(args: readonly string[]): Promise<SServer> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', ['s_server', '-accept', '127.0.0.1:0', '-naccept', '1', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    const closed = new Promise<void>((done) => child.on('close', () => done()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`s_server did not start within ${SOON_MS} ms: ${output}`));
    }, SOON_MS);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(output);
      if (match !== null) {
        clearTimeout(timer);
        resolve({
          port: Number(match[1]),
          stop: async () => {
            if (child.exitCode === null) child.kill('SIGTERM');
            await closed;
            return output;
          },
        });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
  });
}

/** The MeshplaneError code `fn` throws (awaited when it returns a promise); undefined when it succeeds. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof MeshplaneError) return err.code;
    throw err;
  }
  return undefined;
}

export async function asyncCodeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof MeshplaneError) return err.code;
    throw err;
  }
  return undefined;
}

