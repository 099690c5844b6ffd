/**
 * The overlays with real daemons: four mesh hosts and one outsider as
 * network namespaces, configured only with what `meshplane overlay keygen`
 * and `meshplane overlay render` produce. tincd runs vpn0; wireguard-go plus
 * `wg setconf` runs wg0 (no kernel module here: the tincd and wireguard-go
 * daemons are real, only `wg-quick up` is replaced by its steps, see
 * startWireguard). Then the firewall is loaded into the namespaces, and
 * finally the mesh DNS server answers `getent hosts` in each of them.
 *
 * Needs root (CI runs as root). Namespaces are named mpov-*, removed at the
 * start (leftovers of a crashed run) and at the end.
 */
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT, meshplane, tempDir } from '../support/run.js';
import { Lab, inNs, must, mustInNs, nsName, waitFor } from './support/lab.js';
import { SOON_MS } from '../support/wait.js';

const FIXTURES = join(REPO_ROOT, 'test/overlay/fixtures/lab');
const ECHO = join(REPO_ROOT, 'test/overlay/support/tcp-echo.mjs');
const SERVICE_PORT = '7000';
/** web, on h1 only, has a gateway endpoint; h3 is the gateway host. */
const GATEWAY_SERVICE_PORT = '7001';

const MESH = ['h1', 'h2', 'h3', 'h4'] as const;
type Host = (typeof MESH)[number];
const PUBLIC: Record<Host | 'out', string> = { h1: '198.18.3.1', h2: '198.18.3.2', h3: '198.18.3.3', h4: '198.18.3.4', out: '198.18.3.9' };
const VPN0: Partial<Record<Host, string>> = { h1: '100.64.30.1', h2: '100.64.30.2', h3: '100.64.30.3' };
const WG0: Partial<Record<Host, string>> = { h1: '100.64.31.1', h2: '100.64.31.2', h4: '100.64.31.4' };
/**
 * The address each host should use for each other host, as the issue states
 * the rule: the overlay they share (vpn0 before wg0 by name), else the public
 * address. Written out by hand from the inventory above, not computed.
 */
const SEEN_BY: Record<Host, Record<Host, string>> = {
  h1: { h1: '100.64.30.1', h2: '100.64.30.2', h3: '100.64.30.3', h4: '100.64.31.4' },
  h2: { h1: '100.64.30.1', h2: '100.64.30.2', h3: '100.64.30.3', h4: '100.64.31.4' },
  h3: { h1: '100.64.30.1', h2: '100.64.30.2', h3: '100.64.30.3', h4: '198.18.3.4' },
  h4: { h1: '100.64.31.1', h2: '100.64.31.2', h3: '198.18.3.3', h4: '100.64.31.4' },
};

const work = tempDir('overlay-lab');
const lab = new Lab();
const topologyFile = join(work.path, 'topology.json');
const keysDir = join(work.path, 'keys');
/** The same network with h4 on vpn0 and h3 on wg0: for configurations the members must refuse. */
const rogueTopology = join(work.path, 'rogue-topology.json');
const rogueKeys = join(work.path, 'rogue-keys');
const rootOf = (host: string): string => join(work.path, 'root', host);
const logOf = (name: string): string => join(work.path, `${name}.log`);
const tincd = new Map<string, ChildProcess>();
const wireguard = new Map<string, ChildProcess>();

function pairs(members: readonly Host[]): [Host, Host][] {
  return members.flatMap((a) => members.filter((b) => b !== a).map((b): [Host, Host] => [a, b]));
}

function ping(from: string, address: string): boolean {
  return inNs(from, ['ping', '-c', '1', '-W', '1', address]).status === 0;
}

/**
 * Sends a line to the echo service at address:port from `from`; the reply names the host that answered.
 * The default timeout is a ceiling for an answer that should come, on a busy machine too; a check
 * that the firewall drops the packets passes a short one (a drop never answers, however long).
 */
