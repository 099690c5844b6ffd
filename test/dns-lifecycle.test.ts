/**
 * The DNS server over time: TCP connections that idle or pile up, reloads
 * on file change and SIGHUP, broken topologies that must not replace a good
 * one, and how views are chosen for askers the mesh does not know.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { DnsService } from '../src/dns/index.js';
import { Zone } from '../src/dns/testing.js';
import { LiveTopology, serializeTopology, topologyFileSource, writeTopology } from '../src/topology/index.js';
import type { Topology } from '../src/topology/index.js';
import { LOOPBACK_MESH, addressesOf, buildQuery, compileMesh, dig, runAsync, silentLogger, startDnsCli, tcpExchange, writeMesh } from './support/dns.js';
import type { MeshSpec } from './support/dns.js';
import { CLI, tempDir } from './support/run.js';
import { sleep, waitFor as waitUntil, within } from './support/wait.js';

const work = tempDir('dns-lifecycle');
let topology: Topology;

beforeAll(() => {
  topology = compileMesh(work.path, LOOPBACK_MESH);
});
afterAll(() => work.remove());

/** The same mesh with one more app host (h5) joined. */
function withExtraHost(dir: string): Topology {
  return compileMesh(dir, {
    ...LOOPBACK_MESH,
    hosts: [...LOOPBACK_MESH.hosts, { name: 'h5', ips: ['127.0.10.5'], groups: ['app'] }],
  });
}

async function startService(file: string, options: Partial<ConstructorParameters<typeof DnsService>[0]> & { watch?: boolean } = {}): Promise<{ service: DnsService; server: { address: string; port: number } }> {
  const { watch, ...rest } = options;
  const service = new DnsService({
    topology: new LiveTopology(topologyFileSource(file), { watch, logger: silentLogger }),
    host: 'h4',
    listen: [{ address: '127.0.0.1', port: 0 }],
    upstreams: [],
    logger: silentLogger,
    ...rest,
  });
  await service.start();
  return { service, server: service.addresses[0]! };
}

async function waitFor(check: () => Promise<boolean>): Promise<void> {
  await waitUntil(check, { what: 'condition not reached', interval: 50 });
}

describe('views for askers', () => {
  it('gives unknown askers the public view, loopback askers the server host\'s, and unmaps IPv4-mapped IPv6', () => {
    const zone = new Zone(topology, { ttl: 5, negativeTtl: 5, selfHost: 'h2' });
    expect(zone.views.select('198.18.200.1').label).toBe('public');
    expect(zone.views.select('127.0.0.9').label).toBe('ova,ovb');
    expect(zone.views.select('::1').label).toBe('ova,ovb');
    expect(zone.views.select('::ffff:127.0.10.3').label).toBe('ovb');
    // Overlay addresses identify their host too.
    expect(zone.views.select('100.64.10.1').label).toBe('ova');
    // IPv4 sources take a numeric path (no string work per packet): the same answers at its edges.
    expect(zone.views.select('127.0.10.4').label).toBe('public');
    expect(zone.views.select('127.255.255.255').label).toBe('ova,ovb');
    expect(zone.views.select('128.0.0.1').label).toBe('public');
    expect(zone.views.select('100.64.11.3').label).toBe('ovb');
    for (const junk of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '1.2.3.', 'a.b.c.d', '1.2.3.4444']) expect(zone.views.select(junk).label).toBe('public');
    const publicAnswer = zone.answer(zone.views.select('198.18.200.1'), 'h2.mesh.internal', 1);
    expect(publicAnswer.count).toBe(1);
    expect([...publicAnswer.records.subarray(-4)]).toEqual([127, 0, 10, 2]);
  });

  it('keeps one view per overlay set, however many hosts share it', () => {
    const zone = new Zone(topology, { ttl: 5, negativeTtl: 5, selfHost: null });
    // 64 hosts, 4 distinct overlay sets: public (h4 and the fleet), ova, ova+ovb, ovb.
    expect(zone.views.views.map((v) => v.label).sort()).toEqual(['ova', 'ova,ovb', 'ovb', 'public']);
  });
});

