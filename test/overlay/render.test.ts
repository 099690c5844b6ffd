/**
 * `meshplane overlay render` and `keygen` as an operator runs them: the
 * built CLI on real files. Bad input names the overlay and the host;
 * unchanged input rewrites nothing; keys are real keys (checked with wg,
 * openssl and tincd) and are never replaced by a rerun.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizePublicKey, publicKeyOf } from '../../src/overlay/testing.js';
import type { Topology } from '../../src/topology/index.js';
import { REPO_ROOT, meshplane, run, tempDir } from '../support/run.js';

const FIXTURE = join(REPO_ROOT, 'test/overlay/fixtures/golden');
const GOLDEN = join(REPO_ROOT, 'test/overlay/golden');
const KEYS = join(FIXTURE, 'keys');
const work = tempDir('overlay-render');
afterAll(() => work.remove());

const topologyFile = join(work.path, 'topology.json');
let topology: Topology;

beforeAll(() => {
  const result = meshplane(['compile', '-s', join(FIXTURE, 'services.yml'), '-i', join(FIXTURE, 'hosts.yml'), '-o', topologyFile]);
  expect(result.status, result.stderr).toBe(0);
  topology = JSON.parse(readFileSync(topologyFile, 'utf8')) as Topology;
});

let counter = 0;
function fresh(name: string): string {
  const dir = join(work.path, `${name}-${counter++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

type Editable = {
  hosts: Record<string, { overlays: Record<string, string> } & Record<string, unknown>>;
  overlays: { name: string; hosts: string[] }[];
  services: Record<string, { instances: ({ host: string } & Record<string, unknown>)[] }>;
};

/**
 * A copy of the fixture topology changed by `edit`, written to a file. The
 * facts the topology states twice follow the hosts' overlay addresses (as a
 * compile of the changed inventory would have them), so only what `edit`
 * meant to change is wrong or new.
 */
function editedTopology(edit: (t: Editable) => void): string {
  const copy = JSON.parse(JSON.stringify(topology)) as Editable;
  edit(copy);
  for (const overlay of copy.overlays) overlay.hosts = Object.keys(copy.hosts).filter((name) => overlay.name in copy.hosts[name]!.overlays).sort();
  for (const service of Object.values(copy.services)) for (const instance of service.instances) instance.overlays = { ...copy.hosts[instance.host]!.overlays };
  const file = join(fresh('topology'), 'topology.json');
  writeFileSync(file, JSON.stringify(copy));
  return file;
}

function render(topo: string, host: string, out: string, keys = KEYS, extra: string[] = []) {
  return meshplane(['overlay', 'render', '--topology', topo, '--host', host, '--out', out, '--keys', keys, ...extra]);
}

/** relative path -> mtime in ms, for every file under dir. */
function mtimes(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.set(path.slice(dir.length + 1), statSync(path).mtimeMs);
    }
  };
  walk(dir);
  return out;
}

