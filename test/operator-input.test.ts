/**
 * Operator input that used to crash or hang (issue 15, finding 7), through
 * the built CLI in child processes: output paths that cannot be written end
 * in exit 1 and `cannot write FILE: reason` (a path under /proc used to spin
 * forever, so every run here has a deadline); a second `meshplane up` on the
 * same state directory stops before it writes anything; `pki issue` into a
 * scratch root as root creates no system group; a killed run's temporary
 * files are removed (and named) by the next run.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT, tempDir } from './support/run.js';
import { topologyOf } from './pki/support.js';

const EXAMPLE = ['-s', join(REPO_ROOT, 'services.yml.example'), '-i', join(REPO_ROOT, 'hosts.yml.example')];
const isRoot = process.getuid?.() === 0;
const work = tempDir('operator-input');
afterAll(() => work.remove());

interface Bounded {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Killed at the deadline (it hung). */
  readonly timedOut: boolean;
}

/** The CLI with a deadline: a run that spins is killed (SIGKILL) and reported, never waited for. */
function bounded(args: readonly string[], options: { cwd?: string; timeoutMs?: number } = {}): Bounded {
  const result = spawnSync(process.execPath, [CLI, ...args], { cwd: options.cwd ?? work.path, encoding: 'utf8', timeout: options.timeoutMs ?? 30_000, killSignal: 'SIGKILL' });
  const error: NodeJS.ErrnoException | undefined = result.error;
  return { status: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '', timedOut: error?.code === 'ETIMEDOUT' };
}