describe('TCP limits', () => {
  it('closes connections idle longer than the timeout', async () => {
    const file = `${work.path}/idle.json`;
    writeTopology(file, topology);
    const { service, server } = await startService(file, { tcpIdleTimeoutMs: 300, watch: false });
    try {
      const started = Date.now();
      const closedAfter = await new Promise<number>((resolve) => {
        const socket = connect(server.port, server.address);
        socket.on('close', () => resolve(Date.now() - started));
      });
      // Not before the 300 ms timeout (timers never fire early); the ceiling leaves a busy
      // machine its margin and still tells "closed for idleness" from "never closed".
      expect(closedAfter).toBeGreaterThanOrEqual(250);
      expect(closedAfter).toBeLessThan(300 + 10_000);
    } finally {
      service.close();
    }
  });

  it('makes room at the cap by closing the oldest waiting connection, and serves the newcomer', async () => {
    const file = `${work.path}/cap.json`;
    writeTopology(file, topology);
    const { service, server } = await startService(file, { tcpMaxConnections: 2, watch: false });
    const open = (): Promise<Socket> =>
      new Promise((resolve) => {
        const socket = connect(server.port, server.address, () => resolve(socket));
      });
    const closed = (socket: Socket): Promise<void> => new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
    try {
      const first = await open();
      first.on('error', () => undefined);
      const second = await open();
      // The third needs a slot: the first (the oldest waiting) goes, the second stays.
      const replies = await tcpExchange(server, [buildQuery('app.mesh.internal', 1)]);
      expect(replies[0]![3]! & 0xf).toBe(0);
      await within(closed(first), { what: 'the oldest waiting connection closed to make room' });
      expect(second.destroyed).toBe(false);
      second.destroy();
    } finally {
      service.close();
    }
  });
});

