/**
 * The benchmarks check their tools before starting anything and stop what
 * they started on any exit (bench/lib/tools.mjs, bench/lib/children.mjs):
 * bench/gateway.mjs run with a PATH that has everything but iperf3 exits 2
 * with the apt-get line and leaves no process behind; a script using the
 * children module loses its child on process.exit, an uncaught exception,
 * SIGINT and SIGTERM. Nothing here runs a benchmark.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const work = tempDir('bench-tools');
afterAll(() => work.remove());

/** A directory of symlinks to every program on PATH but `left out`. */
function pathWithout(leftOut: string): string {
  const dir = join(work.path, `path-without-${leftOut}`);
  mkdirSync(dir);
  const seen = new Set<string>([leftOut]);
  for (const from of (process.env.PATH ?? '').split(delimiter)) {
    if (from === '' || !existsSync(from)) continue;
    for (const name of readdirSync(from)) {
      if (seen.has(name)) continue;
      seen.add(name);
      symlinkSync(join(from, name), join(dir, name));
    }
  }
  return dir;
}

/** Running, and not a zombie waiting for a parent that is gone. */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(text) && alive(Number(pid));
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('bench/gateway.mjs without iperf3', () => {
  it('exits 2 naming iperf3 and its apt-get line, and starts nothing', () => {
    const pids = join(work.path, 'gateway-pids');
    const haproxyBefore = processesMentioning('meshplane-bench-gateway-');
    const result = spawnSync(process.execPath, [join(REPO_ROOT, 'bench/gateway.mjs')], {
      cwd: REPO_ROOT,
      env: { ...process.env, PATH: pathWithout('iperf3'), BENCH_PIDS_FILE: pids },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status, result.stderr).toBe(2);
    expect(result.stderr).toContain('bench/gateway.mjs: missing tools, nothing was started:');
    expect(result.stderr).toMatch(/^ {2}iperf3 +\(Debian package iperf3\)$/m);
    // One install line for everything missing (on this machine maybe more than iperf3), haproxy not in it.
    expect(result.stderr).toMatch(/^Install them with:\n {2}apt-get install -y (\S+ )*iperf3( \S+)*\n$/m);
    expect(result.stderr).not.toMatch(/haproxy/);
    expect(result.stdout).toBe('');
    // Nothing was started: no PID recorded, no haproxy with a bench directory of its own.
    expect(existsSync(pids) ? readFileSync(pids, 'utf8') : '').toBe('');
    expect(processesMentioning('meshplane-bench-gateway-').filter((pid) => !haproxyBefore.includes(pid))).toEqual([]);
  });
});

describe('bench/pki.mjs without a C compiler', () => {
  it('exits 2 naming cc and its apt-get line, and makes no bench directory', () => {
    const before = readdirSync(tmpdir()).filter((name) => name.startsWith('meshplane-bench-pki-'));
    const result = spawnSync(process.execPath, [join(REPO_ROOT, 'bench/pki.mjs')], { cwd: REPO_ROOT, env: { ...process.env, PATH: pathWithout('cc') }, encoding: 'utf8', timeout: 60_000 });
    expect(result.status, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/^ {2}cc +\(Debian package gcc\)$/m);
    expect(result.stderr).toMatch(/^ {2}apt-get install -y (\S+ )*gcc( \S+)*\n$/m);
    expect(readdirSync(tmpdir()).filter((name) => name.startsWith('meshplane-bench-pki-') && !before.includes(name))).toEqual([]);
  });
});

describe('bench/lib/tools.mjs', () => {
  it('takes a C header (an absolute path ending in .h) as there when it can be read, not when it is missing', async () => {
    const { missingTools } = (await import(pathToFileURL(join(REPO_ROOT, 'bench/lib/tools.mjs')).href)) as { missingTools: (tools: string[]) => { tool: string; package: string }[] };
    const header = join(work.path, 'present.h');
    writeFileSync(header, '/* a header */\n');
    expect(missingTools([header])).toEqual([]);
    const absent = join(work.path, 'absent.h');
    expect(missingTools([absent])).toEqual([{ tool: absent, package: absent }]);
  });
});

describe('bench/lib/children.mjs', () => {
  const script = join(work.path, 'children-fixture.mjs');
  writeFileSync(
    script,
    `import { spawnTracked, exitOnSignals } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'bench/lib/children.mjs')).href)};\n` +
      `exitOnSignals();\n` +
      `const child = spawnTracked('sleep', ['300'], { stdio: 'ignore' });\n` +
      `process.stdout.write(child.pid + '\\n');\n` +
      `const how = process.argv[2];\n` +
      `if (how === 'exit') setTimeout(() => process.exit(0), 100);\n` +
      `else if (how === 'throw') setTimeout(() => { throw new Error('bench failed'); }, 100);\n` +
      `else setInterval(() => undefined, 1000);\n`,
  );

  it.each(['exit', 'throw', 'SIGINT', 'SIGTERM'])('stops the started process when the bench ends by %s', async (how) => {
    const pids = join(work.path, `children-${how}`);
    const bench = spawn(process.execPath, [script, how], { env: { ...process.env, BENCH_PIDS_FILE: pids }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    bench.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => bench.on('exit', (code) => resolve(code)));
    const pid = await waitFor(() => (/^\d+\n/.test(out) ? Number(out.trim()) : undefined), { what: 'the child PID' });
    expect(readFileSync(pids, 'utf8')).toBe(`${pid} sleep\n`);
    expect(alive(pid)).toBe(true);
    if (how.startsWith('SIG')) bench.kill(how as NodeJS.Signals);
    const code = await exited;
    expect(code).toBe({ exit: 0, throw: 1, SIGINT: 130, SIGTERM: 143 }[how]);
    await waitFor(() => !alive(pid) || undefined, { what: `sleep ${pid} gone` });
  });
});
