/**
 * Reload under load: dnsperf keeps a steady stream of queries on the real
 * `meshplane dns` process while the topology file is replaced again and
 * again (and SIGHUP sent in between). No query may be lost, every one must
 * be NOERROR, and a checker asking in parallel must always see either the
 * old or the new answer, never a mix or nothing.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import dns2 from 'dns2';
import { serializeTopology, writeTopology } from '../src/topology/index.js';
import { LOOPBACK_MESH, buildQuery, compileMesh, runAsync, udpExchange } from './support/dns.js';
import { waitForOutput } from './support/netns.js';
import { CLI, tempDir } from './support/run.js';

const DURATION_SECONDS = 9;
const RATE = 8000;
const REPLACEMENTS = 60;

const work = tempDir('dns-reload-load');

/** The A records of a reply, decoded by dns2 (an independent decoder). */
function answerAddresses(reply: Buffer): string[] {
  return dns2.Packet.parse(reply).answers.map((answer) => String(answer.address));
}
let child: ChildProcessWithoutNullStreams | undefined;

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child!.once('exit', r));
  }
  work.remove();
});

describe('reload under load', () => {
  it('loses and corrupts no answer while the topology is replaced many times', async () => {
    const before = compileMesh(work.path, LOOPBACK_MESH);
    const after = compileMesh(work.path, { ...LOOPBACK_MESH, hosts: [...LOOPBACK_MESH.hosts, { name: 'h5', ips: ['127.0.10.5'], groups: ['app'] }] });
    const texts = [serializeTopology(before), serializeTopology(after)];
    const file = `${work.path}/topology.json`;
    writeTopology(file, before);

    child = spawn(process.execPath, [CLI, 'dns', '--topology', file, '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward']);
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    await waitForOutput(child, 'serving on');
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(stdout)![1]);

    const queries = `${work.path}/queries.txt`;
    writeFileSync(queries, ['app.mesh.internal A', 'h1.app.mesh.internal A', 'h2.mesh.internal A', 'big.mesh.internal A', 'db-master.mesh.internal A', 'h1.mesh.internal AAAA'].join('\n') + '\n');
    const load = runAsync('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queries, '-l', String(DURATION_SECONDS), '-Q', String(RATE), '-t', '2'], (DURATION_SECONDS + 20) * 1000);

    // Replace the file (atomically, as compile does) and sometimes send SIGHUP too.
    const answerSets = new Set<string>();
    const deadline = Date.now() + (DURATION_SECONDS - 1) * 1000;
    for (let i = 0; i < REPLACEMENTS && Date.now() < deadline; i++) {
      writeTopology(file, JSON.parse(texts[i % 2]!) as typeof before);
      if (i % 5 === 0) child.kill('SIGHUP');
      for (let q = 0; q < 5; q++) {
        const reply = await udpExchange({ address: '127.0.0.1', port }, buildQuery('app.mesh.internal', 1, { id: i * 10 + q }), 2000);
        expect(reply, 'a checker query got no reply').not.toBeNull();
        expect(reply![3]! & 0xf).toBe(0);
        answerSets.add(answerAddresses(reply!).sort().join(' '));
      }
      await new Promise((r) => setTimeout(r, 250)); // longer than the watcher's debounce: each replacement is a reload
    }
    const perf = await load;
    expect(perf.status, perf.stderr).toBe(0);
    const sent = Number(/Queries sent:\s+(\d+)/.exec(perf.stdout)?.[1]);
    const lost = Number(/Queries lost:\s+(\d+)/.exec(perf.stdout)?.[1]);
    const noerror = Number(/NOERROR (\d+)/.exec(perf.stdout)?.[1]);
    expect(sent).toBeGreaterThan(RATE * (DURATION_SECONDS - 2));
    expect(lost).toBe(0);
    expect(noerror).toBe(sent);
    // Only the old (h1-h4) and the new (h1-h5) answer were seen, never a mix or another view's.
    const old4 = ['127.0.10.1', '127.0.10.2', '127.0.10.3', '127.0.10.4'];
    expect([...answerSets].sort()).toEqual([old4.join(' '), [...old4, '127.0.10.5'].join(' ')]);
    const reloads = stderr.split('\n').filter((line) => line.includes('topology reloaded')).length;
    expect(reloads).toBeGreaterThanOrEqual(20);
    expect(stderr).not.toContain('reload failed');
  });
});
