/**
 * Test hosts as Linux network namespaces. A hub namespace holds a bridge;
 * each host gets a veth pair whose far end sits on the bridge, so every
 * host reaches every other and the hub over "public" addresses from
 * 198.18.0.0/15. Everything is named with the caller's prefix and removed
 * by `destroy()` (also run first, for leftovers of a killed run).
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { runAsync } from './dns.js';
import { SOON_MS } from './wait.js';

export interface TestNetwork {
  readonly hub: string;
  /** Namespace name of each host. */
  readonly hosts: ReadonlyMap<string, string>;
  /** Runs a command inside a namespace (async, so in-process servers keep answering). */
  exec(ns: string, command: string, args: readonly string[], timeoutMs?: number): Promise<{ status: number; stdout: string; stderr: string }>;
  /** Starts a long-running process inside a namespace; destroy() stops it by PID. */
  spawn(ns: string, command: string, args: readonly string[]): ChildProcess;
  destroy(): void;
}

function sh(args: readonly string[]): void {
  execFileSync(args[0]!, args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function removeNamespaces(prefix: string): void {
  const list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    if (name.startsWith(prefix)) {
      try {
        sh(['ip', 'netns', 'del', name]);
      } catch {
        // already gone
      }
    }
  }
}

/**
 * @param prefix e.g. "mpdns-": namespaces become mpdns-hub, mpdns-<host>
 * @param hubAddresses CIDRs on the hub's bridge, e.g. ["198.18.1.1/24"]
 * @param hosts host name -> CIDR of its public address
 */
export function createNetwork(prefix: string, hubAddresses: readonly string[], hosts: ReadonlyMap<string, string>): TestNetwork {
  if (process.getuid?.() !== 0) throw new Error('this test builds network namespaces and needs root (CI runs as root)');
  removeNamespaces(prefix);
  const hub = `${prefix}hub`;
  const children: ChildProcess[] = [];
  const namespaces = new Map<string, string>();
  const network: TestNetwork = {
    hub,
    hosts: namespaces,
    exec: (ns, command, args, timeoutMs = 30_000) => runAsync('ip', ['netns', 'exec', ns, command, ...args], timeoutMs),
    spawn(ns, command, args) {
      const child = spawn('ip', ['netns', 'exec', ns, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      return child;
    },
    destroy() {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      removeNamespaces(prefix);
    },
  };
  try {
    sh(['ip', 'netns', 'add', hub]);
    sh(['ip', '-n', hub, 'link', 'set', 'lo', 'up']);
    sh(['ip', '-n', hub, 'link', 'add', 'br0', 'type', 'bridge']);
    sh(['ip', '-n', hub, 'link', 'set', 'br0', 'up']);
    for (const address of hubAddresses) sh(['ip', '-n', hub, 'addr', 'add', address, 'dev', 'br0']);
    let index = 0;
    for (const [host, address] of hosts) {
      const ns = `${prefix}${host}`;
      const hostEnd = `${prefix}${index}h`;
      const hubEnd = `${prefix}${index}b`;
      index++;
      sh(['ip', 'netns', 'add', ns]);
      namespaces.set(host, ns);
      sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      sh(['ip', 'link', 'add', hostEnd, 'netns', ns, 'type', 'veth', 'peer', 'name', hubEnd, 'netns', hub]);
      sh(['ip', '-n', ns, 'link', 'set', hostEnd, 'name', 'eth0']);
      sh(['ip', '-n', ns, 'addr', 'add', address, 'dev', 'eth0']);
      sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
      sh(['ip', '-n', hub, 'link', 'set', hubEnd, 'master', 'br0']);
      sh(['ip', '-n', hub, 'link', 'set', hubEnd, 'up']);
    }
  } catch (err) {
    network.destroy();
    throw err;
  }
  return network;
}

/** Waits for a child's stdout to contain `text` (or fails with its stderr). */
export function waitForOutput(child: ChildProcess, text: string, timeoutMs = SOON_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${timeoutMs} ms; stderr: ${err}`)), timeoutMs);
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before "${text}": ${err}`));
    });
  });
}
