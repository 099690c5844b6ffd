/**
 * A small network of test hosts as network namespaces (all named `mpov-*`):
 * a switch namespace with a bridge, and one namespace per host with a veth
 * into it. Daemons started here are remembered by PID and stopped by PID.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export const PREFIX = 'mpov-';
const SWITCH = `${PREFIX}sw`;

export interface Result {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion. */
export function sh(command: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Result {
  const result = spawnSync(command, [...args], { encoding: 'utf8', input: options.input, timeout: options.timeoutMs ?? 30_000 });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** Runs a command and throws with its output when it fails. */
export function must(command: string, args: readonly string[], options: { input?: string } = {}): string {
  const result = sh(command, args, options);
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr || result.stdout}`);
  return result.stdout;
}

export function nsName(host: string): string {
  return `${PREFIX}${host}`;
}

/** Runs a command inside a host's namespace. */
export function inNs(host: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Result {
  return sh('ip', ['netns', 'exec', nsName(host), ...args], options);
}

export function mustInNs(host: string, args: readonly string[]): string {
  return must('ip', ['netns', 'exec', nsName(host), ...args]);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns true or `timeoutMs` passes; returns the last answer. */
export async function waitFor(check: () => boolean, timeoutMs: number, intervalMs = 250): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}

interface Daemon {
  readonly name: string;
  readonly child: ChildProcess;
  exited: boolean;
}

export class Lab {
  private readonly daemons: Daemon[] = [];

  /**
   * Deletes the namespaces a crashed earlier run left behind, stopping the
   * processes still inside them first (only this test creates mpov-* ones).
   */
  static removeLeftovers(): void {
    for (const ns of Lab.namespaces()) {
      for (const pid of sh('ip', ['netns', 'pids', ns]).stdout.split('\n').filter((p) => /^\d+$/.test(p))) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      sh('ip', ['netns', 'del', ns]);
    }
  }

  static namespaces(): string[] {
    return sh('ip', ['netns', 'list'])
      .stdout.split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter((name) => name.startsWith(PREFIX));
  }

  /** One namespace per host with `eth0` on one bridge; `hosts` maps host name -> address/prefix. */
  build(hosts: Readonly<Record<string, string>>): void {
    must('ip', ['netns', 'add', SWITCH]);
    must('ip', ['-n', SWITCH, 'link', 'add', 'br0', 'type', 'bridge']);
    must('ip', ['-n', SWITCH, 'link', 'set', 'br0', 'up']);
    for (const [host, cidr] of Object.entries(hosts)) {
      const ns = nsName(host);
      must('ip', ['netns', 'add', ns]);
      must('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', ns, 'netns', SWITCH]);
      must('ip', ['-n', SWITCH, 'link', 'set', ns, 'master', 'br0', 'up']);
      must('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', 'eth0']);
      must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
  }

  /**
   * Starts a long-running process inside a host's namespace. `ip netns exec`
   * and `unshare` exec their command, so the child's PID is the daemon's.
   */
  start(name: string, host: string, args: readonly string[], logFile: string): ChildProcess {
    const log = openSync(logFile, 'a');
    const child = spawn('ip', ['netns', 'exec', nsName(host), ...args], { stdio: ['ignore', log, log] });
    closeSync(log);
    const daemon: Daemon = { name, child, exited: false };
    child.on('exit', () => (daemon.exited = true));
    this.daemons.push(daemon);
    return child;
  }

  /** Stops one daemon by PID: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(child: ChildProcess, graceMs = 3000): Promise<void> {
    const daemon = this.daemons.find((d) => d.child === child);
    if (daemon === undefined || daemon.exited || child.pid === undefined) return;
    child.kill('SIGTERM');
    if (!(await waitFor(() => daemon.exited, graceMs, 50))) {
      child.kill('SIGKILL');
      await waitFor(() => daemon.exited, 2000, 50);
    }
  }

  isRunning(child: ChildProcess): boolean {
    return this.daemons.some((d) => d.child === child && !d.exited);
  }

  /** Stops every daemon (last started first) and deletes the namespaces. */
  async destroy(): Promise<void> {
    for (const daemon of [...this.daemons].reverse()) await this.stop(daemon.child);
    for (const ns of Lab.namespaces()) sh('ip', ['netns', 'del', ns]);
  }
}
