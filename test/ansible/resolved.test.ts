/**
 * The dns role on a host whose /etc/resolv.conf belongs to systemd-resolved
 * (a link into /run/systemd/resolve/): it must leave that file alone, point
 * resolved at the mesh DNS server with a drop-in, and give the server
 * resolved's upstream list. One host (a root prefix, as in
 * playbook.test.ts), only the meshplane and dns roles.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, tempDir } from '../support/run.js';
import { ANSIBLE_DIR, PLAYBOOK_DEADLINE_MS, changedOn, describeFailure, execStart, playbook } from './support.js';

const work = tempDir('ansible-resolved');
afterAll(() => work.remove());

describe('the dns role with systemd-resolved', () => {
  it('writes a resolved drop-in, keeps the stub link, and forwards to resolved upstreams', async () => {
    const root = join(work.path, 'hosts', 'r1');
    mkdirSync(join(root, 'etc'), { recursive: true });
    symlinkSync('/run/systemd/resolve/stub-resolv.conf', join(root, 'etc/resolv.conf'));
    writeFileSync(join(work.path, 'hosts.yml'), `all:\n  vars:\n    domain: corp.mesh\n  hosts:\n    r1:\n      ansible_connection: local\n      ansible_python_interpreter: /usr/bin/python3\n      meshplane_root: ${root}\n      ip: 198.18.4.50\n`);
    writeFileSync(join(work.path, 'services.yml'), 'web: {}\n');
    writeFileSync(
      join(work.path, 'play.yml'),
      `- name: Only the DNS part\n  hosts: all\n  gather_facts: false\n  roles:\n    - role: ${join(ANSIBLE_DIR, 'roles/dns')}\n`,
    );
    writeFileSync(
      join(work.path, 'vars.yml'),
      [
        'meshplane_service_manager: none',
        'meshplane_install_runtime: false',
        'meshplane_install_package: false',
        `meshplane_bin: ${process.execPath} ${CLI}`,
        `meshplane_controller_bin: ${process.execPath} ${CLI}`,
        `meshplane_controller_dir: ${join(work.path, 'controller')}`,
        `meshplane_services_file: ${join(work.path, 'services.yml')}`,
        `meshplane_inventory_file: ${join(work.path, 'hosts.yml')}`,
        'dns_search_extra: [example.org]',
        '',
      ].join('\n'),
    );
    const controller = { dir: work.path, services: join(work.path, 'services.yml'), inventory: join(work.path, 'hosts.yml'), varsFile: join(work.path, 'vars.yml') };
    const report = await playbook(controller, [], 'ansible-playbook', join(work.path, 'play.yml'));
    expect(report.status, describeFailure(report)).toBe(0);
    expect(readFileSync(join(root, 'etc/systemd/resolved.conf.d/meshplane.conf'), 'utf8')).toMatch(/\n\[Resolve\]\nDNS=127\.0\.0\.1\nDomains=corp\.mesh example\.org\n$/);
    expect(lstatSync(join(root, 'etc/resolv.conf')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(root, 'etc/resolv.conf'))).toBe('/run/systemd/resolve/stub-resolv.conf');
    expect(existsSync(join(root, 'etc/meshplane/upstream-resolv.conf'))).toBe(false);
    const argv = execStart(join(root, 'etc/systemd/system/meshplane-dns.service'));
    expect(argv.slice(argv.indexOf('--resolv-conf'), argv.indexOf('--resolv-conf') + 2)).toEqual(['--resolv-conf', '/run/systemd/resolve/resolv.conf']);
    // resolved is restarted (here: notified; with systemd the handler restarts it).
    expect(report.tasks.some((t) => t.name.endsWith(' : Restart systemd-resolved') && t.hosts.r1 !== undefined)).toBe(true);
    expect(changedOn(report, 'Point systemd-resolved at the DNS server')).toEqual(['r1']);
  }, PLAYBOOK_DEADLINE_MS + 60_000);
});
