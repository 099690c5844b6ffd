// Benchmark: `meshplane dns render --engine bind` on the 10,000-host, 1,000-
// service, 16-overlay mesh of bench/compile.mjs (target: under 5 s), and how
// long BIND then takes to check and load it.
//
// Run with `npm run bench:dns-render` (builds first), under
// `flock /tmp/meshplane-bench.lock` beside other benches. Needs
// named-checkconf (bind9-utils; checked first). Ends with
// `RESULT name ours=... target=... ratio=...` lines; ratio > 1 is better.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';
import { renderBind } from '../dist/dns/index.js';
import { atExit, exitOnSignals } from './lib/children.mjs';
import { requireTools } from './lib/tools.mjs';

requireTools('bench/dns-render.mjs', ['named-checkconf', 'nproc']);
exitOnSignals();

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist', 'cli', 'bin.js');
const RUNS = 3;
const TARGET_S = 5;

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

function main(dir) {
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
  const cli = [];
  for (let run = 0; run < RUNS; run++) {
    const out = join(dir, `render-${run}`);
    const started = performance.now();
    execFileSync(process.execPath, [BIN, 'dns', 'render', '--engine', 'bind', '-t', topologyFile, '--out', out, '--ns-address', '127.0.0.1', '--serial', '1'], { stdio: 'ignore' });
    cli.push((performance.now() - started) / 1000);
  }
  const size = sizeOf(join(dir, 'render-0'));
  log(`meshplane dns render --engine bind: ${cli.map(sig).join(', ')} s; ${size.files} files, ${sig(size.bytes / 1048576)} MiB`);
  const unchangedStart = performance.now();
  execFileSync(process.execPath, [BIN, 'dns', 'render', '--engine', 'bind', '-t', topologyFile, '--out', join(dir, 'render-0'), '--ns-address', '127.0.0.1', '--serial', '1'], { stdio: 'ignore' });
  log(`the same again (unchanged, nothing written): ${sig((performance.now() - unchangedStart) / 1000)} s`);

  // What BIND makes of it: named-checkconf -z loads every zone of every view as named would.
  const conf = join(dir, 'check.conf');
  writeFileSync(conf, `options { directory "${join(dir, 'render-0')}"; };\ninclude "${join(dir, 'render-0', 'named.conf')}";\n`);
  const checkStart = performance.now();
  execFileSync('named-checkconf', ['-z', conf], { stdio: 'ignore', maxBuffer: 1 << 30 });
  const checkS = (performance.now() - checkStart) / 1000;
  log(`named-checkconf -z (every zone loaded): ${sig(checkS)} s`);

  const ours = median(cli);
  log(`load after: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  log('');
  log(`RESULT bind_render_10k_hosts_s ours=${sig(ours)} target=${TARGET_S} ratio=${(TARGET_S / ours).toFixed(2)}`);
  log(`RESULT bind_render_in_memory_10k_hosts_s ours=${sig(median(memory))} target=${TARGET_S} ratio=${(TARGET_S / median(memory)).toFixed(2)}`);
  log(`RESULT bind_render_in_memory_cpu_10k_hosts_s ours=${sig(median(memoryCpu))} target=${TARGET_S} ratio=${(TARGET_S / median(memoryCpu)).toFixed(2)}`);
  log(`RESULT bind_checkconf_10k_hosts_s named-checkconf=${sig(checkS)}`);
}

const dir = mkdtempSync(join(tmpdir(), 'meshplane-bench-dns-render-'));
atExit(() => rmSync(dir, { recursive: true, force: true }));
main(dir);