function ask(from: string, address: string, port = SERVICE_PORT, timeoutMs = 10_000): { ok: boolean; reply: string } {
  const result = inNs(from, [process.execPath, ECHO, 'ask', address, port, `from-${from}`, String(timeoutMs)]);
  return { ok: result.status === 0, reply: result.stdout.trim() };
}

function canConnect(from: string, address: string, port: string, timeoutMs = 10_000): boolean {
  return inNs(from, [process.execPath, ECHO, 'connect', address, port, String(timeoutMs)]).status === 0;
}

function cli(args: string[]): string {
  const result = meshplane(args);
  if (result.status !== 0) throw new Error(`meshplane ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
}

function startTinc(host: string, root: string, name = `tincd-${host}`): ChildProcess {
  const child = lab.start(name, host, ['tincd', '-D', '-d1', '-c', join(root, 'etc/tinc/vpn0'), `--pidfile=${join(work.path, `${name}.pid`)}`, `--logfile=${logOf(name)}`], logOf(`${name}-stdio`));
  tincd.set(name, child);
  return child;
}

function nsenter(pid: number, script: string): string {
  return must('nsenter', ['-t', String(pid), '-m', '-n', 'sh', '-c', script]);
}

/**
 * What `wg-quick up wg0` does, step by step, with the rendered wg0.conf.
 * wireguard-go keeps its control socket in /run/wireguard, which all
 * namespaces share, so each daemon gets a private mount namespace with its
 * own /run, and /etc/wireguard bind-mounted from the host's rendered root
 * (so the file and the key are where the configuration says they are).
 */
async function startWireguard(host: string, root: string, name = `wireguard-${host}`): Promise<ChildProcess> {
  const script = 'mount --bind "$1" /etc/wireguard && mount -t tmpfs tmpfs /run && exec wireguard-go -f wg0';
  const child = lab.start(name, host, ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, 'sh', join(root, 'etc/wireguard')], logOf(name));
  wireguard.set(name, child);
  const pid = child.pid as number;
  const socketReady = await waitFor(() => existsSync(`/proc/${pid}/root/run/wireguard/wg0.sock`), SOON_MS, 50);
  if (!socketReady) throw new Error(`wireguard-go in ${host} did not create its socket: ${readFileSync(logOf(name), 'utf8')}`);
  const conf = readFileSync(join(root, 'etc/wireguard/wg0.conf'), 'utf8');
  const value = (key: string): string | undefined => new RegExp(`^${key} = (.+)$`, 'm').exec(conf)?.[1];
  // wg-quick's own parser drops the keys that only wg-quick understands.
  nsenter(pid, 'wg-quick strip wg0 | wg setconf wg0 /dev/stdin');
  const address = value('Address');
  const mtu = value('MTU');
  const postUp = value('PostUp');
  if (address === undefined || mtu === undefined || postUp === undefined) throw new Error(`wg0.conf lacks Address, MTU or PostUp:\n${conf}`);
  must('ip', ['-n', nsName(host), 'addr', 'add', address, 'dev', 'wg0']);
  must('ip', ['-n', nsName(host), 'link', 'set', 'wg0', 'mtu', mtu, 'up']);
  nsenter(pid, postUp.replace(/%i/g, 'wg0'));
  return child;
}

/** Runs a bash script beside the host's wireguard-go (its network and mount namespaces). */
function besideWireguard(host: string, script: string): string {
  const child = [...wireguard.entries()].find(([name, c]) => name.endsWith(`-${host}`) && lab.isRunning(c))?.[1];
  if (child?.pid === undefined) throw new Error(`no wireguard-go running in ${host}`);
  return must('nsenter', ['-t', String(child.pid), '-m', '-n', 'bash', '-c', script]);
}

function wg(host: string, args: string): string {
  return besideWireguard(host, `wg ${args}`);
}

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('the overlay daemon tests need root (network namespaces, tun devices); CI runs them as root');
  Lab.removeLeftovers();
  lab.build(Object.fromEntries(Object.entries(PUBLIC).map(([host, ip]) => [host, `${ip}/24`])));

  cli(['compile', '-s', join(FIXTURES, 'services.yml'), '-i', join(FIXTURES, 'hosts.yml'), '-o', topologyFile]);
  cli(['compile', '-s', join(FIXTURES, 'services.yml'), '-i', join(FIXTURES, 'rogue-hosts.yml'), '-o', rogueTopology]);
  mkdirSync(rogueKeys, { recursive: true });
  for (const host of MESH) cli(['overlay', 'keygen', '--topology', topologyFile, '--host', host, '--out', rootOf(host), '--keys', keysDir]);
  for (const host of MESH) cli(['overlay', 'render', '--topology', topologyFile, '--host', host, '--out', rootOf(host), '--keys', keysDir]);

  for (const host of MESH) lab.start(`echo-${host}`, host, [process.execPath, ECHO, 'serve', SERVICE_PORT, host], logOf(`echo-${host}`));
  lab.start('echo-web-h1', 'h1', [process.execPath, ECHO, 'serve', GATEWAY_SERVICE_PORT, 'web-h1'], logOf('echo-web-h1'));
}, 120_000);

afterAll(async () => {
  await lab.destroy();
  work.remove();
}, 60_000);

describe('tinc (vpn0: h1 h2 h3)', () => {
  it('every pair of members reaches the other\'s overlay address by ping and TCP', async () => {
    for (const host of ['h1', 'h2', 'h3'] as const) startTinc(host, rootOf(host));
    for (const [a, b] of pairs(['h1', 'h2', 'h3'])) {
      const address = VPN0[b] as string;
      expect(await waitFor(() => ping(a, address), SOON_MS), `${a} pings ${b} at ${address}`).toBe(true);
      expect(ask(a, address), `${a} -> ${b} over vpn0`).toEqual({ ok: true, reply: `${b} from-${a}` });
    }
    // tinc-up applied the overlay's MTU, and no script failed.
    expect(mustInNs('h1', ['ip', 'link', 'show', 'vpn0'])).toContain('mtu 1400');
    for (const host of ['h1', 'h2', 'h3']) expect(readFileSync(logOf(`tincd-${host}`), 'utf8')).not.toMatch(/Script .* (exited with non-zero status|was killed|terminated abnormally)/);
  }, 60_000);

  it('tinc-up puts the overlay address and MTU on $INTERFACE, tinc-down takes them off again', () => {
    // The rendered scripts themselves, run as tincd runs them, on a stand-in
    // tun device in the outsider's namespace (tincd's own goes away with tincd).
    const dir = join(rootOf('h2'), 'etc/tinc/vpn0');
    mustInNs('out', ['ip', 'tuntap', 'add', 'dev', 'vpn0', 'mode', 'tun']);
    try {
      const env = ['env', 'INTERFACE=vpn0'];
      mustInNs('out', [...env, join(dir, 'tinc-up')]);
      const up = mustInNs('out', ['ip', 'addr', 'show', 'dev', 'vpn0']);
      expect(up).toContain('inet 100.64.30.2/24 ');
      expect(up).toContain('mtu 1400');
      expect(up).toMatch(/<[^>]*\bUP\b/);
      // Running it twice (tincd restarted) is fine.
      mustInNs('out', [...env, join(dir, 'tinc-up')]);
      mustInNs('out', [...env, join(dir, 'tinc-down')]);
      const down = mustInNs('out', ['ip', 'addr', 'show', 'dev', 'vpn0']);
      expect(down).not.toContain('100.64.30.2');
      expect(down).not.toMatch(/<[^>]*\bUP\b/);
    } finally {
      inNs('out', ['ip', 'link', 'del', 'vpn0']);
    }
  });

  it('a host not on vpn0 cannot reach it, even with a tinc configuration and key of its own', async () => {
    // h4 as if it were a member: its own fresh key, the members' real public keys.
    const rogueRoot = join(work.path, 'rogue', 'h4');
    cli(['overlay', 'keygen', '--topology', rogueTopology, '--host', 'h4', '--out', rogueRoot, '--keys', rogueKeys]);
    for (const host of ['h1', 'h2', 'h3']) copyFileSync(join(keysDir, `${host}.vpn0.pub`), join(rogueKeys, `${host}.vpn0.pub`));
    cli(['overlay', 'render', '--topology', rogueTopology, '--host', 'h4', '--out', rogueRoot, '--keys', rogueKeys]);
    const rogue = startTinc('h4', rogueRoot, 'tincd-rogue-h4');
    try {
      // The rogue daemon is up with its overlay address and really tries to connect...
      expect(await waitFor(() => inNs('h4', ['ip', 'addr', 'show', 'vpn0']).stdout.includes('100.64.30.4/24'), SOON_MS)).toBe(true);
      // ...and the members turn it away: they have no hosts/h4.
      expect(await waitFor(() => readFileSync(logOf('tincd-h1'), 'utf8').includes('unknown identity (h4)'), SOON_MS)).toBe(true);
      for (const address of Object.values(VPN0)) expect(ping('h4', address), `h4 pings ${address}`).toBe(false);
      expect(ask('h4', VPN0.h1 as string, SERVICE_PORT, 1500).ok).toBe(false);
    } finally {
      await lab.stop(rogue);
    }
  }, 60_000);
});

describe('WireGuard (wg0: h1 h2 h4)', () => {
  it('every pair of members reaches the other\'s overlay address by ping and TCP', async () => {
    for (const host of ['h1', 'h2', 'h4'] as const) await startWireguard(host, rootOf(host));
    for (const [a, b] of pairs(['h1', 'h2', 'h4'])) {
      const address = WG0[b] as string;
      expect(await waitFor(() => ping(a, address), SOON_MS), `${a} pings ${b} at ${address}`).toBe(true);
      expect(ask(a, address), `${a} -> ${b} over wg0`).toEqual({ ok: true, reply: `${b} from-${a}` });
    }
    expect(mustInNs('h4', ['ip', 'link', 'show', 'wg0'])).toContain('mtu 1380');
    // PostUp loaded the host's own key: its public half is the one keygen published.
    expect(wg('h1', 'show wg0 public-key').trim()).toBe(readFileSync(join(keysDir, 'h1.wg0.pub'), 'utf8').trim());
    expect(wg('h1', 'show wg0 persistent-keepalive')).toMatch(/\t15\n/);
  }, 60_000);

  it('reloads with the command the README gives and keeps its private key', async () => {
    const readme = readFileSync(join(REPO_ROOT, 'src/overlay/README.md'), 'utf8');
    const reload = /^wg syncconf wg0 .*$/m.exec(readme)?.[0];
    expect(reload).toBeDefined();
    const publicKey = readFileSync(join(keysDir, 'h1.wg0.pub'), 'utf8').trim();
    // Why the README's command is needed: the file only refers to the key.
    besideWireguard('h1', 'wg syncconf wg0 <(wg-quick strip wg0)');
    expect(wg('h1', 'show wg0 public-key').trim()).toBe('(none)');
    besideWireguard('h1', reload as string);
    expect(wg('h1', 'show wg0 public-key').trim()).toBe(publicKey);
    expect(await waitFor(() => ping('h1', WG0.h2 as string), SOON_MS)).toBe(true);
  }, 60_000);

  it('a host not on wg0 cannot reach it, even with a WireGuard configuration and key of its own', async () => {
    const rogueRoot = join(work.path, 'rogue', 'h3');
    cli(['overlay', 'keygen', '--topology', rogueTopology, '--host', 'h3', '--out', rogueRoot, '--keys', rogueKeys]);
    for (const host of ['h1', 'h2', 'h4']) copyFileSync(join(keysDir, `${host}.wg0.pub`), join(rogueKeys, `${host}.wg0.pub`));
    cli(['overlay', 'render', '--topology', rogueTopology, '--host', 'h3', '--out', rogueRoot, '--keys', rogueKeys]);
    const rogue = await startWireguard('h3', rogueRoot, 'wireguard-rogue-h3');
    try {
      for (const address of Object.values(WG0)) expect(ping('h3', address), `h3 pings ${address}`).toBe(false);
      expect(ask('h3', WG0.h1 as string, SERVICE_PORT, 1500).ok).toBe(false);
      // Neither of its peers in the rogue topology (h1, h2) ever completed a handshake with it.
      const handshakes = nsenter(rogue.pid as number, 'wg show wg0 latest-handshakes');
      expect(handshakes.trim().split('\n').map((line) => line.split('\t')[1])).toEqual(['0', '0']);
      expect(wg('h1', 'show wg0 peers')).not.toContain(readFileSync(join(rogueKeys, 'h3.wg0.pub'), 'utf8').trim());
    } finally {
      await lab.stop(rogue);
      wireguard.delete('wireguard-rogue-h3');
    }
  }, 60_000);
});

describe('firewall (meshplane.nft loaded in every mesh host)', () => {
  it('keeps service ports open to mesh hosts over the overlays (and to gateway hosts for gateway endpoints) and closes them to a host outside the mesh', async () => {
    // Every step blocks (spawnSync): let the event loop turn between them, or a busy machine
    // keeps vitest's worker from answering its own RPC for over 60 s.
    const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    // Before: the outsider reaches h1's service on the public address, and on
    // the overlay address too once it routes that network to h1.
    must('ip', ['-n', nsName('out'), 'route', 'add', '100.64.30.0/24', 'via', PUBLIC.h1]);
    expect(ask('out', PUBLIC.h1).ok).toBe(true);
    expect(ask('out', VPN0.h1 as string).ok).toBe(true);
    expect(ask('h3', PUBLIC.h1).ok).toBe(true);
    expect(ask('h2', PUBLIC.h1, GATEWAY_SERVICE_PORT).ok).toBe(true);
    expect(canConnect('out', PUBLIC.h1, '655')).toBe(true);

    await turn();
    for (const host of MESH) {
      await turn();
      const file = join(rootOf(host), 'etc/nftables.d/meshplane.nft');
      const check = inNs(host, ['nft', '-c', '-f', file]);
      expect(check.status, check.stderr).toBe(0);
      mustInNs(host, ['nft', '-f', file]);
      expect(mustInNs(host, ['nft', 'list', 'tables'])).toContain('table inet meshplane');
    }

    // Every mesh host reaches every other one at the address it should use.
    for (const [a, b] of pairs([...MESH])) {
      await turn();
      expect(ask(a, SEEN_BY[a][b]), `${a} -> ${b} at ${SEEN_BY[a][b]}`).toEqual({ ok: true, reply: `${b} from-${a}` });
    }
    await turn();
    // The outsider does not, on either address, nor on the overlay daemon's port.
    expect(ask('out', PUBLIC.h1, SERVICE_PORT, 1500).ok).toBe(false);
    expect(ask('out', VPN0.h1 as string, SERVICE_PORT, 1500).ok).toBe(false);
    expect(canConnect('out', PUBLIC.h1, '655', 1500)).toBe(false);
    await turn();
    // A host that shares an overlay with h1 must use it...
    expect(ask('h3', PUBLIC.h1, SERVICE_PORT, 1500).ok).toBe(false);
    expect(ask('h2', PUBLIC.h1, GATEWAY_SERVICE_PORT, 1500).ok).toBe(false);
    await turn();
    // ...except a gateway host, for a service with gateway endpoints.
    expect(ask('h3', PUBLIC.h1, GATEWAY_SERVICE_PORT)).toEqual({ ok: true, reply: 'web-h1 from-h3' });
    expect(ask('h2', VPN0.h1 as string, GATEWAY_SERVICE_PORT)).toEqual({ ok: true, reply: 'web-h1 from-h2' });
    expect(ask('out', PUBLIC.h1, GATEWAY_SERVICE_PORT, 1500).ok).toBe(false);
    // Other ports stay as they were: meshplane opens and closes nothing else.
    expect(ping('out', PUBLIC.h1)).toBe(true);
  }, 90_000);

  it('lets restarted overlay daemons reconnect through it', async () => {
    await lab.stop(tincd.get('tincd-h3') as ChildProcess);
    startTinc('h3', rootOf('h3'), 'tincd-h3-again');
    await lab.stop(wireguard.get('wireguard-h4') as ChildProcess);
    await startWireguard('h4', rootOf('h4'), 'wireguard-h4-again');
    // tinc 1.0 retries lost connections after 5, 10, 15... seconds, and two
    // ends dialling each other at once may close both and wait for the next
    // retry. SIGALRM is tinc's own "retry every connection now" (what an
    // operator sends with `tincd -kALRM`): nudging every 5 s keeps the test
    // about reaching each other through the firewall, not about tinc's backoff.
    const tail = (name: string): string => readFileSync(logOf(name), 'utf8').split('\n').slice(-25).join('\n');
    let lastNudge = Date.now();
    const nudged = (check: () => boolean) => (): boolean => {
      if (check()) return true;
      if (Date.now() - lastNudge > 5000) {
        lastNudge = Date.now();
        for (const child of tincd.values()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGALRM');
      }
      return false;
    };
    for (const [a, b] of [['h3', 'h1'], ['h3', 'h2']] as const) {
      const reached = await waitFor(nudged(() => ping(a, VPN0[b] as string)), 60_000);
      expect(reached, `${a} pings ${b} over vpn0; tincd-h3-again log:\n${tail('tincd-h3-again')}\ntincd-${b} log:\n${tail(`tincd-${b}`)}`).toBe(true);
    }
    for (const [a, b] of [['h4', 'h1'], ['h4', 'h2']] as const) {
      expect(await waitFor(() => ping(a, WG0[b] as string), 30_000), `${a} pings ${b} over wg0`).toBe(true);
    }
  }, 150_000);
});

describe('DNS (meshplane dns in every mesh host, on 127.0.0.1:53)', () => {
  const resolvConf = join(work.path, 'resolv.conf');

  function getent(from: Host, name: string): string[] {
    const script = 'mount --bind "$1" /etc/resolv.conf && exec getent hosts "$2"';
    const result = inNs(from, ['unshare', '-m', 'sh', '-c', script, 'sh', resolvConf, name]);
    return result.status === 0 ? result.stdout.trim().split('\n').map((line) => line.split(/\s+/)[0] as string) : [];
  }

  it('answers each host with overlay addresses for overlay peers and public ones otherwise, and TCP reaches the service there', async () => {
    writeFileSync(resolvConf, 'nameserver 127.0.0.1\noptions timeout:1 attempts:2\n');
    for (const host of MESH) {
      lab.start(`dns-${host}`, host, [process.execPath, CLI, 'dns', '--topology', topologyFile, '--host', host, '--listen', '127.0.0.1:53', '--no-forward'], logOf(`dns-${host}`));
    }
    for (const host of MESH) {
      expect(await waitFor(() => getent(host, 'api.mesh.internal').length > 0, SOON_MS), `dns server in ${host} answers (log: ${logOf(`dns-${host}`)})`).toBe(true);
    }
    for (const a of MESH) {
      expect(getent(a, 'api.mesh.internal').sort(), `${a}: api.mesh.internal`).toEqual(Object.values(SEEN_BY[a]).sort());
      for (const b of MESH) {
        const name = `${b}.api.mesh.internal`;
        const returned = getent(a, name);
        expect(returned, `${a}: ${name}`).toEqual([SEEN_BY[a][b]]);
        // The service, reached at the address DNS returned (firewall loaded).
        if (a !== b) expect(ask(a, returned[0] as string), `${a} -> ${name} at ${returned[0]}`).toEqual({ ok: true, reply: `${b} from-${a}` });
      }
    }
  }, 120_000);
});