describe('reload', () => {
  it('picks up a changed topology file and keeps the old one when the new one is broken', async () => {
    const dir = `${work.path}/watch`;
    (await import('node:fs')).mkdirSync(dir);
    const file = `${dir}/topology.json`;
    writeTopology(file, topology);
    const registry = new Registry();
    const { service, server } = await startService(file, { registry });
    try {
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(4);
      // Written the way meshplane compile writes: temp file + rename.
      writeTopology(file, withExtraHost(`${work.path}`));
      await waitFor(async () => addressesOf(await dig(server, ['app.mesh.internal'])).length === 5);

      writeFileSync(`${dir}/broken.tmp`, '{"format_version": 1, "domain": ');
      renameSync(`${dir}/broken.tmp`, file);
      await waitFor(async () => (await registry.metrics()).includes('meshplane_dns_reloads_total{result="failure"} 1'));
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(5);
      expect(await service.reload('test')).toBe('failure');
    } finally {
      service.close();
    }
  });

  it('keeps the old zone when the new topology no longer has its --host, and serves again once it is back', async () => {
    const dir = `${work.path}/host-gone`;
    mkdirSync(dir);
    const file = `${dir}/topology.json`;
    writeTopology(file, topology);
    const registry = new Registry();
    const { service, server } = await startService(file, { registry, watch: false });
    try {
      const withoutH4 = compileMesh(`${work.path}`, { ...LOOPBACK_MESH, hosts: LOOPBACK_MESH.hosts.filter((h) => h.name !== 'h4'), services: LOOPBACK_MESH.services.replace('num_instances: 2', 'num_instances: 1') });
      writeTopology(file, withoutH4);
      expect(await service.reload('SIGHUP')).toBe('failure');
      expect(await registry.metrics()).toContain('meshplane_dns_reloads_total{result="failure"} 1');
      // Still the old zone: h4 and its app instance are answered.
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(4);
      expect(addressesOf(await dig(server, ['h4.mesh.internal']))).toEqual(['127.0.10.4']);

      // Back, with one more host: built and served.
      writeTopology(file, withExtraHost(`${work.path}`));
      expect(await service.reload('SIGHUP')).toBe('success');
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(5);
      expect(await service.reload('SIGHUP')).toBe('unchanged');
      const metrics = await registry.metrics();
      expect(metrics).toContain('meshplane_dns_reloads_total{result="success"} 1');
      expect(metrics).toContain('meshplane_dns_reloads_total{result="unchanged"} 1');
    } finally {
      service.close();
    }
  });

  it('reloads the CLI server on SIGHUP, answering throughout', async () => {
    const dir = `${work.path}/hup`;
    (await import('node:fs')).mkdirSync(dir);
    const file = `${dir}/topology.json`;
    writeTopology(file, topology);
    const child = spawn(process.execPath, [CLI, 'dns', '--topology', file, '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward', '--no-watch', '--metrics', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('\n')) resolve(out);
        });
        child.on('exit', (code) => reject(new Error(`dns exited ${code}: ${stderr}`)));
      });
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]);
      const server = { address: '127.0.0.1', port };
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(4);

      writeFileSync(file, serializeTopology(withExtraHost(work.path)));
      // --no-watch: nothing changes until SIGHUP (a watcher would have reloaded within this time).
      await sleep(400);
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(4);
      child.kill('SIGHUP');
      await waitFor(async () => addressesOf(await dig(server, ['app.mesh.internal'])).length === 5);

      writeFileSync(file, 'not json');
      child.kill('SIGHUP');
      await waitFor(() => Promise.resolve(stderr.includes('reload failed')));
      expect(stderr).toContain('TOPOLOGY_ERR_FORMAT');
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(5);
      expect(child.exitCode).toBeNull();

      // The metrics endpoint tells the same story.
      const metricsUrl = /metrics at (\S+)/.exec(line)![1]!;
      const metrics = await runAsync('curl', ['-sf', metricsUrl]);
      expect(metrics.status).toBe(0);
      expect(metrics.stdout).toContain('meshplane_dns_reloads_total{result="success"} 1');
      expect(metrics.stdout).toContain('meshplane_dns_reloads_total{result="failure"} 1');
      expect(metrics.stdout).toMatch(/meshplane_dns_queries_total\{type="A",rcode="NOERROR",view="public"\} \d+/);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    expect(child.exitCode).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe('not json');
  });
});

/** Starts the CLI server and resolves with its first stdout line; stderr (pino's JSON lines) accumulates in `log.text`. */
const startCli = startDnsCli;

async function stopCli(child: ReturnType<typeof spawn>): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

