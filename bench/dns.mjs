// Benchmark: `meshplane dns` against the DNS servers that do what it does,
// driven by dnsperf with the same query mix in the same run, plus the memory
// and start-up figures for a 10,000-host topology.
//
// Peers (all on 127.0.0.1, each on its own port):
// - BIND 9 with one view per overlay set the queries come from
//   (`match-clients` with the addresses of that set's hosts) and a public
//   view for everyone else, zones generated from the Topology with our own
//   address choice (bench/lib/view-zones.mjs); run with one worker thread
//   (`named -n 1`, beside ours with one worker) and with two (`bind9_2`,
//   beside ours with --workers 2);
// - Knot DNS, public view only: its mod-geoip module (subnet mode) keys
//   answers by the asker's subnet, one list of subnets per name; our views
//   are keyed by scattered host addresses (/32s), which would make every name
//   carry every host's address (37,600 names x 10,000+ addresses), and the
//   module is a separate Debian package (knot-module-geoip). So Knot runs as
//   a second no-views ceiling beside NSD;
// - dnsmasq, the per-host stub, with the same names for one view (a hosts
//   file of the public view);
// - NSD, the no-views ceiling (`server-count: 1`);
// - the bare Node server (bench/node-udp-ceiling.mjs): what Node reaches.
// The askers' source addresses vary across views: each view's overlay set
// gets one loopback address (added to the public_ips of one of its hosts,
// which changes no A answer), and dnsperf asks from each in turn (`-a`), plus
// 127.0.0.1 (public view). A sample of names is checked against ours from
// every source before anything is measured.
//
// Run with `npm run bench:dns` (builds first). Needs dnsperf, nsd, named,
// knotd, dnsmasq (checked first: exit 2 with the apt-get line when one is
// missing); stops what it started on any exit.
// Ends with `RESULT name ours=... <peer>=... ratio=...` lines; ratio > 1
// means ours is better (rates: ours/peer; times and sizes: peer/ours).
// BENCH_DNS_SECONDS (per source, default 3) and BENCH_DNS_ROUNDS (default 1)
// shorten or lengthen the throughput runs. BENCH_DNS_PROFILE=DIR runs only
// ours (one worker) and the bare Node server, each under `node --cpu-prof`
// (profiles kept in DIR), through the same warm-up and throughput runs, and
// prints the top frames by self time over the throughput runs (the inputs,
// topology.json, zone.json and queries.txt, are kept in DIR too).
import { execFileSync, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { prng } from './prng.mjs';
import { clearTimeout, setTimeout } from 'node:timers';
import { URL, fileURLToPath } from 'node:url';
import { atExit, exitOnSignals, spawnTracked as spawn } from './lib/children.mjs';
import { profileIn, selfTimeTop } from './lib/cpu-profile.mjs';
import { treeCpuSeconds } from './lib/proc-cpu.mjs';
import { requireTools } from './lib/tools.mjs';
import { dnsmasqArgs, viewClients, writeBind, writeKnot, writeNsd, zoneFor } from './lib/view-zones.mjs';

requireTools('bench/dns.mjs', ['dnsperf', 'nsd', 'named', 'knotd', 'dnsmasq', 'nproc']);
exitOnSignals();

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist', 'cli', 'bin.js');
/** The node flags of the CLI's shebang (`#!/usr/bin/env -S node FLAGS`): the server runs with them, as installed. */
const CLI_NODE_ARGS = readFileSync(BIN, 'utf8').split('\n')[0].split(/\s+/).slice(3);
const PORTS = { ours: 25353, nsd: 25354, 'node-ceiling': 25355, ours_2: 25356, bind9: 25357, bind9_2: 25358, knot: 25359, dnsmasq: 25360 };
const CEILING = join(ROOT, 'bench', 'node-udp-ceiling.mjs');
const QPS_SECONDS = Number(process.env.BENCH_DNS_SECONDS ?? 3);
const QPS_ROUNDS = Number(process.env.BENCH_DNS_ROUNDS ?? 1);
const LATENCY_RATE = 20_000;
const LATENCY_SECONDS = 5;
const QUERY_LINES = 20_000;
const RSS_TARGET_MIB = 300;
const START_TARGET_S = 3;
/** Overlay sets the queries come from (the largest ones); BIND gets a view for each, plus public. */
const VIEWS = 4;
/** BENCH_DNS_PROFILE: where the CPU profiles go; set = profile ours and the bare Node server only. */
const PROFILE_DIR = process.env.BENCH_DNS_PROFILE ?? null;
const profileArgs = (name) => (PROFILE_DIR === null ? [] : ['--cpu-prof', '--cpu-prof-dir', join(PROFILE_DIR, name)]);
const CLK_TCK = 100;
/** The run's temporary directory (server logs go there). */
let benchDir = tmpdir();

const log = (line) => process.stdout.write(`${line}\n`);
const sig = (x) => (x === 0 ? '0' : x.toPrecision(Math.abs(x) >= 1000 ? 4 : 3).replace(/\.?0+$/, (m) => (m.includes('.') ? '' : m)));
const ratio = (a, b) => (b === 0 ? 'inf' : (a / b).toFixed(2));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** 80% service names, 15% host.service, 5% unknown; services weighted toward small answers like real traffic. */
function queryFile(topology, random) {
  const services = Object.values(topology.services).filter((s) => s.instances.length > 0 && s.instances.length <= 20);
  const lines = [];
  for (let i = 0; i < QUERY_LINES; i++) {
    const pick = random();
    const service = services[Math.floor(random() * services.length)];
    if (pick < 0.8) lines.push(`${service.name}.${topology.domain} A`);
    else if (pick < 0.95) lines.push(`${service.instances[Math.floor(random() * service.instances.length)].host}.${service.name}.${topology.domain} A`);
    else lines.push(`nothere-${i}.${topology.domain} A`);
  }
  return `${lines.join('\n')}\n`;
}


/**
 * One dnsperf run; also its own CPU time (through a shell that reads its
 * waited-for child's time), so a run where dnsperf, not the server, was
 * the limit shows.
 */
function dnsperf(port, source, queries, extra) {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-a', source, '-d', queries, ...extra];
  const result = spawnSync('sh', ['-c', 'dnsperf "$@"; s=$?; cat /proc/$$/stat >&2; exit $s', 'sh', ...args], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (result.status !== 0) throw new Error(`dnsperf ${args.join(' ')} failed: ${result.stderr}`);
  const out = result.stdout;
  const stat = result.stderr.trim().split('\n').pop().split(') ')[1].split(' ');
  const cpu = (Number(stat[13]) + Number(stat[14])) / CLK_TCK;
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1]);
  const completed = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1]);
  const seconds = Number(/Run time \(s\):\s+([\d.]+)/.exec(out)?.[1]);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1]);
  return { out, qps, completed, seconds, lost, cpu };
}

