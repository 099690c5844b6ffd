/**
 * `meshplane dns --workers 2`: two processes answering on one UDP and TCP
 * address. Both answer; a reload reaches both before it is counted (no
 * answer from the old Topology after that, from either worker); /metrics
 * shows totals over the workers and passes promtool; a worker that dies is
 * replaced while the other keeps answering.
 */
import { spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOOPBACK_MESH, addressesOf, buildQuery, dig, startDnsCli, udpExchange, writeMesh } from './support/dns.js';
import { CLI, runWithoutBlocking, tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const work = tempDir('dns-workers');
let child: ChildProcess;
let upstream: ChildProcess;
let server: { address: string; port: number };
let metricsUrl: string;
let paths: { services: string; inventory: string };
let log: { text: string };

beforeAll(async () => {
  // An upstream for other names: another meshplane, authoritative for other.test.
  mkdirSync(`${work.path}/other`);
  const other = writeMesh(`${work.path}/other`, { ...LOOPBACK_MESH, domain: 'other.test' });
  const up = await startDnsCli(['-s', other.services, '-i', other.inventory, '--listen', '127.0.0.1:0', '--no-forward', '--workers', '1']);
  upstream = up.child;
  const upstreamAddress = /(127\.0\.0\.1:\d+)/.exec(up.line)![1]!;
  paths = writeMesh(work.path, LOOPBACK_MESH);
  const started = await startDnsCli(['-s', paths.services, '-i', paths.inventory, '--listen', '127.0.0.1:0', '--forward', upstreamAddress, '--workers', '2', '--metrics', '127.0.0.1:0']);
  child = started.child;
  log = started.log;
  server = { address: '127.0.0.1', port: Number(/127\.0\.0\.1:(\d+)/.exec(started.line)![1]) };
  metricsUrl = /metrics at (\S+)/.exec(started.line)![1]!;
}, 120_000);

afterAll(async () => {
  for (const process of [child, upstream]) {
    if (process === undefined || process.exitCode !== null) continue;
    const exited = new Promise((resolve) => process.once('exit', resolve));
    process.kill('SIGTERM');
    await exited;
  }
  work.remove();
});

async function metrics(): Promise<string> {
  return (await fetch(metricsUrl)).text();
}

/** The value of one series (exact labels), 0 when absent. */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

function sum(text: string, name: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((total, l) => total + Number(l.split(' ').pop()), 0);
}

/** Each query from a fresh socket (a new source port), so the kernel may hand it to either worker. */
async function askA(name: string): Promise<{ rcode: number; answers: number }> {
  const reply = await udpExchange(server, buildQuery(name, 1));
  if (reply === null) throw new Error(`no answer for ${name}`);
  return { rcode: reply[3]! & 0xf, answers: reply.readUInt16BE(6) };
}

function workerPids(): number[] {
  const text = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim();
  return text === '' ? [] : text.split(/\s+/).map(Number);
}

describe('meshplane dns --workers 2', () => {
  it('runs two workers that both answer, over UDP and TCP, with the same views', async () => {
    expect(workerPids()).toHaveLength(2);
    const seen = await waitFor(
      async () => {
        await Promise.all(Array.from({ length: 20 }, () => askA('app.mesh.internal')));
        const text = await metrics();
        const one = value(text, 'meshplane_dns_worker_queries_total{worker="1"}');
        const two = value(text, 'meshplane_dns_worker_queries_total{worker="2"}');
        return one > 0 && two > 0 ? { one, two } : null;
      },
      { what: 'answers from both workers', explain: metrics },
    );
    expect(seen.one + seen.two).toBeGreaterThanOrEqual(20);
    // Views are the workers' too: h1 (on ova) sees h2 by its ova address, an outsider by its ips.
    expect(addressesOf(await dig(server, ['-b', '127.0.10.1', 'h2.mesh.internal', 'A']))).toEqual(['100.64.10.2']);
    expect(addressesOf(await dig(server, ['h2.mesh.internal', 'A']))).toEqual(['127.0.10.2']);
    const tcp = await dig(server, ['+tcp', 'app.mesh.internal', 'A']);
    expect(tcp.transport).toBe('TCP');
    expect(addressesOf(tcp).sort()).toEqual(['127.0.10.1', '127.0.10.2', '127.0.10.3', '127.0.10.4']);
  });

  it('forwards from every worker and hands each upstream reply to the worker that asked', async () => {
    // One upstream socket per worker: a shared one would hand replies to whichever worker reads first.
    const answers = await Promise.all(Array.from({ length: 40 }, () => askA('app.other.test')));
    expect(answers.filter((a) => a.rcode !== 0 || a.answers !== 4)).toEqual([]);
    const text = await metrics();
    expect(value(text, 'meshplane_dns_forwarded_total{result="answered"}')).toBeGreaterThanOrEqual(40);
    expect(value(text, 'meshplane_dns_forwarded_total{result="failed"}')).toBe(0);
  });

  it('shows totals over the workers at /metrics, and promtool accepts them', async () => {
    const before = await metrics();
    const sent = 40;
    await Promise.all(Array.from({ length: sent }, () => askA('nothere.mesh.internal')));
    const text = await metrics();
    const nx = 'meshplane_dns_queries_total{type="A",rcode="NXDOMAIN",view="public"}';
    expect(value(text, nx) - value(before, nx)).toBe(sent);
    // The per-worker counts add up to the total of every query counted.
    expect(sum(text, 'meshplane_dns_worker_queries_total')).toBe(sum(text, 'meshplane_dns_queries_total'));
    // Counted once (by the primary), not once per worker.
    expect(value(text, 'meshplane_dns_views')).toBeGreaterThan(0);
    expect(text).toMatch(/^process_cpu_seconds_total\{component="dns"\} /m);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('counts a reload once every worker serves the new topology; no old answer comes after that', async () => {
    expect((await askA('late.mesh.internal')).rcode).toBe(3);
    const before = await metrics();
    const reloadsBefore = value(before, 'meshplane_dns_reloads_total{result="success"}');
    // A service that did not exist: NXDOMAIN from the old Topology, NOERROR from the new.
    writeFileSync(paths.services, `${LOOPBACK_MESH.services}late:\n  scheduling_group: app\n`);
    child.kill('SIGHUP');
    // Ask all the while: the first new answer may come from one worker before the other has it.
    let asking = true;
    const during = (async () => {
      const answers: number[] = [];
      while (asking) answers.push(...(await Promise.all(Array.from({ length: 10 }, () => askA('late.mesh.internal')))).map((a) => a.rcode));
      return answers;
    })();
    await waitFor(async () => value(await metrics(), 'meshplane_dns_reloads_total{result="success"}') > reloadsBefore, { what: 'the reload counted', explain: () => log.text });
    asking = false;
    await during;
    const counted = await metrics();
    // From here on every query, to whichever worker, is answered from the new Topology.
    const after = await Promise.all(Array.from({ length: 200 }, () => askA('late.mesh.internal')));
    expect(after.filter((a) => a.rcode !== 0 || a.answers !== 4)).toEqual([]);
    const text = await metrics();
    for (const worker of ['1', '2']) {
      const series = `meshplane_dns_worker_queries_total{worker="${worker}"}`;
      expect(value(text, series), `worker ${worker} answered some of the 200`).toBeGreaterThan(value(counted, series));
    }
    expect(log.text).toMatch(/"workers":2,.*"msg":"topology reloaded"/);
  });

  it('replaces a worker that dies; the other answers meanwhile', async () => {
    const [victim, survivor] = workerPids();
    process.kill(victim!, 'SIGKILL');
    // Every query is still answered (by the survivor until the replacement is up).
    for (let i = 0; i < 20; i++) expect((await askA('app.mesh.internal')).rcode).toBe(0);
    const pids = await waitFor(() => {
      const now = workerPids();
      return now.length === 2 && !now.includes(victim!) ? now : null;
    }, { what: 'a replacement worker', explain: () => log.text });
    expect(pids).toContain(survivor);
    expect(log.text).toContain('DNS_ERR_WORKER');
    // The replacement serves the current Topology (the reload above), and answers.
    await waitFor(
      async () => {
        const answers = await Promise.all(Array.from({ length: 20 }, () => askA('late.mesh.internal')));
        expect(answers.every((a) => a.rcode === 0)).toBe(true);
        const text = await metrics();
        return value(text, 'meshplane_dns_worker_queries_total{worker="1"}') > 0 && value(text, 'meshplane_dns_worker_queries_total{worker="2"}') > 0;
      },
      { what: 'both workers answering again', explain: metrics },
    );
  });
});

/** Pids of the processes whose environment holds `mark` (a CLI and the workers it forked inherit it). */
function processesMarked(mark: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'latin1').includes(mark);
      } catch {
        return false; // gone meanwhile, or not ours to read
      }
    })
    .map(Number);
}

describe('meshplane dns --workers 2 that cannot start', () => {
  // The workers are forked before the primary reads the Topology (their boot overlaps the read):
  // a Topology the primary refuses must still stop them, with the primary's error.
  it('exits with the error of a --host not in the topology and leaves no worker behind', async () => {
    const mark = `MESHPLANE_TEST_MARK=${randomUUID()}`;
    const result = await runWithoutBlocking(process.execPath, [CLI, 'dns', '-s', paths.services, '-i', paths.inventory, '--host', 'nosuch', '--listen', '127.0.0.1:0', '--no-forward', '--workers', '2'], {
      env: { MESHPLANE_TEST_MARK: mark.split('=')[1] },
    });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('DNS_ERR_UNKNOWN_HOST');
    await waitFor(() => processesMarked(mark).length === 0, { what: 'no process of that server left', explain: () => processesMarked(mark).join(' ') });
  });
});