/** The JSON log lines a pino logger wrote. */
function logLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('started from services.yml and the inventory', () => {
  it('serves the inputs directly, reloads when they change, and logs why a broken change is not served', async () => {
    const dir = `${work.path}/inputs`;
    mkdirSync(dir);
    const staging = `${dir}/staging`;
    mkdirSync(staging);
    /** Writes both input files the way editors and Ansible do: a temp file renamed over the old one. */
    const install = (spec: MeshSpec): void => {
      const written = writeMesh(staging, spec);
      renameSync(written.inventory, `${dir}/hosts.yml`);
      renameSync(written.services, `${dir}/services.yml`);
    };
    install(LOOPBACK_MESH);
    const { child, line, log } = await startCli(['-s', `${dir}/services.yml`, '-i', `${dir}/hosts.yml`, '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward']);
    try {
      const server = { address: '127.0.0.1', port: Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]) };
      expect(addressesOf(await dig(server, ['app.mesh.internal'])).sort()).toEqual(['127.0.10.1', '127.0.10.2', '127.0.10.3', '127.0.10.4']);

      // A new host in the inventory: picked up without a signal.
      install({ ...LOOPBACK_MESH, hosts: [...LOOPBACK_MESH.hosts, { name: 'h5', ips: ['127.0.10.5'], groups: ['app'] }] });
      await waitFor(async () => addressesOf(await dig(server, ['app.mesh.internal'])).length === 5);

      // A typo in services.yml: the error is logged (pino JSON, with file, line and key), the old topology stays.
      const services = readFileSync(`${dir}/services.yml`, 'utf8');
      writeFileSync(`${staging}/services.yml`, services.replace('scheduling_group: db', 'scheduling_grup: db'));
      renameSync(`${staging}/services.yml`, `${dir}/services.yml`);
      await waitFor(() => Promise.resolve(log.text.includes('reload failed')));
      const failure = logLines(log.text).find((entry) => entry['msg'] === 'reload failed; still serving the previous topology');
      expect(failure).toMatchObject({ level: 50, component: 'dns', code: 'TOPOLOGY_ERR_CONFIG', reason: 'file changed' });
      expect(JSON.stringify(failure!['err'])).toMatch(/services\.yml:\d+:\d+.*scheduling_grup/);
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(5);
      expect(addressesOf(await dig(server, ['db.mesh.internal']))).toHaveLength(2);

      // Fixed again (and h5 gone): served.
      install(LOOPBACK_MESH);
      await waitFor(async () => addressesOf(await dig(server, ['app.mesh.internal'])).length === 4);
      expect(logLines(log.text).filter((entry) => entry['msg'] === 'topology reloaded').length).toBeGreaterThanOrEqual(2);
      expect(child.exitCode).toBeNull();
    } finally {
      await stopCli(child);
    }
  });

  it('watches the files services.yml includes, and new files matching a wildcard include', async () => {
    const dir = `${work.path}/include-inputs`;
    mkdirSync(`${dir}/common`, { recursive: true });
    mkdirSync(`${dir}/services.d`);
    mkdirSync(`${dir}/staging`);
    const paths = writeMesh(dir, LOOPBACK_MESH);
    writeFileSync(paths.services, `include: [common/extra.yml, services.d/*.yml]\n${LOOPBACK_MESH.services}`);
    writeFileSync(`${dir}/common/extra.yml`, 'extra:\n  scheduling_group: app\n');
    const { child, line } = await startCli(['-s', paths.services, '-i', paths.inventory, '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward']);
    try {
      const server = { address: '127.0.0.1', port: Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]) };
      expect(addressesOf(await dig(server, ['extra.mesh.internal']))).toHaveLength(4);

      // An included file in another directory changes (written the way editors and Ansible do).
      writeFileSync(`${dir}/staging/extra.yml`, 'extra:\n  scheduling_group: db\n');
      renameSync(`${dir}/staging/extra.yml`, `${dir}/common/extra.yml`);
      await waitFor(async () => addressesOf(await dig(server, ['extra.mesh.internal'])).length === 2);

      // A new file that the wildcard include now matches.
      expect(addressesOf(await dig(server, ['late.mesh.internal']))).toHaveLength(0);
      writeFileSync(`${dir}/staging/late.yml`, 'late:\n  scheduling_group: db\n  num_instances: 1\n');
      renameSync(`${dir}/staging/late.yml`, `${dir}/services.d/late.yml`);
      await waitFor(async () => addressesOf(await dig(server, ['late.mesh.internal'])).length === 1);
      expect(child.exitCode).toBeNull();
    } finally {
      await stopCli(child);
    }
  });

  it('keeps serving every name when services.yml is emptied or all comments, and logs the code', async () => {
    const dir = `${work.path}/emptied-inputs`;
    mkdirSync(`${dir}/staging`, { recursive: true });
    const paths = writeMesh(dir, LOOPBACK_MESH);
    const { child, line, log } = await startCli(['-s', paths.services, '-i', paths.inventory, '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward']);
    try {
      const server = { address: '127.0.0.1', port: Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]) };
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(4);
      // A truncated write in place (what a crashed editor or a failed copy leaves), then an all-comment file.
      let failures = 0;
      for (const text of ['', '# services.yml\n# app:\n#   scheduling_group: app\n']) {
        writeFileSync(paths.services, text);
        failures++;
        await waitFor(() => Promise.resolve(logLines(log.text).filter((entry) => entry['msg'] === 'reload failed; still serving the previous topology').length >= failures));
        expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(4);
        expect(addressesOf(await dig(server, ['db-master.mesh.internal']))).toHaveLength(1);
        expect((await dig(server, ['big.mesh.internal'])).status).toBe('NOERROR');
      }
      const failure = logLines(log.text).find((entry) => entry['msg'] === 'reload failed; still serving the previous topology');
      expect(failure).toMatchObject({ level: 50, code: 'TOPOLOGY_ERR_CONFIG' });
      expect(JSON.stringify(failure!['err'])).toMatch(/services\.yml:1:1: error CONFIG_ERR_NO_SERVICES/);
      expect(logLines(log.text).filter((entry) => entry['msg'] === 'topology reloaded')).toHaveLength(0);
      expect(child.exitCode).toBeNull();
    } finally {
      await stopCli(child);
    }
  });

  it('refuses to reload a compiled topology into one with no service unless it says allow_no_services', async () => {
    const dir = `${work.path}/emptied-topology`;
    mkdirSync(dir);
    const file = `${dir}/topology.json`;
    writeTopology(file, topology);
    const { child, line, log } = await startCli(['--topology', file, '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward', '--no-watch']);
    try {
      const server = { address: '127.0.0.1', port: Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]) };
      const empty = { ...topology, services: {}, hosts: Object.fromEntries(Object.entries(topology.hosts).map(([name, host]) => [name, { ...host, services: [], masters: [], credentials: [] }])), credentials: {} };
      writeFileSync(file, serializeTopology(empty));
      child.kill('SIGHUP');
      await waitFor(() => Promise.resolve(log.text.includes('reload failed')));
      const failure = logLines(log.text).find((entry) => entry['msg'] === 'reload failed; still serving the previous topology');
      expect(failure).toMatchObject({ level: 50, code: 'TOPOLOGY_ERR_NO_SERVICES', reason: 'SIGHUP' });
      expect(addressesOf(await dig(server, ['app.mesh.internal']))).toHaveLength(4);

      // Intended (compiled from "allow_no_services: true"): served.
      writeFileSync(file, serializeTopology({ ...empty, allow_no_services: true }));
      child.kill('SIGHUP');
      await waitFor(async () => (await dig(server, ['app.mesh.internal'])).status === 'NXDOMAIN');
      expect(addressesOf(await dig(server, ['h1.mesh.internal']))).toEqual(['127.0.10.1']);
    } finally {
      await stopCli(child);
    }
  });

  it('refuses a broken input at start with the error and a non-zero exit', async () => {
    const dir = `${work.path}/broken-inputs`;
    mkdirSync(dir);
    const paths = writeMesh(dir, LOOPBACK_MESH);
    writeFileSync(paths.services, 'app:\n  scheduling_group: nowhere\n');
    const result = await runAsync(process.execPath, [CLI, 'dns', '-s', paths.services, '-i', paths.inventory, '--listen', '127.0.0.1:0', '--no-forward'], 20_000);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('TOPOLOGY_ERR_CONFIG');
  });
});

describe('forwarding defaults of the CLI', () => {
  it('answers REFUSED outside the zone when the resolv.conf it reads names no other resolver', async () => {
    const resolv = `${work.path}/empty-resolv.conf`;
    writeFileSync(resolv, '# no nameserver lines\nsearch mesh.internal\n');
    const file = `${work.path}/refused.json`;
    writeTopology(file, topology);
    const { child, line } = await startCli(['--topology', file, '--host', 'h4', '--listen', '127.0.0.1:0', '--resolv-conf', resolv, '--no-watch']);
    try {
      const server = { address: '127.0.0.1', port: Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]) };
      const outside = await dig(server, ['www.example.org']);
      expect(outside.status).toBe('REFUSED');
      expect(outside.flags).not.toContain('ra');
      expect((await dig(server, ['app.mesh.internal'])).status).toBe('NOERROR');
    } finally {
      await stopCli(child);
    }
  });
});