describe('overlay render', () => {
  it('writes the files at their host paths under --out, with their modes, matching the golden copies', () => {
    const out = fresh('out');
    const result = render(topologyFile, 'app-1', out);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout.trim().split('\n').at(-1)).toBe('app-1: 8 written, 0 unchanged, 0 removed');
    for (const path of ['etc/tinc/vpn0/tinc.conf', 'etc/tinc/vpn0/hosts/app_2', 'etc/wireguard/wg0.conf', 'etc/nftables.d/meshplane.nft']) {
      expect(readFileSync(join(out, path), 'utf8'), path).toBe(readFileSync(join(GOLDEN, 'app-1', path), 'utf8'));
    }
    const mode = (path: string): number => statSync(join(out, path)).mode & 0o777;
    expect(mode('etc/tinc/vpn0/tinc-up')).toBe(0o755);
    expect(mode('etc/tinc/vpn0/tinc-down')).toBe(0o755);
    expect(mode('etc/tinc/vpn0/tinc.conf')).toBe(0o644);
    expect(mode('etc/wireguard/wg0.conf')).toBe(0o600);
  });

  it('rewrites nothing when rerun with unchanged inputs', () => {
    const out = fresh('out');
    expect(render(topologyFile, 'db-1', out).status).toBe(0);
    // Push every mtime into the past, so a rewrite could not hide in the same tick.
    const past = new Date(Date.now() - 3600_000);
    for (const path of mtimes(out).keys()) utimesSync(join(out, path), past, past);
    const before = mtimes(out);
    const again = render(topologyFile, 'db-1', out);
    expect(again.stdout).toBe('db-1: 0 written, 13 unchanged, 0 removed\n');
    expect(mtimes(out)).toEqual(before);
  });

  it('repairs a file edited by hand or with the wrong mode, and only that file', () => {
    const out = fresh('out');
    render(topologyFile, 'app-1', out);
    writeFileSync(join(out, 'etc/tinc/vpn0/tinc.conf'), 'Name = someone_else\n');
    chmodSync(join(out, 'etc/tinc/vpn0/tinc-up'), 0o644);
    const result = render(topologyFile, 'app-1', out);
    expect(result.stdout).toBe('written etc/tinc/vpn0/tinc-up\nwritten etc/tinc/vpn0/tinc.conf\napp-1: 2 written, 6 unchanged, 0 removed\n');
    expect(readFileSync(join(out, 'etc/tinc/vpn0/tinc.conf'), 'utf8')).toBe(readFileSync(join(GOLDEN, 'app-1/etc/tinc/vpn0/tinc.conf'), 'utf8'));
    expect(statSync(join(out, 'etc/tinc/vpn0/tinc-up')).mode & 0o777).toBe(0o755);
  });

  it('adding a host to an overlay changes, on the others, its hosts file, tinc.conf and the firewall only', () => {
    const out = fresh('out');
    render(topologyFile, 'app-1', out);
    // lone joins vpn0 (as "ip_vpn0: 100.64.30.4" in the inventory would do).
    const joined = editedTopology((t) => {
      (t.hosts.lone as { overlays: Record<string, string> }).overlays = { vpn0: '100.64.30.4' };
    });
    const keys = fresh('keys');
    for (const file of readdirSync(KEYS)) copyFileSync(join(KEYS, file), join(keys, file));
    copyFileSync(join(KEYS, 'db-1.vpn0.pub'), join(keys, 'lone.vpn0.pub'));
    const result = render(joined, 'app-1', out, keys);
    expect(result.stdout).toBe(
      'written etc/nftables.d/meshplane.nft\nwritten etc/tinc/vpn0/hosts/lone\nwritten etc/tinc/vpn0/tinc.conf\napp-1: 3 written, 6 unchanged, 0 removed\n',
    );
    expect(readFileSync(join(out, 'etc/tinc/vpn0/tinc.conf'), 'utf8')).toContain('ConnectTo = lone\n');
    expect(readFileSync(join(out, 'etc/tinc/vpn0/hosts/lone'), 'utf8')).toContain('Subnet = 100.64.30.4/32\n');
  });

  it('removes the files of a peer that left and of an overlay the host left, and keeps key files', () => {
    const out = fresh('out');
    render(topologyFile, 'app-1', out);
    writeFileSync(join(out, 'etc/tinc/vpn0/rsa_key.priv'), 'the private key stays\n');
    writeFileSync(join(out, 'etc/wireguard/wg0.key'), 'the private key stays\n');
    const left = editedTopology((t) => {
      const db = t.hosts['db-1'] as { overlays: Record<string, string> };
      db.overlays = { wg6: 'fd00:64:32::3' };
      const app = t.hosts['app-1'] as { overlays: Record<string, string> };
      app.overlays = { vpn0: '100.64.30.1' };
    });
    const result = render(left, 'app-1', out);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain('removed etc/tinc/vpn0/hosts/db_1\nremoved etc/wireguard/wg0.conf\n');
    expect(existsSync(join(out, 'etc/tinc/vpn0/hosts/db_1'))).toBe(false);
    expect(existsSync(join(out, 'etc/wireguard/wg0.conf'))).toBe(false);
    expect(readFileSync(join(out, 'etc/tinc/vpn0/rsa_key.priv'), 'utf8')).toBe('the private key stays\n');
    expect(readFileSync(join(out, 'etc/wireguard/wg0.key'), 'utf8')).toBe('the private key stays\n');
  });

  it('reads the public keys from DIR/etc/meshplane/overlay-keys when --keys is not given (where keygen puts them)', () => {
    const out = fresh('out');
    mkdirSync(join(out, 'etc/meshplane/overlay-keys'), { recursive: true });
    for (const file of readdirSync(KEYS)) copyFileSync(join(KEYS, file), join(out, 'etc/meshplane/overlay-keys', file));
    const result = meshplane(['overlay', 'render', '--topology', topologyFile, '--host', 'db-1', '--out', out]);
    expect(result.status, result.stderr).toBe(0);
    expect(readFileSync(join(out, 'etc/tinc/vpn1/hosts/gw_1'), 'utf8')).toBe(readFileSync(join(GOLDEN, 'db-1/etc/tinc/vpn1/hosts/gw_1'), 'utf8'));
    const missing = meshplane(['overlay', 'render', '--topology', topologyFile, '--host', 'db-1', '--out', fresh('out')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`/etc/meshplane/overlay-keys/app-1.vpn0.pub does not exist`);
  });

  it('prints a JSON report with --json', () => {
    const out = fresh('out');
    const result = render(topologyFile, 'gw-1', out, KEYS, ['--json']);
    expect(JSON.parse(result.stdout)).toEqual({
      written: ['etc/nftables.d/meshplane.nft', 'etc/tinc/vpn1/hosts/db_1', 'etc/tinc/vpn1/hosts/gw_1', 'etc/tinc/vpn1/tinc-down', 'etc/tinc/vpn1/tinc-up', 'etc/tinc/vpn1/tinc.conf', 'etc/wireguard/wg0.conf'],
      unchanged: [],
      removed: [],
    });
  });

  it('opens the service ports of gateway-endpoint services to the hosts of --gateway-group', () => {
    const out = fresh('out');
    const result = render(topologyFile, 'app-2', out, KEYS, ['--gateway-group', 'db']);
    expect(result.status, result.stderr).toBe(0);
    const nft = readFileSync(join(out, 'etc/nftables.d/meshplane.nft'), 'utf8');
    expect(nft).toContain('# hosts of group "db", on their own addresses\n\tset gateways_v4 {\n\t\ttype ipv4_addr\n\t\telements = { 198.18.3.3, 198.18.4.3 }');
  });
});

