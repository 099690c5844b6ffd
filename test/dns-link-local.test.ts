/**
 * Forwarding to a link-local IPv6 resolver (fe80::53%ll0), the way a
 * resolv.conf written by SLAAC/RDNSS or a router names it: the zone must
 * survive, or the kernel cannot tell which link is meant. Both servers are
 * the real CLI, inside a network namespace of their own.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTopology } from '../src/topology/index.js';
import { LOOPBACK_MESH, addressesOf, compileMesh, parseDig, runAsync } from './support/dns.js';
import { waitForOutput } from './support/netns.js';
import { CLI, run, tempDir } from './support/run.js';

const isRoot = process.getuid?.() === 0;
const NS = `mpll-${process.pid}`;
const work = tempDir('dns-link-local');
const children: ChildProcess[] = [];

function ip(args: readonly string[]): void {
  const result = run('ip', args);
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
}

/** `meshplane dns ...` inside the namespace; resolves once it serves. */
async function startDns(args: readonly string[]): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', NS, process.execPath, CLI, 'dns', ...args, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  await waitForOutput(child, 'serving on');
}

async function digIn(port: number, args: readonly string[]): Promise<{ status: string; addresses: string[] }> {
  const result = await runAsync('ip', ['netns', 'exec', NS, 'dig', '@127.0.0.1', '-p', String(port), '+time=10', '+tries=1', ...args]);
  const reply = parseDig(result.stdout);
  return { status: reply.status, addresses: addressesOf(reply).sort() };
}

describe.runIf(isRoot)('forwarding to a link-local resolver', () => {
  beforeAll(async () => {
    ip(['netns', 'add', NS]);
    ip(['-n', NS, 'link', 'set', 'lo', 'up']);
    // A veth pair with both ends in the namespace: a link with nothing else on it.
    ip(['-n', NS, 'link', 'add', 'll0', 'type', 'veth', 'peer', 'name', 'll1']);
    ip(['-n', NS, 'link', 'set', 'll0', 'up']);
    ip(['-n', NS, 'link', 'set', 'll1', 'up']);
    ip(['-n', NS, '-6', 'addr', 'add', 'fe80::53/64', 'dev', 'll0', 'nodad']);
    const mesh = `${work.path}/mesh`;
    const other = `${work.path}/other`;
    mkdirSync(mesh);
    mkdirSync(other);
    writeTopology(`${mesh}/topology.json`, compileMesh(mesh, LOOPBACK_MESH));
    writeTopology(`${other}/topology.json`, compileMesh(other, { ...LOOPBACK_MESH, domain: 'other.test' }));
    writeFileSync(`${work.path}/resolv.conf`, 'nameserver fe80::53%ll0\n');
    // The upstream: another meshplane, authoritative for other.test, on the link-local address.
    await startDns(['--topology', `${other}/topology.json`, '--listen', '[fe80::53%ll0]:53', '--no-forward']);
    await startDns(['--topology', `${mesh}/topology.json`, '--listen', '127.0.0.1:5301', '--resolv-conf', `${work.path}/resolv.conf`]);
    await startDns(['--topology', `${mesh}/topology.json`, '--listen', '127.0.0.1:5302', '--forward', '[fe80::53%ll0]:53']);
  }, 120_000);

  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    run('ip', ['netns', 'del', NS]);
    work.remove();
  });

  it('takes the zone from resolv.conf and relays the answer, over UDP and TCP', async () => {
    expect(await digIn(5301, ['app.other.test'])).toEqual({ status: 'NOERROR', addresses: ['127.0.10.1', '127.0.10.2', '127.0.10.3', '127.0.10.4'] });
    expect((await digIn(5301, ['+tcp', 'nothere.other.test'])).status).toBe('NXDOMAIN');
  });

  it('names the link-local upstream ns.other.test at its address, without the zone', async () => {
    expect((await digIn(5301, ['ns.other.test', 'AAAA'])).addresses).toEqual(['fe80::53']);
  });

  it('takes the zone from --forward [fe80::53%ll0]:53', async () => {
    expect((await digIn(5302, ['app.other.test'])).addresses).toHaveLength(4);
    // Mesh names are still ours.
    expect((await digIn(5302, ['db.mesh.internal'])).addresses).toHaveLength(2);
  });
});
