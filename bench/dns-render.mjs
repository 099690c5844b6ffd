// Benchmark: `meshplane dns render --engine bind` on the 10,000-host, 1,000-
// service, 16-overlay mesh of bench/compile.mjs (target: under 5 s), how
// long BIND then takes to check and load it, and BIND's own qps serving it
// (named in a network namespace of the bench's own, where the sources dnsperf
// asks from are addresses of hosts of several views).
//
// Run with `npm run bench:dns-render` (builds first), under
// `flock /tmp/meshplane-bench.lock` beside other benches, as root (ip netns).
// Needs named-checkconf, named, dnsperf (checked first). Ends with
// `RESULT name ours=... target=... ratio=...` lines; ratio > 1 is better.
// BENCH_DNS_RENDER_QPS_SECONDS: seconds of dnsperf per source (default 3).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';
import { renderBind } from '../dist/dns/index.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { atExit, exitOnSignals, spawnTracked } from './lib/children.mjs';
import { requireTools } from './lib/tools.mjs';

requireTools('bench/dns-render.mjs', ['named-checkconf', 'named', 'dnsperf', 'dig', 'nproc']);
exitOnSignals();

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist', 'cli', 'bin.js');
const RUNS = 3;
const TARGET_S = 5;
const QPS_SECONDS = Number(process.env.BENCH_DNS_RENDER_QPS_SECONDS ?? 3);
/** Views dnsperf asks from (one host address each), besides an asker no view knows (the public view). */
const QPS_VIEWS = 4;
const NETNS = `mpbench-render-${process.pid}`;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

const log = (line) => process.stdout.write(`${line}\n`);
const sig = (x) => (x === 0 ? '0' : x.toPrecision(3));
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

function sizeOf(dir) {
  let bytes = 0;
  let files = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    bytes += statSync(join(entry.parentPath ?? entry.path, entry.name)).size;
    files++;
  }
  return { bytes, files };
}

function oneOverlayPerHost(inventory) {
  const out = [];
  for (const line of inventory.split('\n')) {
    if (/^\s+ip_ov\d+:/.test(line) && /^\s+ip_ov\d+:/.test(out.at(-1) ?? '')) continue;
    out.push(line);
  }
  return out.join('\n');
}