describe('overlay render: bad input names the overlay and the host', () => {
  function expectProblems(result: { status: number; stdout: string; stderr: string }, out: string, lines: string[]): void {
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`${lines.map((l) => `meshplane overlay render: error ${l}\n`).join('')}${lines.length} error(s); nothing was written\n`);
    expect(readdirSync(out)).toEqual([]);
  }

  /** A topology that breaks its contract is refused when read, naming the JSON path, for every host. */
  function expectRefused(result: { status: number; stdout: string; stderr: string }, out: string, code: string, line: string): void {
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`error ${code}: `);
    expect(result.stderr).toContain(line);
    expect(readdirSync(out)).toEqual([]);
  }

  it('two hosts with one overlay address', () => {
    const file = editedTopology((t) => {
      (t.hosts['db-1'] as { overlays: Record<string, string> }).overlays.vpn0 = '100.64.30.2';
    });
    const out = fresh('out');
    expectRefused(render(file, 'app-1', out), out, 'TOPOLOGY_ERR_INCONSISTENT', `${file}: hosts.db-1.overlays.vpn0: address 100.64.30.2 is also host app-2's`);
  });

  it('an address outside the overlay network', () => {
    const file = editedTopology((t) => {
      (t.hosts['app-2'] as { overlays: Record<string, string> }).overlays.vpn0 = '100.64.99.2';
    });
    const out = fresh('out');
    expectRefused(render(file, 'db-1', out), out, 'TOPOLOGY_ERR_INCONSISTENT', `${file}: hosts.app-2.overlays.vpn0: address 100.64.99.2 is outside the overlay's network 100.64.30.0/24`);
  });

  it('a missing public key for a peer, and a malformed one, all at once', () => {
    const keys = fresh('keys');
    for (const file of readdirSync(KEYS)) if (file !== 'db-1.vpn0.pub') copyFileSync(join(KEYS, file), join(keys, file));
    writeFileSync(join(keys, 'gw-1.wg0.pub'), 'not a key\n');
    const out = fresh('out');
    expectProblems(render(topologyFile, 'app-1', out, keys), out, [
      `OVERLAY_ERR_MISSING_KEY: overlay vpn0, host db-1: no public key for peer db-1: ${join(keys, 'db-1.vpn0.pub')} does not exist (run "meshplane overlay keygen" on db-1 and gather its .pub files into ${keys})`,
      `OVERLAY_ERR_BAD_KEY: overlay wg0, host gw-1: ${join(keys, 'gw-1.wg0.pub')} is not a base64 X25519 public key (WireGuard); run "meshplane overlay keygen" on gw-1 again`,
    ]);
  });

  it('a tinc key file holding a WireGuard key', () => {
    const keys = fresh('keys');
    for (const file of readdirSync(KEYS)) copyFileSync(join(KEYS, file), join(keys, file));
    copyFileSync(join(KEYS, 'app-1.wg0.pub'), join(keys, 'app-2.vpn0.pub'));
    const out = fresh('out');
    const result = render(topologyFile, 'db-1', out, keys);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('error OVERLAY_ERR_BAD_KEY: overlay vpn0, host app-2: ');
    expect(result.stderr).toContain('is not a PEM RSA public key (tinc)');
  });

  it('a host that is not in the topology, and an overlay the topology does not define', () => {
    const out = fresh('out');
    const unknown = render(topologyFile, 'app-9', out);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/^meshplane overlay render: error OVERLAY_ERR_UNKNOWN_HOST: host app-9: no such host in the topology \(it has 5 hosts: app-1, app-2, db-1, gw-1, lone\)\n/);
    const file = editedTopology((t) => {
      const gw = t.hosts['gw-1'] as { overlays: Record<string, string> };
      gw.overlays = Object.fromEntries(Object.entries({ ...gw.overlays, vpn9: '100.64.39.1' }).sort(([a], [b]) => (a < b ? -1 : 1)));
    });
    expectRefused(render(file, 'gw-1', out), out, 'TOPOLOGY_ERR_INCONSISTENT', `${file}: hosts.gw-1.overlays.vpn9: "vpn9" is not an overlay`);
  });

  it('refuses a broken topology for every host, not only the ones on the broken overlay', () => {
    // gw-1 is on wg0 only; a broken vpn0 still means the file is not one compile wrote.
    const file = editedTopology((t) => {
      (t.hosts['db-1'] as { overlays: Record<string, string> }).overlays.vpn0 = '100.64.30.2';
    });
    const out = fresh('out');
    expectRefused(render(file, 'gw-1', out), out, 'TOPOLOGY_ERR_INCONSISTENT', 'hosts.db-1.overlays.vpn0');
  });
});