/** Exit 1 with one `error CODE: cannot write FILE: ...` line, no stack trace. */
function expectCannotWrite(result: Bounded, code: string, file: string, reason: RegExp): void {
  expect(result.timedOut, 'it hung').toBe(false);
  expect(result.stderr).not.toContain('internal error');
  expect(result.stderr).not.toMatch(/\n\s+at /);
  expect(result.stderr).toMatch(new RegExp(`error ${code}: cannot write ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
  expect(result.stderr).toMatch(reason);
  expect(result.status).toBe(1);
}

describe('output paths that cannot be written', () => {
  const aFile = join(work.path, 'services.yml');
  beforeAll(() => writeFileSync(aFile, 'web: {}\n'));

  it('compile -o under a file: exit 1, "is not a directory", the file untouched', () => {
    writeFileSync(aFile, 'web: {}\n');
    const target = join(aFile, 'x.json');
    expectCannotWrite(bounded(['compile', ...EXAMPLE, '-o', target]), 'CLI_ERR_CANNOT_WRITE', target, / is not a directory\n/);
    expect(readFileSync(aFile, 'utf8')).toBe('web: {}\n');
  });

  it('compile -o /sys/x.json: exit 1, permission denied', () => {
    expectCannotWrite(bounded(['compile', ...EXAMPLE, '-o', '/sys/x.json']), 'CLI_ERR_CANNOT_WRITE', '/sys/x.json', /permission denied \(EACCES\)/);
  });

  it('compile -o /proc/nope/t.json: exit 1 at once instead of spinning', () => {
    const started = Date.now();
    expectCannotWrite(bounded(['compile', ...EXAMPLE, '-o', '/proc/nope/t.json']), 'CLI_ERR_CANNOT_WRITE', '/proc/nope/t.json', /cannot create directory \/proc\/nope: .*\(ENOENT\)/);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('compile -o a directory: exit 1, and no temporary file is left', () => {
    const dir = join(work.path, 'out-dir');
    mkdirSync(dir);
    expectCannotWrite(bounded(['compile', ...EXAMPLE, '-o', dir]), 'CLI_ERR_CANNOT_WRITE', dir, / is a directory\n/);
    expect(readdirSync(work.path).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('up --state-dir under /proc and pki init --ca-dir under a file or /proc: exit 1, nothing spins', () => {
    expectCannotWrite(bounded(['up', ...EXAMPLE, '--state-dir', '/proc/nope/state', '--dns-listen', '127.0.0.1:0']), 'CLI_ERR_CANNOT_WRITE', '/proc/nope/state', /\(ENOENT\)/);
    const topology = join(work.path, 'pki-in', 'topology.json');
    topologyOf(join(work.path, 'pki-in'), 'web:\n  ports: [8081]\n  service_credentials: [{ name: opweb }]\n', 'all:\n  vars: { domain: mesh.test }\n  hosts:\n    h1: { ip: 198.18.7.1 }\n');
    expectCannotWrite(bounded(['pki', 'init', '--ca-dir', join(aFile, 'ca'), '-t', topology]), 'PKI_ERR_WRITE', join(aFile, 'ca'), / is not a directory\n/);
    expectCannotWrite(bounded(['pki', 'init', '--ca-dir', '/proc/nope/ca', '-t', topology]), 'PKI_ERR_WRITE', '/proc/nope/ca', /\(ENOENT\)/);
  });

  it('overlay keygen under a file, pki sign --out-dir and pki status --metrics-file under /proc: exit 1, nothing spins', () => {
    const example = join(work.path, 'example.json');
    expect(bounded(['compile', ...EXAMPLE, '-o', example]).status).toBe(0);
    const keys = join(aFile, 'root');
    expectCannotWrite(bounded(['overlay', 'keygen', '-t', example, '--host', 'host1', '--out', keys]), 'CLI_ERR_CANNOT_WRITE', join(keys, 'etc/tinc/vpn0/rsa_key.priv'), / is not a directory\n/);
    const ca = join(work.path, 'example-ca');
    expect(bounded(['pki', 'init', '--ca-dir', ca, '-t', example]).status).toBe(0);
    mkdirSync(join(work.path, 'csrs'));
    expectCannotWrite(bounded(['pki', 'sign', '--ca-dir', ca, '-t', example, '--csr-dir', join(work.path, 'csrs'), '--out-dir', '/proc/nope/out']), 'PKI_ERR_WRITE', '/proc/nope/out', /\(ENOENT\)/);
    expectCannotWrite(bounded(['pki', 'status', '--credentials-root', join(work.path, 'none'), '--metrics-file', '/proc/nope/m.prom']), 'PKI_ERR_WRITE', '/proc/nope/m.prom', /\(ENOENT\)/);
  });
});

/** A started `meshplane up` and everything it printed so far. */
interface Up {
  readonly child: ChildProcess;
  readonly output: () => { stdout: string; stderr: string };
  /** SIGTERM (to this child only) and its exit code. */
  readonly stop: () => Promise<number | null>;
}

/** Starts `meshplane up` in `cwd` and resolves once it serves ("Ctrl-C stops it"). */
async function startUp(cwd: string): Promise<Up> {
  const child = spawn(process.execPath, [CLI, 'up', '--dns-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`up not serving within 45 s:\n${stdout}\n${stderr}`)), 45_000);
      child.stdout.on('data', () => {
        if (stdout.includes('Ctrl-C stops it')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`up exited ${code} before serving:\n${stdout}\n${stderr}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { child, output: () => ({ stdout, stderr }), stop };
}

/** A PID that was just in use and is not any more. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

describe('meshplane up on a state directory another up holds', () => {
  // A mesh with no gateway endpoints: up serves DNS on an ephemeral port only, so it binds no fixed port.
  const cwd = join(work.path, 'up');
  mkdirSync(cwd);
  writeFileSync(join(cwd, 'services.yml'), 'web:\n  ports: [8081]\n');
  writeFileSync(join(cwd, 'hosts.yml'), 'all:\n  vars:\n    domain: mesh.test\n  hosts:\n    h1: { ip: 127.0.0.61 }\n');
  const state = join(cwd, '.meshplane');

  it('a second up exits 1 naming the first one\'s PID and changes nothing; the lock goes when the first stops', async () => {
    const first = await startUp(cwd);
    try {
      const topology = join(state, 'topology.json');
      const before = { bytes: readFileSync(topology), mtimeMs: statSync(topology).mtimeMs, lock: readFileSync(join(state, 'lock'), 'utf8'), entries: readdirSync(state).sort() };
      // Other inputs, so a second up that compiled would write different bytes (in a file of their own:
      // the first up follows edits of its own inputs, and would rewrite the topology itself).
      writeFileSync(join(cwd, 'services-other.yml'), 'web:\n  ports: [8082]\n');
      const second = bounded(['up', '-s', 'services-other.yml', '-i', 'hosts.yml', '--dns-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { cwd });
      expect(second.timedOut).toBe(false);
      expect(second.stderr).toContain('error CLI_ERR_STATE_LOCKED: ');
      expect(second.stderr).toContain(`(pid ${first.child.pid}, started `);
      expect(second.status).toBe(1);
      expect(second.stdout).not.toContain('topology written');
      expect(readFileSync(topology).equals(before.bytes)).toBe(true);
      expect(statSync(topology).mtimeMs).toBe(before.mtimeMs);
      expect(readFileSync(join(state, 'lock'), 'utf8')).toBe(before.lock);
      expect(readdirSync(state).sort()).toEqual(before.entries);
    } finally {
      expect(await first.stop()).toBe(0);
    }
    expect(existsSync(join(state, 'lock'))).toBe(false);
  });

  it('takes over a lock whose process is gone, and says so', async () => {
    const pid = await deadPid();
    mkdirSync(state, { recursive: true });
    writeFileSync(join(state, 'lock'), `${JSON.stringify({ pid, started: '2026-01-01T00:00:00.000Z' })}\n`);
    const up = await startUp(cwd);
    try {
      expect(up.output().stderr).toContain(`took over the stale lock .meshplane/lock of process ${pid} (started 2026-01-01T00:00:00.000Z)`);
      expect(JSON.parse(readFileSync(join(state, 'lock'), 'utf8'))).toMatchObject({ pid: up.child.pid });
    } finally {
      expect(await up.stop()).toBe(0);
    }
    expect(existsSync(join(state, 'lock'))).toBe(false);
  });
});

describe('pki issue into a scratch credentials root', () => {
  /** Unique names: a run as root that got this wrong would create these groups. */
  const tag = `${(process.pid % 46656).toString(36)}${Math.random().toString(36).slice(2, 4)}`;
  const NAME = `mpop${tag}`;
  const dir = join(work.path, 'pki');
  const topology = join(dir, 'in', 'topology.json');
  const ca = join(dir, 'ca');
  const groupLines = (): string[] => readFileSync('/etc/group', 'utf8').split('\n').filter((line) => line.includes(NAME));
  afterAll(() => {
    if (isRoot) spawnSync('groupdel', [`${NAME}-credentials`]);
  });

  it('creates the CA and issues', () => {
    topologyOf(join(dir, 'in'), `app:\n  ports: [7100]\n  service_credentials: [{ name: ${NAME} }]\n`, 'all:\n  vars: { domain: mesh.test }\n  hosts:\n    h1: { ip: 198.18.7.2 }\n');
    const init = bounded(['pki', 'init', '--ca-dir', ca, '-t', topology]);
    expect(init.stderr).toBe('');
    expect(init.status).toBe(0);
  });

  it.runIf(isRoot)('as root, creates no group and chowns nothing unless --system-owners asks', () => {
    const root = join(dir, 'scratch');
    const issue = bounded(['pki', 'issue', '--ca-dir', ca, '-t', topology, '--host', 'h1', '--credentials-root', root]);
    expect(issue.stderr).toBe('');
    expect(issue.status).toBe(0);
    expect(groupLines()).toEqual([]);
    const key = statSync(join(root, 'x509', NAME, 'server', 'private_key.pem'));
    expect([key.mode & 0o7777, key.uid, key.gid]).toEqual([0o440, 0, process.getgid!()]);
    // Asked for: root:<name>-credentials, the group created.
    const owned = join(dir, 'owned');
    const asked = bounded(['pki', 'issue', '--ca-dir', ca, '-t', topology, '--host', 'h1', '--credentials-root', owned, '--system-owners']);
    expect(asked.stderr).toBe('');
    expect(asked.status).toBe(0);
    expect(groupLines()).toHaveLength(1);
    const gid = Number(groupLines()[0]!.split(':')[2]);
    expect(statSync(join(owned, 'x509', NAME, 'server', 'private_key.pem')).gid).toBe(gid);
  });

  it.runIf(isRoot)('--system-owners without root: PKI_ERR_NOT_ROOT, nothing written', () => {
    chmodSync(work.path, 0o755);
    const root = join(dir, 'nobody');
    mkdirSync(root, { mode: 0o777 });
    chmodSync(root, 0o777);
    const result = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, CLI, 'pki', 'request', '-t', topology, '--host', 'h1', '--credential', NAME, '--kind', 'server', '--credentials-root', root, '--system-owners'], {
      encoding: 'utf8',
      timeout: 30_000,
      killSignal: 'SIGKILL',
    });
    expect(result.stderr).toContain('error PKI_ERR_NOT_ROOT: ');
    expect(result.status).toBe(1);
    expect(readdirSync(root)).toEqual([]);
  });

  it('removes (and names) temporary files a killed run left, keeps a live writer\'s', async () => {
    const root = join(dir, 'temps');
    const first = bounded(['pki', 'issue', '--ca-dir', ca, '-t', topology, '--host', 'h1', '--credentials-root', root, '--no-system-owners']);
    expect(first.status).toBe(0);
    const kindDir = join(root, 'x509', NAME, 'server');
    // What kill -9 between writing the temporary file and its rename leaves behind.
    const dead = await deadPid();
    const stale = join(kindDir, `.private_key.pem.${dead}.${Date.now()}.k9test.tmp`);
    writeFileSync(stale, 'half a key', { mode: 0o600 });
    const staleCa = join(ca, `.crl.pem.${dead}.${Date.now()}.k9test.tmp`);
    writeFileSync(staleCa, 'half a CRL');
    // A writer that is still at work (this test process, just now), and a file that is not pki's.
    const live = join(kindDir, `.cert.pem.${process.pid}.${Date.now()}.live01.tmp`);
    writeFileSync(live, 'in progress');
    const other = join(kindDir, '.notes.tmp');
    writeFileSync(other, 'not ours');
    const again = bounded(['pki', 'issue', '--ca-dir', ca, '-t', topology, '--host', 'h1', '--credentials-root', root, '--no-system-owners']);
    expect(again.status).toBe(0);
    expect(again.stderr).toContain(`meshplane pki: removed ${stale}, a temporary file left by process ${dead}`);
    expect(again.stderr).toContain(`meshplane pki: removed ${staleCa}, a temporary file left by process ${dead}`);
    expect([existsSync(stale), existsSync(staleCa), existsSync(live), existsSync(other)]).toEqual([false, false, true, true]);
  });
});
