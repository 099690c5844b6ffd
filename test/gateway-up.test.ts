/**
 * `npm start` as a newcomer runs it: not root, in an empty directory. Its
 * command (from package.json) brings up the gateway, an agent per exposed
 * service instance and the demo backend that reads PROXY protocol, all on
 * loopback, and prints one curl command per front; each of them, run as
 * printed, reaches the backend, which reports the client address and the
 * PROXY version the endpoint asks for.
 */
import { spawn } from 'node:child_process';
import { chownSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import type { Topology } from '../src/topology/index.js';
import { runAsync } from './support/dns.js';
import { REPO_ROOT, tempDir } from './support/run.js';

const NOBODY = 65534;

it('runs the gateway, agents and demo backend without root, and every printed curl command goes through its front', async () => {
  const script = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  // The script runs the CLI through its shebang (which carries node's flags), as the installed command does.
  const [entry, ...rest] = script.split(' ');
  expect(entry).toBe('dist/cli/bin.js');
  expect(statSync(join(REPO_ROOT, entry!)).mode & 0o111).not.toBe(0);
  const command = [join(REPO_ROOT, entry!), ...rest, '--dns-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0'];
  const dir = tempDir('up-noroot');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chownSync(dir.path, NOBODY, NOBODY);
  const child = asRoot ? spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...command], { cwd: dir.path }) : spawn(command[0]!, command.slice(1), { cwd: dir.path });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      // A ceiling: `up` issues every credential and starts DNS, the gateway and the agents (about 5 s quiet).
      const timer = setTimeout(() => reject(new Error(`not up within 90 s:\n${out}`)), 90_000);
      child.stdout.on('data', () => {
        if (out.includes('Ctrl-C stops it')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited ${code}:\n${out}`));
      });
    });
    // setpriv execs: the process that serves is the unprivileged one.
    expect(readFileSync(`/proc/${child.pid}/status`, 'utf8')).toMatch(asRoot ? new RegExp(`^Uid:\\s+${NOBODY}\\s`, 'm') : /^Uid:/m);

    const topology = JSON.parse(readFileSync(join(dir.path, '.meshplane', 'topology.json'), 'utf8')) as Topology;
    const endpoints = Object.values(topology.services).flatMap((service) => service.gateway_endpoints.map((endpoint) => ({ service: service.name, endpoint })));
    const curls = [...out.matchAll(/^ {2}(curl .*)$/gm)].map((m) => m[1]!);
    // One command per front of the example (tls, http and connect endpoints), plus metrics, /backends and /healthz.
    expect(curls.length).toBe(endpoints.length + 3);
    const ops = curls.filter((c) => !endpoints.some(({ endpoint }) => c.includes(`:${endpoint.port}`)));
    expect(ops).toHaveLength(3);
    for (const line of ops) {
      const result = await runAsync('sh', ['-c', `${line} --fail --max-time 10`]);
      expect({ line, status: result.status, stderr: result.stderr }).toEqual({ line, status: 0, stderr: '' });
      expect(result.stdout).toMatch(/meshplane_dns_queries_total|meshplane_gateway_backends|"status":"ok"|"service":/);
    }
    expect(out).toMatch(/^Status page \(a browser\): http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{48}$/m);
    for (const { service, endpoint } of endpoints) {
      const line = curls.find((c) => c.includes(`:${endpoint.port}`));
      expect(line, `a curl command for ${service}/${endpoint.name} on port ${endpoint.port}`).toBeDefined();
      const result = await runAsync('sh', ['-c', `${line!} -sS --max-time 10`]);
      const version = endpoint.proxy_protocol === 'none' ? 'none' : endpoint.proxy_protocol;
      expect(result.stdout, `${line!}: ${result.stderr}`).toMatch(new RegExp(`^hello from ${service} on \\S+: you are 127\\.0\\.0\\.1:\\d+ \\(PROXY ${version}${endpoint.mode === 'tls' ? ', TLS' : ''}\\)`));
    }
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    dir.remove();
  }
  expect(child.exitCode).toBe(0);
}, 180_000);