describe('overlay keygen', () => {
  function keygen(host: string, root: string, keys: string, extra: string[] = []) {
    return meshplane(['overlay', 'keygen', '--topology', topologyFile, '--host', host, '--out', root, '--keys', keys, ...extra]);
  }

  it('makes a key pair per overlay of the host: private keys 0600 on the host, public keys in the keys directory', () => {
    const root = fresh('root');
    const keys = fresh('keys');
    const result = keygen('app-1', root, keys);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      `vpn0 (tinc): generated ${join(root, 'etc/tinc/vpn0/rsa_key.priv')}; public key ${join(keys, 'app-1.vpn0.pub')} (written)\n` +
        `wg0 (wireguard): generated ${join(root, 'etc/wireguard/wg0.key')}; public key ${join(keys, 'app-1.wg0.pub')} (written)\n`,
    );
    expect(statSync(join(root, 'etc/tinc/vpn0/rsa_key.priv')).mode & 0o777).toBe(0o600);
    expect(statSync(join(root, 'etc/wireguard/wg0.key')).mode & 0o777).toBe(0o600);
    expect(readdirSync(keys).sort()).toEqual(['app-1.vpn0.pub', 'app-1.wg0.pub']);
  });

  it('makes keys the real tools agree with: wg pubkey and openssl derive the same public keys', () => {
    const root = fresh('root');
    const keys = fresh('keys');
    keygen('app-1', root, keys);
    const wgPub = run('sh', ['-c', 'wg pubkey < "$1"', 'sh', join(root, 'etc/wireguard/wg0.key')]);
    expect(wgPub.status, wgPub.stderr).toBe(0);
    expect(wgPub.stdout).toBe(readFileSync(join(keys, 'app-1.wg0.pub'), 'utf8'));
    const rsaPub = run('openssl', ['rsa', '-in', join(root, 'etc/tinc/vpn0/rsa_key.priv'), '-RSAPublicKey_out']);
    expect(rsaPub.status, rsaPub.stderr).toBe(0);
    expect(rsaPub.stdout).toBe(readFileSync(join(keys, 'app-1.vpn0.pub'), 'utf8'));
    expect(run('openssl', ['rsa', '-in', join(root, 'etc/tinc/vpn0/rsa_key.priv'), '-noout', '-text']).stdout).toContain('Private-Key: (2048 bit, 2 primes)');
  });

  it('keeps existing private keys on a rerun and rewrites nothing', () => {
    const root = fresh('root');
    const keys = fresh('keys');
    keygen('db-1', root, keys);
    const past = new Date(Date.now() - 3600_000);
    const files = [
      join(root, 'etc/tinc/vpn0/rsa_key.priv'),
      join(root, 'etc/tinc/vpn1/rsa_key.priv'),
      join(root, 'etc/wireguard/wg6.key'),
      join(keys, 'db-1.vpn0.pub'),
      join(keys, 'db-1.vpn1.pub'),
      join(keys, 'db-1.wg6.pub'),
    ];
    for (const file of files) utimesSync(file, past, past);
    const before = files.map((f) => [readFileSync(f, 'utf8'), statSync(f).mtimeMs]);
    const again = keygen('db-1', root, keys);
    expect(again.stdout).toBe(
      `vpn0 (tinc): kept ${join(root, 'etc/tinc/vpn0/rsa_key.priv')}; public key ${join(keys, 'db-1.vpn0.pub')}\n` +
        `vpn1 (tinc): kept ${join(root, 'etc/tinc/vpn1/rsa_key.priv')}; public key ${join(keys, 'db-1.vpn1.pub')}\n` +
        `wg6 (wireguard): kept ${join(root, 'etc/wireguard/wg6.key')}; public key ${join(keys, 'db-1.wg6.pub')}\n`,
    );
    expect(files.map((f) => [readFileSync(f, 'utf8'), statSync(f).mtimeMs])).toEqual(before);
  });

  it('writes the public key again from the kept private key when the .pub file is lost', () => {
    const root = fresh('root');
    const keys = fresh('keys');
    keygen('gw-1', root, keys);
    const pub = readFileSync(join(keys, 'gw-1.wg0.pub'), 'utf8');
    const otherKeys = fresh('keys');
    const result = keygen('gw-1', root, otherKeys);
    expect(result.stdout).toContain('wg0 (wireguard): kept ');
    expect(readFileSync(join(otherKeys, 'gw-1.wg0.pub'), 'utf8')).toBe(pub);
  });

  it('refuses to replace a private key file that holds something else, and then writes no key at all', () => {
    const root = fresh('root');
    const keys = fresh('keys');
    mkdirSync(join(root, 'etc/wireguard'), { recursive: true });
    writeFileSync(join(root, 'etc/wireguard/wg0.key'), 'garbage\n');
    // gw-1 is on vpn1 too, whose key pair would be new: it is not made either.
    const result = keygen('gw-1', root, keys);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `meshplane overlay keygen: error OVERLAY_ERR_BAD_KEY: overlay wg0, host gw-1: ${join(root, 'etc/wireguard/wg0.key')} exists but is not a wireguard private key; move it away to generate a new one\n1 error(s); nothing was written\n`,
    );
    expect(readFileSync(join(root, 'etc/wireguard/wg0.key'), 'utf8')).toBe('garbage\n');
    expect(existsSync(join(root, 'etc/tinc'))).toBe(false);
    expect(readdirSync(keys)).toEqual([]);
  });

  it('says so for a host on no overlay', () => {
    const result = keygen('lone', fresh('root'), fresh('keys'));
    expect(result.stdout).toBe('the host is on no overlay: no keys needed\n');
  });

  it('accepts the public key that tincd -K writes, for operators who make tinc keys with tincd', () => {
    const dir = fresh('tincd');
    mkdirSync(join(dir, 'hosts'));
    writeFileSync(join(dir, 'tinc.conf'), 'Name = x\n');
    const made = run('tincd', ['-c', dir, '-K']);
    expect(made.status, made.stderr).toBe(0);
    const fromTincd = normalizePublicKey('tinc', readFileSync(join(dir, 'hosts/x'), 'utf8'));
    expect(fromTincd).toBeDefined();
    expect(`${fromTincd}\n`).toBe(publicKeyOf('tinc', readFileSync(join(dir, 'rsa_key.priv'), 'utf8')));
  });
});