/** p50 from dnsperf -v lines ("> NOERROR name A 0.000123"). */
function p50Latency(out) {
  const latencies = [];
  for (const line of out.split('\n')) {
    const match = /^> \S+ .* ([\d.]+)$/.exec(line);
    if (match) latencies.push(Number(match[1]));
  }
  latencies.sort((a, b) => a - b);
  return { p50: latencies[Math.floor(latencies.length / 2)] ?? NaN, samples: latencies.length };
}

/** A query for `name` type A, from `source`; resolves the sorted A addresses, or null without an answer. */
function ask(port, name, source = '127.0.0.1') {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const packet = Buffer.concat([
      Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
      ...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
      Buffer.from([0, 0, 1, 0, 1]),
    ]);
    const timer = setTimeout(() => {
      socket.close();
      resolve(null);
    }, 1000);
    socket.on('message', (reply) => {
      clearTimeout(timer);
      socket.close();
      resolve(answerAddresses(reply));
    });
    socket.on('error', () => undefined);
    socket.bind(0, source, () => socket.send(packet, port, '127.0.0.1'));
  });
}

/** The A records of a reply (rcode first), sorted: enough to compare two servers. */
function answerAddresses(reply) {
  const skip = (offset) => {
    for (;;) {
      const length = reply[offset];
      if (length === 0) return offset + 1;
      if ((length & 0xc0) === 0xc0) return offset + 2;
      offset += 1 + length;
    }
  };
  const rcode = reply[3] & 0xf;
  const count = reply.readUInt16BE(6);
  let offset = skip(12) + 4;
  const addresses = [];
  for (let i = 0; i < count; i++) {
    offset = skip(offset);
    const type = reply.readUInt16BE(offset);
    const length = reply.readUInt16BE(offset + 8);
    if (type === 1) addresses.push(reply.subarray(offset + 10, offset + 14).join('.'));
    offset += 10 + length;
  }
  return `${rcode}:${addresses.sort().join(',')}`;
}

function rssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024, peak: Number(/VmHWM:\s+(\d+)/.exec(status)[1]) / 1024 };
}

