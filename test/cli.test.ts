/**
 * The `meshplane` command as operators run it: the built binary in a child
 * process, real files, exit codes and output; the Ansible export is fed to
 * the real ansible-inventory.
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAsync } from './support/dns.js';
import { waitForOutput } from './support/netns.js';
import { CLI, REPO_ROOT, ansibleInventory, meshplane, run, runWithoutBlocking, tempDir } from './support/run.js';

const EXAMPLE = ['-s', join(REPO_ROOT, 'services.yml.example'), '-i', join(REPO_ROOT, 'hosts.yml.example')];
const work = tempDir('cli');
afterAll(() => work.remove());

beforeAll(() => {
  copyFileSync(join(REPO_ROOT, 'services.yml.example'), join(work.path, 'services.yml'));
  copyFileSync(join(REPO_ROOT, 'hosts.yml.example'), join(work.path, 'hosts.yml'));
});

describe('meshplane check', () => {
  it('passes the shipped example and summarizes it', () => {
    const result = meshplane(['check', ...EXAMPLE]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toBe('ok: 5 hosts, 4 services, 6 instances, 2 overlays, 0 warning(s)\n');
  });

  it('reads ./services.yml and ./hosts.yml by default', () => {
    const result = meshplane(['check'], { cwd: work.path });
    expect(result.status).toBe(0);
  });

  it('prints every error of a broken file with file:line:col and exits 1', () => {
    const dir = tempDir('broken');
    try {
      writeFileSync(join(dir.path, 'hosts.yml'), 'all:\n  children:\n    web:\n      hosts:\n        h1: {ip: 198.18.0.1}\n        h2: {ip: 198.18.0.1}\n');
      writeFileSync(
        join(dir.path, 'services.yml'),
        ['web:', '  scheduling_group: wbe', '  num_instance: 2', 'db:', '  ports: [5432]', 'db2:', '  ports: [5432]', ''].join('\n'),
      );
      const result = meshplane(['check'], { cwd: dir.path });
      expect(result.status).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr.trim().split('\n')).toEqual([
        'hosts.yml:6:18: error CONFIG_ERR_DUPLICATE_ADDRESS h2: address 198.18.0.1 is also used by host "h1" (expected every address owned by one host only)',
        'services.yml:2:21: error CONFIG_ERR_UNKNOWN_GROUP web.scheduling_group: no inventory group "wbe" (did you mean "web"?) (expected a group of hosts.yml)',
        'services.yml:3:3: error CONFIG_ERR_UNKNOWN_KEY web.num_instance: unknown key "num_instance" (did you mean "num_instances"?) (expected one of enabled, scheduling_group, scheduling_groups, num_instances, master_election, master_scheduling_group, schedule_with, ports, dns_max_answers, service_credentials, gateway_endpoints)',
        'services.yml:7:11: error CONFIG_ERR_PORT_CONFLICT db2.ports: port 5432 is already used by service "db" (ports are global in the mesh) (expected a port no other service or overlay uses)',
        '4 error(s), 0 warning(s)',
      ]);
    } finally {
      dir.remove();
    }
  });

  it('reports diagnostics as JSON for tools', () => {
    const dir = tempDir('json');
    try {
      writeFileSync(join(dir.path, 'hosts.yml'), 'all:\n  hosts:\n    h1: {ip: 198.18.0.1}\n');
      writeFileSync(join(dir.path, 'services.yml'), 'web:\n  portz: [80]\n');
      const result = meshplane(['check', '--format', 'json'], { cwd: dir.path });
      expect(result.status).toBe(1);
      const report = JSON.parse(result.stdout) as { ok: boolean; diagnostics: { code: string; loc: { line: number; col: number } }[] };
      expect(report.ok).toBe(false);
      expect(report.diagnostics).toMatchObject([{ code: 'CONFIG_ERR_UNKNOWN_KEY', loc: { line: 2, col: 3 } }]);
    } finally {
      dir.remove();
    }
  });

  it('names a missing input file', () => {
    const result = meshplane(['check', '-s', 'nope.yml'], { cwd: work.path });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('nope.yml:1:1: error CONFIG_ERR_FILE_NOT_FOUND');
  });
});

describe('meshplane compile', () => {
  it('prints the Topology JSON', () => {
    const result = meshplane(['compile', ...EXAMPLE]);
    expect(result.status).toBe(0);
    const topology = JSON.parse(result.stdout) as { format_version: number; domain: string; services: Record<string, unknown> };
    expect(topology.format_version).toBe(1);
    expect(topology.domain).toBe('mesh.internal');
    expect(Object.keys(topology.services)).toEqual(['db', 'db-backup', 'gateway', 'web']);
  });

  it('writes --out atomically and rewrites identical bytes on a rerun', () => {
    const out = join(work.path, 'out', 'topology.json');
    expect(meshplane(['compile', '-o', out], { cwd: work.path }).status).toBe(0);
    const first = readFileSync(out, 'utf8');
    expect(meshplane(['compile', '-o', out], { cwd: work.path }).status).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(first);
    expect(meshplane(['compile', '-o', out, '-s', 'missing.yml'], { cwd: work.path }).status).toBe(1);
    expect(readFileSync(out, 'utf8')).toBe(first);
  });

  it('emits an Ansible dynamic inventory that ansible-inventory accepts', () => {
    const script = join(work.path, 'meshplane-inventory');
    writeFileSync(
      script,
      `#!/bin/sh\n# Ansible script inventory: --list prints everything, --host nothing extra.\nif [ "$1" = "--host" ]; then echo '{}'; exit 0; fi\nexec "${process.execPath}" "${join(REPO_ROOT, 'dist/cli/bin.js')}" compile --format ansible -s "${join(work.path, 'services.yml')}" -i "${join(work.path, 'hosts.yml')}"\n`,
    );
    chmodSync(script, 0o755);
    const result = ansibleInventory(['-i', script, '--list'], work.path);
    expect(result.status, result.stderr).toBe(0);
    const inventory = JSON.parse(result.stdout) as Record<string, { hosts?: string[] }> & { _meta: { hostvars: Record<string, Record<string, unknown>> } };
    const compiled = JSON.parse(meshplane(['compile'], { cwd: work.path }).stdout) as { services: Record<string, { instances: { host: string }[]; master: string | null }> };
    for (const [name, service] of Object.entries(compiled.services)) {
      // Ansible group names: dashes become underscores (ansible-inventory warns about dashes).
      const group = name.replaceAll('-', '_');
      expect(inventory[group]?.hosts?.sort(), `group ${group}`).toEqual(service.instances.map((i) => i.host).sort());
    }
    expect(inventory['db_master']?.hosts).toEqual([compiled.services.db?.master]);
    expect(inventory._meta.hostvars.host2).toMatchObject({ meshplane_domain: 'mesh.internal', meshplane_overlays: { vpn0: '100.64.0.2', wg0: '100.64.1.2' }, meshplane_shard: 'a' });
    expect(Object.keys(inventory._meta.hostvars).sort()).toEqual(['gw1', 'host1', 'host2', 'host3', 'host4']);
  });

  it('stops quietly when the reader closes the pipe early', () => {
    // Output far larger than a pipe buffer, so the writer really hits EPIPE.
    const dir = tempDir('pipe');
    try {
      const hosts = Array.from({ length: 3000 }, (_, i) => `    h${i}: {ip: 198.18.${i >> 8}.${i & 255}}`).join('\n');
      writeFileSync(join(dir.path, 'hosts.yml'), `all:\n  hosts:\n${hosts}\n`);
      writeFileSync(join(dir.path, 'services.yml'), 'web: {}\n');
      const result = run('bash', ['-c', `set -o pipefail; "${process.execPath}" "${join(REPO_ROOT, 'dist/cli/bin.js')}" compile | head -c 1`], { cwd: dir.path });
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe('{');
      expect(result.status).toBe(0);
    } finally {
      dir.remove();
    }
  });

  it('reports phase timings and peak memory with --stats', () => {
    const result = meshplane(['compile', '--stats', '-o', join(work.path, 'stats.json')], { cwd: work.path });
    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/^stats: read\+validate [\d.]+ ms, schedule\+build [\d.]+ ms, serialize\+write [\d.]+ ms, peak rss [\d.]+ MiB\n$/);
  });
});

describe('meshplane show', () => {
  it('shows a service: instances, master and what each view resolves', () => {
    const result = meshplane(['show', 'service', 'db'], { cwd: work.path });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('service db.mesh.internal');
    expect(result.stdout).toMatch(/master: +host\d \(db-master\.mesh\.internal\)/);
    expect(result.stdout).toMatch(/^INSTANCE +SHARD +IPS +OVERLAYS +MASTER$/m);
    expect(result.stdout).toMatch(/^wg0 +host3 +100\.64\.1\.2, 100\.64\.1\.3$/m);
    expect(result.stdout).toMatch(/^- +host4 +127\.0\.1\.2, 127\.0\.1\.3$/m);
  });

  it('shows a host: addresses and what it resolves for every service', () => {
    const result = meshplane(['show', 'host', 'host1'], { cwd: work.path });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('host host1 (host1.mesh.internal)');
    expect(result.stdout).toMatch(/^web +yes +100\.64\.0\.1$/m);
    expect(result.stdout).toMatch(/^gateway +100\.64\.0\.10$/m);
  });

  it('reads a compiled topology with --topology and prints JSON with --json', () => {
    const file = join(work.path, 'shown.json');
    expect(meshplane(['compile', '-o', file], { cwd: work.path }).status).toBe(0);
    const result = meshplane(['show', 'host', 'gw1', '--topology', file, '--json'], { cwd: work.path });
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ name: 'gw1', public_ips: ['127.0.2.10'] });
  });

  it('suggests the closest name for an unknown service', () => {
    const result = meshplane(['show', 'service', 'dbb'], { cwd: work.path });
    expect(result.status).toBe(1);
    expect(result.stderr).toBe('meshplane show: error CLI_ERR_NOT_FOUND: no service "dbb" in the topology (did you mean "db"?)\n');
  });
});

describe('command line', () => {
  it('exits 2 with usage for unknown commands and options', () => {
    const unknown = meshplane(['frobnicate']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('error CLI_ERR_USAGE: unknown command "frobnicate"');
    const option = meshplane(['check', '--bogus']);
    expect(option.status).toBe(2);
    expect(option.stderr).toContain("meshplane check: error CLI_ERR_USAGE: Unknown option '--bogus'");
    expect(meshplane(['show', 'thing']).status).toBe(2);
  });

  it('prints help for every command', () => {
    const overview = meshplane(['help']);
    expect(overview.status).toBe(0);
    for (const command of ['check', 'compile', 'show', 'dns', 'up']) {
      expect(overview.stdout).toContain(`  ${command}`);
      const help = meshplane([command, '--help']);
      expect(help.status).toBe(0);
      expect(help.stdout).toContain(`meshplane ${command}`);
    }
  });

  it('runs as "npx meshplane" from the package', async () => {
    const result = await runWithoutBlocking('npx', ['--no-install', 'meshplane', '--version']);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim()).toMatch(/^meshplane \d+\.\d+\.\d+$/);
  }, 300_000); // npm's own start-up alone took minutes beside CPU hogs

  it('brings up the example mesh with no inputs in the current directory (npm start), serving its DNS', async () => {
    const dir = tempDir('up');
    const child = spawn(process.execPath, [CLI, 'start', '--dns-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { cwd: dir.path });
    try {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      await waitForOutput(child, 'Ctrl-C stops it');
      expect(out).toContain('services.yml.example');
      expect(out).toMatch(/^host2 +127\.0\.1\.2 +db\*?, db-backup$/m);
      const topology = JSON.parse(readFileSync(join(dir.path, '.meshplane', 'topology.json'), 'utf8')) as { domain: string };
      expect(topology.domain).toBe('mesh.internal');
      // Run the first dig command it suggests, as printed.
      const suggestion = /^ {2}(dig .*?) +#/m.exec(out)![1]!;
      const answer = await runAsync('sh', ['-c', suggestion]);
      expect(answer.status).toBe(0);
      expect(answer.stdout.trim().split('\n').length).toBeGreaterThan(0);
      expect(answer.stdout).toMatch(/^\d+\.\d+\.\d+\.\d+$/m);
      // And every curl command it prints goes through the gateway to the demo backend.
      // (The metrics and admin lines, `curl -sS ...`, are run by gateway-up.test.ts.)
      const curls = [...out.matchAll(/^ {2}(curl .*)$/gm)].map((m) => m[1]!).filter((command) => !command.startsWith('curl -sS '));
      expect(curls.length).toBe(3);
      for (const command of curls) {
        const result = await runAsync('sh', ['-c', `${command} -sS --max-time 10`]);
        expect(result.stdout, `${command}: ${result.stderr}`).toMatch(/^hello from web on host1: you are 127\.0\.0\.1:\d+ \(PROXY v[12](, TLS)?\)/);
      }
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      dir.remove();
    }
    expect(child.exitCode).toBe(0);
  });
});