describe('overlay command line', () => {
  it('needs render or keygen, --host and --out (exit 2 with the usage)', () => {
    const none = meshplane(['overlay']);
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('error CLI_ERR_USAGE: expected "render" or "keygen"');
    expect(none.stderr).toContain('meshplane overlay render --topology FILE --host NAME --out DIR');
    const noHost = meshplane(['overlay', 'render', '--topology', topologyFile, '--out', fresh('out')]);
    expect(noHost.status).toBe(2);
    expect(noHost.stderr).toContain('--host NAME is required');
    const noOut = meshplane(['overlay', 'keygen', '--topology', topologyFile, '--host', 'app-1']);
    expect(noOut.status).toBe(2);
    expect(noOut.stderr).toContain('--out DIR is required');
  });

  it('is listed in meshplane --help and explains itself with --help', () => {
    expect(meshplane(['--help']).stdout).toMatch(/\n {2}overlay +render tinc\/WireGuard\/nftables files/);
    const help = meshplane(['overlay', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--keys DIR');
  });

  it('compiles the inputs itself when given -s/-i instead of --topology', () => {
    const out = fresh('out');
    const result = meshplane(['overlay', 'render', '-s', join(FIXTURE, 'services.yml'), '-i', join(FIXTURE, 'hosts.yml'), '--host', 'lone', '--out', out, '--keys', KEYS]);
    expect(result.status, result.stderr).toBe(0);
    expect(readFileSync(join(out, 'etc/nftables.d/meshplane.nft'), 'utf8')).toBe(readFileSync(join(GOLDEN, 'lone/etc/nftables.d/meshplane.nft'), 'utf8'));
  });
});