async function waitForAnswer(port, name, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await ask(port, name)) !== null) return true;
    await sleep(10);
  }
  return false;
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
}

/** A server of the bench: started, then answering (or the bench fails saying which). */
async function startServer(name, command, args, probe) {
  const started = performance.now();
  // Peers log their start-up at length: kept in a file, shown when one fails.
  const logFile = join(benchDir, `${name}.log`);
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', openSync(logFile, 'w')] });
  if (!(await waitForAnswer(PORTS[name], probe, 180_000))) throw new Error(`${name} did not answer on 127.0.0.1:${PORTS[name]}:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
  return { child, firstAnswerS: (performance.now() - started) / 1000 };
}

/** The RSS of a process and of each of its children (a cluster's workers), MiB. */
function rssTree(pid) {
  let children = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    // none
  }
  return [rssMiB(pid), ...children.map((child) => rssMiB(child))];
}

async function main(dir) {
  const version = (command, args) => {
    const r = spawnSync(command, args, { encoding: 'utf8' });
    return `${r.stdout}${r.stderr}`.split('\n')[0].trim();
  };
  const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
  log(`machine: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores (${cpuModel}), node ${process.version}; ${version('nsd', ['-v'])}; ${version('named', ['-v'])}; ${version('knotd', ['-V'])}; ${version('dnsmasq', ['-v'])}`);
  log(`load average at the start: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  log('generating the 10,000-host inputs (bench/compile.mjs) and compiling them ...');
  execFileSync(process.execPath, [join(ROOT, 'bench', 'compile.mjs'), '--inputs-only', dir], { stdio: 'ignore' });
  const compiled = join(dir, 'compiled.json');
  execFileSync(process.execPath, [BIN, 'compile', '-s', join(dir, 'services.yml'), '-i', join(dir, 'hosts.yml'), '-o', compiled], { stdio: 'inherit' });
  const topology = JSON.parse(readFileSync(compiled, 'utf8'));

  // One loopback source per view: the largest overlay sets, each with one host that asks from 127.0.2.N.
  const bySet = new Map();
  for (const host of Object.values(topology.hosts)) {
    const key = Object.keys(host.overlays).sort().join(',');
    if (key === '') continue;
    bySet.set(key, [...(bySet.get(key) ?? []), host]);
  }
  const views = [...bySet].sort((a, b) => b[1].length - a[1].length).slice(0, VIEWS).map(([key, hosts], i) => {
    const host = hosts[0];
    const source = `127.0.2.${i + 1}`;
    host.public_ips = [...host.public_ips, source];
    for (const service of Object.values(topology.services)) for (const instance of service.instances) if (instance.host === host.name) instance.public_ips = host.public_ips;
    return { key, source, viewer: { overlays: host.overlays } };
  });
  const topologyFile = join(dir, 'topology.json');
  writeFileSync(topologyFile, JSON.stringify(topology));
  const publicNames = zoneFor(topology, null);
  const bindViews = views.map((view, i) => ({ name: `v${i + 1}`, clients: viewClients(topology, view.key), names: zoneFor(topology, view.viewer) }));
  const sources = [{ label: 'public', source: '127.0.0.1' }, ...views.map((v) => ({ label: v.key, source: v.source }))];
  log(`zone ${topology.domain}: ${publicNames.size} names, ${Object.keys(topology.hosts).length} hosts, ${Object.keys(topology.services).length} services, ${topology.overlays.length} overlays, ${bySet.size} overlay sets; asking from ${sources.map((s) => `${s.source} (${s.label})`).join(', ')}`);

  const queries = join(dir, 'queries.txt');
  const queryText = queryFile(topology, prng(42));
  writeFileSync(queries, queryText);
  const probeName = `${Object.values(topology.services)[0].name}.${topology.domain}`;

  // --- ours: start-up time and memory on the whole topology, one worker and two -----------
  const oursArgs = (port, workers) => [...CLI_NODE_ARGS, ...(workers === 1 ? profileArgs('ours') : []), BIN, 'dns', '--topology', topologyFile, '--listen', `127.0.0.1:${port}`, '--no-forward', '--no-watch', '--workers', String(workers), '--log-level', 'warn'];
  const ours = await startServer('ours', process.execPath, oursArgs(PORTS.ours, 1), probeName);
  log(`ours (1 worker): first answer ${sig(ours.firstAnswerS)} s after start; RSS ${sig(rssMiB(ours.child.pid).rss)} MiB`);
  if (PROFILE_DIR !== null) return profileRun({ ours, topology, queries, sources, publicNames, dir });
  const ours2 = await startServer('ours_2', process.execPath, oursArgs(PORTS.ours_2, 2), probeName);
  log(`ours (2 workers): first answer ${sig(ours2.firstAnswerS)} s after start; RSS per process ${rssTree(ours2.child.pid).map((r) => sig(r.rss)).join(' + ')} MiB (primary + workers)`);

  // --- the peers ----------------------------------------------------------------------------
  const bindStart = performance.now();
  const bindConf = writeBind(join(dir, 'bind'), { domain: topology.domain, port: PORTS.bind9, views: bindViews, publicNames });
  const bind2Conf = writeBind(join(dir, 'bind2'), { domain: topology.domain, port: PORTS.bind9_2, views: bindViews, publicNames });
  log(`BIND: ${bindViews.length + 1} views (${bindViews.map((v) => `${v.name}: ${v.clients.length} clients`).join(', ')}, public), zone files written in ${sig((performance.now() - bindStart) / 1000)} s`);
  const servers = { ours: ours.child, ours_2: ours2.child };
  servers.bind9 = (await startServer('bind9', 'named', ['-g', '-n', '1', '-c', bindConf], probeName)).child;
  servers.bind9_2 = (await startServer('bind9_2', 'named', ['-g', '-n', '2', '-c', bind2Conf], probeName)).child;
  servers.knot = (await startServer('knot', 'knotd', ['-c', writeKnot(join(dir, 'knot'), { domain: topology.domain, port: PORTS.knot, names: publicNames })], probeName)).child;
  servers.dnsmasq = (await startServer('dnsmasq', 'dnsmasq', dnsmasqArgs(join(dir, 'dnsmasq'), { domain: topology.domain, port: PORTS.dnsmasq, names: publicNames }), probeName)).child;
  servers.nsd = (await startServer('nsd', 'nsd', ['-d', '-c', writeNsd(join(dir, 'nsd'), { domain: topology.domain, port: PORTS.nsd, names: publicNames })], probeName)).child;
  const zoneJson = join(dir, 'zone.json');
  writeFileSync(zoneJson, JSON.stringify({ domain: topology.domain, names: Object.fromEntries(publicNames) }));
  servers['node-ceiling'] = (await startServer('node-ceiling', process.execPath, [CEILING, String(PORTS['node-ceiling']), zoneJson], probeName)).child;
  log(`peers up; BIND RSS ${sig(rssMiB(servers.bind9.pid).rss)} MiB with ${bindViews.length + 1} views`);

  // --- the same answers: a sample of names from every source, against ours ------------------
  const sample = [...new Set(queryText.split('\n').filter(Boolean).map((l) => l.split(' ')[0]))].slice(0, 150);
  const withViews = ['ours_2', 'bind9', 'bind9_2'];
  const noViews = ['knot', 'dnsmasq', 'nsd'];
  for (const { label, source } of sources) {
    const mismatches = {};
    for (const name of sample) {
      const mine = await ask(PORTS.ours, name, source);
      for (const peer of [...withViews, ...(source === '127.0.0.1' ? noViews : [])]) {
        if ((await ask(PORTS[peer], name, source)) !== mine) mismatches[peer] = (mismatches[peer] ?? 0) + 1;
      }
    }
    log(`same answers as ours from ${source} (${label}), ${sample.length} names: ${Object.keys(mismatches).length === 0 ? 'all peers agree' : Object.entries(mismatches).map(([peer, n]) => `${peer} differs on ${n}`).join(', ')}`);
  }

  // --- warm-up: every server answers the query mix once from every source ----------------------
  // Ours encodes an answer on its first query per (view, name), where the C servers did all the work
  // at load; without this the first timed run of ours would pay for 5 views' encoding.
  const targets = ['ours', 'ours_2', 'bind9', 'bind9_2', 'knot', 'dnsmasq', 'nsd', 'node-ceiling'];
  for (const name of targets) {
    for (const { source } of sources) {
      await sleep(0);
      dnsperf(PORTS[name], source, queries, ['-n', '1', '-q', '200', '-t', '2']);
    }
  }

  // --- throughput: each target from every source in turn, interleaved by target ---------------
  const perf = Object.fromEntries(targets.map((t) => [t, { completed: 0, seconds: 0, lost: 0, serverCpu: 0, clientCpu: 0 }]));
  for (let round = 0; round < QPS_ROUNDS; round++) {
    for (const name of targets) {
      const entry = perf[name];
      const cpuBefore = treeCpuSeconds(servers[name].pid);
      let completed = 0;
      let seconds = 0;
      let clientCpu = 0;
      for (const { source } of sources) {
        // A turn of the event loop between the synchronous runs: a signal (SIGINT, SIGTERM) is handled here.
        await sleep(0);
        const result = dnsperf(PORTS[name], source, queries, ['-l', String(QPS_SECONDS), '-q', '500', '-t', '2']);
        completed += result.completed;
        seconds += result.seconds;
        clientCpu += result.cpu;
        entry.lost += result.lost;
      }
      const serverCpu = treeCpuSeconds(servers[name].pid) - cpuBefore;
      entry.completed += completed;
      entry.seconds += seconds;
      entry.serverCpu += serverCpu;
      entry.clientCpu += clientCpu;
      log(`round ${round + 1} ${name}: ${sig(completed / seconds)} qps over ${sources.length} sources; CPU: server ${Math.round((100 * serverCpu) / seconds)}%, dnsperf ${Math.round((100 * clientCpu) / seconds)}% of a core; load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
    }
  }
  const qps = Object.fromEntries(targets.map((t) => [t, perf[t].completed / perf[t].seconds]));

  // --- latency at a fixed rate, asked as the first view -------------------------------------
  const latency = {};
  for (const name of targets) {
    await sleep(0);
    const result = dnsperf(PORTS[name], sources[1].source, queries, ['-l', String(LATENCY_SECONDS), '-Q', String(LATENCY_RATE), '-q', '500', '-t', '2', '-v']);
    latency[name] = p50Latency(result.out).p50 * 1e6;
    log(`${name} at ${LATENCY_RATE} qps: p50 ${sig(latency[name])} us, ${result.lost} lost`);
  }

  // --- memory after the load, and after answering every name once ----------------------------
  const afterLoad = rssMiB(ours.child.pid);
  log(`ours after load: RSS ${sig(afterLoad.rss)} MiB (peak ${sig(afterLoad.peak)} MiB)`);
  const allNames = join(dir, 'all-names.txt');
  writeFileSync(allNames, [...publicNames.keys()].map((n) => `${n}.${topology.domain} A`).join('\n') + '\n');
  dnsperf(PORTS.ours, '127.0.0.1', allNames, ['-n', '1', '-q', '200', '-t', '2']);
  const afterAll = rssMiB(ours.child.pid);
  log(`ours after answering all ${publicNames.size} names: RSS ${sig(afterAll.rss)} MiB (peak ${sig(afterAll.peak)} MiB)`);
  log(`ours (2 workers) after load: RSS per process ${rssTree(ours2.child.pid).map((r) => sig(r.peak)).join(' + ')} MiB peak (primary + workers)`);

  log('');
  log(`load average at the end: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  for (const peer of ['bind9', 'dnsmasq', 'knot', 'nsd']) log(`RESULT qps ours=${Math.round(qps.ours)} ${peer}=${Math.round(qps[peer])} ratio=${ratio(qps.ours, qps[peer])}`);
  for (const peer of ['bind9', 'dnsmasq', 'knot', 'nsd']) log(`RESULT p50 ours=${sig(latency.ours)} ${peer}=${sig(latency[peer])} ratio=${ratio(latency[peer], latency.ours)}`);
  log(`RESULT qps_workers_2 ours_2=${Math.round(qps.ours_2)} bind9_2=${Math.round(qps.bind9_2)} ratio=${ratio(qps.ours_2, qps.bind9_2)}`);
  log(`RESULT qps_workers_2 ours_2=${Math.round(qps.ours_2)} nsd=${Math.round(qps.nsd)} ratio=${ratio(qps.ours_2, qps.nsd)}`);
  log(`RESULT qps_workers_2_vs_1 ours_2=${Math.round(qps.ours_2)} ours=${Math.round(qps.ours)} ratio=${ratio(qps.ours_2, qps.ours)}`);
  log(`RESULT p50_workers_2 ours_2=${sig(latency.ours_2)} bind9_2=${sig(latency.bind9_2)} ratio=${ratio(latency.bind9_2, latency.ours_2)}`);
  log(`RESULT qps_vs_half_nsd ours=${Math.round(qps.ours)} half_nsd=${Math.round(qps.nsd / 2)} ratio=${ratio(qps.ours, qps.nsd / 2)}`);
  log(`RESULT rss_10k_hosts_mib ours=${sig(afterAll.peak)} target=${RSS_TARGET_MIB} ratio=${ratio(RSS_TARGET_MIB, afterAll.peak)}`);
  log(`RESULT ceiling-qps node-ceiling=${Math.round(qps['node-ceiling'])} nsd=${Math.round(qps.nsd)} ratio=${ratio(qps['node-ceiling'], qps.nsd)}`);
  log(`RESULT qps-vs-ceiling ours=${Math.round(qps.ours)} node-ceiling=${Math.round(qps['node-ceiling'])} ratio=${ratio(qps.ours, qps['node-ceiling'])}`);
  log(`RESULT ceiling-p50-latency node-ceiling=${sig(latency['node-ceiling'])} nsd=${sig(latency.nsd)} ratio=${ratio(latency.nsd, latency['node-ceiling'])}`);
  log(`RESULT first_answer_10k_hosts_seconds ours=${sig(ours.firstAnswerS)} target=${START_TARGET_S} ratio=${ratio(START_TARGET_S, ours.firstAnswerS)}`);
  log(`RESULT first_answer_10k_hosts_seconds_workers_2 ours_2=${sig(ours2.firstAnswerS)} target=${START_TARGET_S} ratio=${ratio(START_TARGET_S, ours2.firstAnswerS)}`);
  await Promise.all(Object.values(servers).map((child) => stop(child)));
}

const dir = mkdtempSync(join(tmpdir(), 'meshplane-bench-dns-'));
benchDir = dir;
atExit(() => rmSync(dir, { recursive: true, force: true }));
/** BENCH_DNS_PROFILE: ours and the bare Node server under --cpu-prof, the same load, top frames by self time. */
async function profileRun({ ours, topology, queries, sources, dir, publicNames }) {
  const zoneJson = join(dir, 'zone.json');
  writeFileSync(zoneJson, JSON.stringify({ domain: topology.domain, names: Object.fromEntries(publicNames) }));
  const probeName = `${Object.values(topology.services)[0].name}.${topology.domain}`;
  // The inputs stay beside the profiles, to rerun a server by hand under the same load.
  mkdirSync(PROFILE_DIR, { recursive: true });
  for (const file of [zoneJson, queries, join(dir, 'topology.json')]) writeFileSync(join(PROFILE_DIR, basename(file)), readFileSync(file));
  const ceiling = await startServer('node-ceiling', process.execPath, [...profileArgs('node-ceiling'), CEILING, String(PORTS['node-ceiling']), zoneJson], probeName);
  const servers = { ours: ours.child, 'node-ceiling': ceiling.child };
  const measured = {};
  for (const name of Object.keys(servers)) for (const { source } of sources) dnsperf(PORTS[name], source, queries, ['-n', '1', '-q', '200', '-t', '2']);
  for (const name of Object.keys(servers)) {
    let completed = 0;
    let seconds = 0;
    const cpuBefore = treeCpuSeconds(servers[name].pid);
    const started = performance.now();
    for (const { source } of sources) {
      await sleep(0);
      const result = dnsperf(PORTS[name], source, queries, ['-l', String(QPS_SECONDS), '-q', '500', '-t', '2']);
      completed += result.completed;
      seconds += result.seconds;
    }
    const cpu = treeCpuSeconds(servers[name].pid) - cpuBefore;
    // Stopped right away: the profile's last seconds are the load.
    const windowS = (performance.now() - started) / 1000;
    await stop(servers[name]);
    measured[name] = { qps: completed / seconds, windowS };
    log(`${name}: ${sig(completed / seconds)} qps over ${sources.length} sources, ${sig((1e6 * cpu) / completed)} us of CPU per query; load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
  }
  for (const name of Object.keys(servers)) {
    log(`\n${name}: top frames by self time over the last ${sig(measured[name].windowS)} s (profile in ${join(PROFILE_DIR, name)})`);
    for (const { frame, share } of selfTimeTop(profileIn(join(PROFILE_DIR, name)), measured[name].windowS)) log(`${(100 * share).toFixed(1).padStart(5)}%  ${frame}`);
  }
  log(`RESULT qps-vs-ceiling ours=${Math.round(measured.ours.qps)} node-ceiling=${Math.round(measured['node-ceiling'].qps)} ratio=${ratio(measured.ours.qps, measured['node-ceiling'].qps)}`);
}

main(dir)
  .catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    process.exitCode = 1;
  })
  .finally(() => rmSync(dir, { recursive: true, force: true }));