async function main(dir) {
  log(`machine: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, node ${process.version}; load ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  log('generating the 10,000-host inputs (bench/compile.mjs) and compiling them ...');
  execFileSync(process.execPath, [join(ROOT, 'bench', 'compile.mjs'), '--inputs-only', dir], { stdio: 'ignore' });
  // Each host keeps its first overlay only: 16 overlay sets (+ hosts on none), the issue's
  // "16 overlay sets". compile.mjs's hosts join up to three overlays: hundreds of sets, each a
  // BIND view holding the whole zone (see README, "DNS": BIND's memory grows with views).
  writeFileSync(join(dir, 'hosts.yml'), oneOverlayPerHost(readFileSync(join(dir, 'hosts.yml'), 'utf8')));
  const topologyFile = join(dir, 'topology.json');
  execFileSync(process.execPath, [BIN, 'compile', '-s', join(dir, 'services.yml'), '-i', join(dir, 'hosts.yml'), '-o', topologyFile], { stdio: 'inherit' });
  const topology = JSON.parse(readFileSync(topologyFile, 'utf8'));

  // In memory: what bench/dns.mjs can call to give BIND the same zones.
  const memory = [];
  const memoryCpu = [];
  let files = [];
  for (let run = 0; run < RUNS; run++) {
    const started = performance.now();
    const cpu = process.cpuUsage();
    files = renderBind(topology, { host: null, nsAddresses: ['127.0.0.1'], forwarders: [], ttl: 5, negativeTtl: 5, serial: 1 });
    memory.push((performance.now() - started) / 1000);
    const used = process.cpuUsage(cpu);
    memoryCpu.push((used.user + used.system) / 1e6);
  }
  const views = files.filter((f) => f.path.endsWith(`/${topology.domain}.zone`)).length;
  const instances = Object.values(topology.services).reduce((n, s) => n + s.instances.length, 0);
  log(`mesh: ${Object.keys(topology.hosts).length} hosts, ${Object.keys(topology.services).length} services (${instances} instances), ${views} views`);
  log(`renderBind in memory: ${files.length} files, ${views} views; ${memory.map(sig).join(', ')} s (CPU ${memoryCpu.map(sig).join(', ')} s)`);

  // The command as an operator runs it: read the topology, render, write, swap (a fresh DIR each run).
  // Its CPU time too (user + system), so a run on a busy machine shows what waiting for a core added.
  const cli = [];
  const cliCpu = [];
  for (let run = 0; run < RUNS; run++) {
    const { wall, cpu } = timed(['-t', topologyFile, '--out', join(dir, `render-${run}`), '--ns-address', '127.0.0.1', '--serial', '1']);
    cli.push(wall);
    cliCpu.push(cpu);
  }
  const size = sizeOf(join(dir, 'render-0'));
  log(`meshplane dns render --engine bind: ${cli.map(sig).join(', ')} s (CPU ${cliCpu.map(sig).join(', ')} s); ${size.files} files, ${sig(size.bytes / 1048576)} MiB`);
  const unchanged = timed(['-t', topologyFile, '--out', join(dir, 'render-0'), '--ns-address', '127.0.0.1', '--serial', '1']);
  log(`the same again (unchanged, nothing written): ${sig(unchanged.wall)} s (CPU ${sig(unchanged.cpu)} s)`);

  // What BIND makes of it: named-checkconf -z loads every zone of every view as named would.
  const conf = join(dir, 'check.conf');
  writeFileSync(conf, `options { directory "${join(dir, 'render-0')}"; };\ninclude "${join(dir, 'render-0', 'named.conf')}";\n`);
  const checkStart = performance.now();
  execFileSync('named-checkconf', ['-z', conf], { stdio: 'ignore', maxBuffer: 1 << 30 });
  const checkS = (performance.now() - checkStart) / 1000;
  log(`named-checkconf -z (every zone loaded): ${sig(checkS)} s`);

  const served = await bindQps(dir, join(dir, 'render-0'), topology);

  const ours = median(cli);
  log(`load after: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  log('');
  log(`RESULT bind_render_10k_hosts_s ours=${sig(ours)} target=${TARGET_S} ratio=${(TARGET_S / ours).toFixed(2)}`);
  log(`RESULT bind_render_cpu_10k_hosts_s ours=${sig(median(cliCpu))} target=${TARGET_S} ratio=${(TARGET_S / median(cliCpu)).toFixed(2)}`);
  log(`RESULT bind_render_in_memory_10k_hosts_s ours=${sig(median(memory))} target=${TARGET_S} ratio=${(TARGET_S / median(memory)).toFixed(2)}`);
  log(`RESULT bind_render_in_memory_cpu_10k_hosts_s ours=${sig(median(memoryCpu))} target=${TARGET_S} ratio=${(TARGET_S / median(memoryCpu)).toFixed(2)}`);
  log(`RESULT bind_checkconf_10k_hosts_s named-checkconf=${sig(checkS)}`);
  log(`RESULT bind_served_render_10k_hosts named_first_answer_s=${sig(served.firstAnswerS)} named_rss_mib=${Math.round(served.rssMiB)} named_qps=${Math.round(served.qps)}`);
}

/** One `meshplane dns render --engine bind ARGS`: wall and CPU seconds (the shell's waited-for children's times). */
function timed(args) {
  const started = performance.now();
  const result = spawnSync('sh', ['-c', '"$@" >/dev/null; s=$?; cat /proc/$$/stat >&2; exit $s', 'sh', process.execPath, BIN, 'dns', 'render', '--engine', 'bind', ...args], { encoding: 'utf8' });
  const wall = (performance.now() - started) / 1000;
  if (result.status !== 0) throw new Error(`meshplane dns render ${args.join(' ')} failed: ${result.stderr}`);
  const stat = result.stderr.trim().split('\n').pop().split(') ')[1].split(' ');
  return { wall, cpu: (Number(stat[13]) + Number(stat[14])) / CLK_TCK };
}

/** 20,000 type-A questions: 80% service names (of at most 20 instances), 15% host.service, 5% names that do not exist. */
function queryMix(topology) {
  const services = Object.values(topology.services).filter((s) => s.instances.length > 0 && s.instances.length <= 20);
  const lines = [];
  for (let i = 0; i < 20_000; i++) {
    const service = services[(i * 7919) % services.length];
    if (i % 20 === 0) lines.push(`nothere-${i}.${topology.domain} A`);
    else if (i % 20 <= 3) lines.push(`${service.instances[i % service.instances.length].host}.${service.name}.${topology.domain} A`);
    else lines.push(`${service.name}.${topology.domain} A`);
  }
  return lines.join('\n') + '\n';
}

/**
 * named (two threads, the cores here) serving the render in a namespace of its own; dnsperf
 * from one host address of each of QPS_VIEWS views and from an unknown asker (the public view),
 * QPS_SECONDS each; qps = queries completed / run time over all of them.
 */
async function bindQps(dir, render, topology) {
  const netns = (args) => execFileSync('ip', ['netns', ...args], { stdio: 'ignore' });
  netns(['add', NETNS]);
  atExit(() => spawnSync('ip', ['netns', 'delete', NETNS]));
  netns(['exec', NETNS, 'ip', 'link', 'set', 'lo', 'up']);
  // One address of a host of each of the first views, as named.conf matches them.
  const conf = readFileSync(join(render, 'named.conf'), 'utf8');
  const sources = [...conf.matchAll(/^view "([^"]+)" \{\n {2}match-clients \{\n {4}([0-9.]+);/gm)].slice(0, QPS_VIEWS).map((m) => ({ view: m[1], source: m[2] }));
  sources.push({ view: 'public', source: '192.0.2.1' });
  for (const { source } of sources) netns(['exec', NETNS, 'ip', 'addr', 'add', `${source}/32`, 'dev', 'lo']);
  const namedConf = join(dir, 'named-serve.conf');
  writeFileSync(
    namedConf,
    `options {\n  directory "${render}";\n  pid-file "${dir}/named.pid";\n  session-keyfile "${dir}/session.key";\n  managed-keys-directory "${dir}";\n` +
      '  listen-on port 53 { 127.0.0.1; };\n  listen-on-v6 { none; };\n  dnssec-validation no;\n};\n' +
      `include "${join(render, 'named.conf')}";\n`,
  );
  const logFile = join(dir, 'named.log');
  const started = performance.now();
  const named = spawnTracked('ip', ['netns', 'exec', NETNS, 'named', '-g', '-n', '2', '-u', 'root', '-c', namedConf], { stdio: ['ignore', 'ignore', openSync(logFile, 'w')] });
  const probe = `${Object.values(topology.services)[0].name}.${topology.domain}`;
  for (;;) {
    if (named.exitCode !== null) throw new Error(`named exited ${named.exitCode}:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    const answer = spawnSync('ip', ['netns', 'exec', NETNS, 'dig', '@127.0.0.1', '-b', sources[0].source, '+tries=1', '+time=1', '+short', probe, 'A'], { encoding: 'utf8' });
    if (answer.status === 0 && answer.stdout.trim() !== '') break;
    if (performance.now() - started > 600_000) throw new Error(`named did not answer in 600 s:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    await sleep(200);
  }
  const firstAnswerS = (performance.now() - started) / 1000;
  const rssMiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${named.pid}/status`, 'utf8'))[1]) / 1024;
  log(`named -n 2 serving the render: first answer after ${sig(firstAnswerS)} s, RSS ${sig(rssMiB)} MiB`);
  // The first view can answer while named still loads the others, and then drops queries; measure once it says "running".
  while (!/\brunning\b/.test(readFileSync(logFile, 'utf8'))) {
    if (named.exitCode !== null) throw new Error(`named exited ${named.exitCode}:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    if (performance.now() - started > 600_000) throw new Error(`named did not finish loading in 600 s:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    await sleep(200);
  }
  log(`named -n 2: every zone loaded ("running") after ${sig((performance.now() - started) / 1000)} s`);
  const queries = join(dir, 'queries.txt');
  writeFileSync(queries, queryMix(topology));
  let completed = 0;
  let seconds = 0;
  for (const { view, source } of sources) {
    const result = spawnSync('ip', ['netns', 'exec', NETNS, 'dnsperf', '-s', '127.0.0.1', '-a', source, '-d', queries, '-l', String(QPS_SECONDS), '-q', '500', '-t', '2'], { encoding: 'utf8', maxBuffer: 1 << 28 });
    if (result.status !== 0) throw new Error(`dnsperf from ${source} failed: ${result.stdout}${result.stderr}`);
    const done = Number(/Queries completed:\s+(\d+)/.exec(result.stdout)?.[1]);
    const runTime = Number(/Run time \(s\):\s+([\d.]+)/.exec(result.stdout)?.[1]);
    const lost = Number(/Queries lost:\s+(\d+)/.exec(result.stdout)?.[1]);
    log(`  dnsperf from ${source} (view ${view}): ${sig(done / runTime)} qps, ${lost} lost; load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
    completed += done;
    seconds += runTime;
  }
  named.kill('SIGTERM');
  const qps = completed / seconds;
  log(`named serving the render: ${sig(qps)} qps over ${sources.length} sources in ${sources.length} views`);
  return { firstAnswerS, rssMiB, qps };
}

const dir = mkdtempSync(join(tmpdir(), 'meshplane-bench-dns-render-'));
atExit(() => rmSync(dir, { recursive: true, force: true }));
await main(dir);
