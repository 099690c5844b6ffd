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
import { waitFor, within } from './support/wait.js';

const RATE = 8000;
/** Each replacement is awaited as a reload before the next one (about 0.3 s apiece on a quiet machine). */
const REPLACEMENTS = 30;
/** dnsperf's window of queries in flight (its default), kept full at RATE on a quiet machine. */
const OUTSTANDING = 100;

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

    child = spawn(process.execPath, [CLI, 'dns', '--topology', file, '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward', '--metrics', '127.0.0.1:0']);
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    await waitForOutput(child, 'serving on');
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(stdout)![1]);

    const queries = `${work.path}/queries.txt`;
    writeFileSync(queries, ['app.mesh.internal A', 'h1.app.mesh.internal A', 'h2.mesh.internal A', 'big.mesh.internal A', 'db-master.mesh.internal A', 'h1.mesh.internal AAAA'].join('\n') + '\n');
    // dnsperf runs until every replacement is done (then SIGINT: it reports what it had in flight
    // as interrupted, not lost), so the load covers all of them however long they take on a
    // busy machine. An answer slower than its timeout counts as lost: 10 s is far beyond any
    // answer the server gives, and still catches one it never gives.
    const perf = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queries, '-l', '600', '-Q', String(RATE), '-q', String(OUTSTANDING), '-t', '10']);
    let perfOut = '';
    perf.stdout.on('data', (chunk: Buffer) => (perfOut += chunk.toString()));
    perf.stderr.on('data', (chunk: Buffer) => (perfOut += chunk.toString()));
    const perfDone = new Promise<number | null>((resolve) => perf.once('exit', (code) => resolve(code)));
    // Under way once the server counts its queries (dnsperf's own output is buffered until it exits).
    const metricsUrl = /metrics at (\S+)/.exec(stdout)![1]!;
    const answered = async (): Promise<number> =>
      [...(await runAsync('curl', ['-sf', metricsUrl])).stdout.matchAll(/^meshplane_dns_queries_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    await waitFor(async () => (await answered()) > OUTSTANDING, { what: 'dnsperf under way', explain: () => perfOut });
    const reloadsSoFar = (): number => stderr.split('\n').filter((line) => line.includes('topology reloaded')).length;

    // Replace the file (atomically, as compile does) and sometimes send SIGHUP too.
    const answerSets = new Set<string>();
    try {
      for (let i = 0; i < REPLACEMENTS; i++) {
        const reloadsBefore = reloadsSoFar();
        // Every replacement changes the topology (the first one to `after`): an unchanged one is not reloaded.
        writeTopology(file, JSON.parse(texts[(i + 1) % 2]!) as typeof before);
        if (i % 5 === 0) child.kill('SIGHUP');
        for (let q = 0; q < 5; q++) {
          const reply = await udpExchange({ address: '127.0.0.1', port }, buildQuery('app.mesh.internal', 1, { id: i * 10 + q }));
          expect(reply, 'a checker query got no reply').not.toBeNull();
          expect(reply![3]! & 0xf).toBe(0);
          answerSets.add(answerAddresses(reply!).sort().join(' '));
        }
        // The next replacement only once this one is served: two within the watcher's debounce would be one reload.
        await waitFor(() => reloadsSoFar() > reloadsBefore, { what: `reload after replacement ${i + 1}`, explain: () => stderr.slice(-2000) });
      }
    } finally {
      perf.kill('SIGINT');
    }
    expect(await within(perfDone, { what: 'dnsperf stopping' }), perfOut).toBe(0);
    const completed = Number(/Queries completed:\s+(\d+)/.exec(perfOut)?.[1]);
    const lost = Number(/Queries lost:\s+(\d+)/.exec(perfOut)?.[1]);
    const noerror = Number(/NOERROR (\d+)/.exec(perfOut)?.[1]);
    // Under load throughout: on average a full window of queries went through per replacement
    // (on a quiet machine, about 25 windows; the rate a busy machine reaches is not the point).
    expect(completed, perfOut).toBeGreaterThan(OUTSTANDING * REPLACEMENTS);
    expect(lost, perfOut).toBe(0);
    expect(noerror, perfOut).toBe(completed);
    // Only the old (h1-h4) and the new (h1-h5) answer were seen, never a mix or another view's.
    const old4 = ['127.0.10.1', '127.0.10.2', '127.0.10.3', '127.0.10.4'];
    expect([...answerSets].sort()).toEqual([old4.join(' '), [...old4, '127.0.10.5'].join(' ')]);
    const reloads = stderr.split('\n').filter((line) => line.includes('topology reloaded')).length;
    expect(reloads).toBeGreaterThanOrEqual(20);
    expect(stderr).not.toContain('reload failed');
  });
});
