// Benchmark: `meshplane dns` against NSD serving the same zone (one view),
// driven by dnsperf with the same query mix in the same run, plus the
// memory and start-up figures for a 10,000-host topology.
//
// Run with `npm run bench:dns` (builds first). Needs dnsperf and nsd
// (Debian packages of those names; checked first: exit 2 with the apt-get
// line when one is missing); stops what it started on any exit. Everything
// listens on 127.0.0.1.
// Ends with `RESULT name ours=... <peer>=... ratio=...` lines; ratio > 1
// means ours is better (rates: ours/peer; times and sizes: peer/ours).
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { prng } from './prng.mjs';
import { clearTimeout, setTimeout } from 'node:timers';
import { URL, fileURLToPath } from 'node:url';
import { addressesSeenBy } from '../dist/topology/index.js';
import { atExit, exitOnSignals, spawnTracked as spawn } from './lib/children.mjs';
import { requireTools } from './lib/tools.mjs';

requireTools('bench/dns.mjs', ['dnsperf', 'nsd', 'nproc']);
exitOnSignals();

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist', 'cli', 'bin.js');
/** The node flags of the CLI's shebang (`#!/usr/bin/env -S node FLAGS`): the server runs with them, as installed. */
const CLI_NODE_ARGS = readFileSync(BIN, 'utf8').split('\n')[0].split(/\s+/).slice(3);
const OURS_PORT = 25353;
const NSD_PORT = 25354;
const CEILING_PORT = 25355;
const CEILING = join(ROOT, 'bench', 'node-udp-ceiling.mjs');
const QPS_SECONDS = 8;
const QPS_ROUNDS = 2;
const LATENCY_RATE = 20_000;
const LATENCY_SECONDS = 5;
const QUERY_LINES = 20_000;
const RSS_TARGET_MIB = 300;
const START_TARGET_S = 3;

const log = (line) => process.stdout.write(`${line}\n`);
const sig = (x) => (x === 0 ? '0' : x.toPrecision(Math.abs(x) >= 1000 ? 4 : 3).replace(/\.?0+$/, (m) => (m.includes('.') ? '' : m)));
const ratio = (a, b) => (b === 0 ? 'inf' : (a / b).toFixed(2));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The names of the zone with their public-view addresses (what an outside asker sees). */
function publicZone(topology) {
  const names = new Map();
  const add = (name, host) => {
    const list = names.get(name) ?? [];
    for (const address of addressesSeenBy(null, host)) if (!list.includes(address)) list.push(address);
    names.set(name, list);
  };
  for (const host of Object.values(topology.hosts)) add(host.name, host);
  for (const service of Object.values(topology.services)) {
    for (const instance of service.instances) {
      const host = topology.hosts[instance.host];
      add(service.name, host);
      add(`${host.name}.${service.name}`, host);
      if (instance.shard !== null) add(`${instance.shard}.${service.name}`, host);
    }
    if (service.master !== null) add(`${service.name}-master`, topology.hosts[service.master]);
  }
  return names;
}

function nsdZoneFile(domain, names) {
  const lines = [`$ORIGIN ${domain}.`, '$TTL 5', `@ IN SOA ns hostmaster 1 3600 600 86400 5`, '@ IN NS ns', 'ns IN A 127.0.0.1'];
  for (const [name, addresses] of names) for (const address of addresses) lines.push(`${name} IN ${address.includes(':') ? 'AAAA' : 'A'} ${address}`);
  return `${lines.join('\n')}\n`;
}

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

function dnsperf(port, queries, extra) {
  const out = execFileSync('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queries, ...extra], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1]);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1]);
  return { out, qps, lost };
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

function query(port, name) {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const labels = name.split('.');
    const packet = Buffer.concat([
      Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
      ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
      Buffer.from([0, 0, 1, 0, 1]),
    ]);
    const timer = setTimeout(() => {
      socket.close();
      resolve(false);
    }, 50);
    socket.on('message', () => {
      clearTimeout(timer);
      socket.close();
      resolve(true);
    });
    socket.on('error', () => undefined);
    socket.send(packet, port, '127.0.0.1');
  });
}

function rssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024, peak: Number(/VmHWM:\s+(\d+)/.exec(status)[1]) / 1024 };
}

async function waitForAnswer(port, name, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await query(port, name)) return true;
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

async function main(dir) {
  log(`machine: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, node ${process.version}, ${execFileSync('nsd', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0] || 'nsd'}`);
  log('generating the 10,000-host inputs (bench/compile.mjs) and compiling them ...');
  execFileSync(process.execPath, [join(ROOT, 'bench', 'compile.mjs'), '--inputs-only', dir], { stdio: 'ignore' });
  const topologyFile = join(dir, 'topology.json');
  execFileSync(process.execPath, [BIN, 'compile', '-s', join(dir, 'services.yml'), '-i', join(dir, 'hosts.yml'), '-o', topologyFile], { stdio: 'inherit' });
  const topology = JSON.parse(readFileSync(topologyFile, 'utf8'));
  const zone = publicZone(topology);
  log(`zone ${topology.domain}: ${zone.size} names, ${Object.keys(topology.hosts).length} hosts, ${Object.keys(topology.services).length} services, ${topology.overlays.length} overlays`);

  const queries = join(dir, 'queries.txt');
  writeFileSync(queries, queryFile(topology, prng(42)));

  // --- start-up time and memory of ours on the whole topology --------------
  const probeName = `${Object.values(topology.services)[0].name}.${topology.domain}`;
  const started = performance.now();
  const ours = spawn(process.execPath, [...CLI_NODE_ARGS, BIN, 'dns', '--topology', topologyFile, '--listen', `127.0.0.1:${OURS_PORT}`, '--no-forward', '--no-watch', '--log-level', 'warn'], { stdio: 'inherit' });
  if (!(await waitForAnswer(OURS_PORT, probeName, 30_000))) throw new Error('meshplane dns did not answer');
  const firstAnswerS = (performance.now() - started) / 1000;
  log(`ours: first answer ${sig(firstAnswerS)} s after start; RSS ${sig(rssMiB(ours.pid).rss)} MiB`);

  // --- NSD with the same zone ----------------------------------------------
  const nsdDir = join(dir, 'nsd');
  mkdirSync(nsdDir);
  writeFileSync(join(nsdDir, 'zone'), nsdZoneFile(topology.domain, zone));
  writeFileSync(
    join(nsdDir, 'nsd.conf'),
    `server:\n  ip-address: 127.0.0.1@${NSD_PORT}\n  server-count: 1\n  username: ""\n  chroot: ""\n  zonesdir: "${nsdDir}"\n  database: ""\n  pidfile: "${nsdDir}/nsd.pid"\n  xfrdfile: "${nsdDir}/xfrd.state"\n  zonelistfile: "${nsdDir}/zone.list"\n  logfile: "${nsdDir}/nsd.log"\n  rrl-ratelimit: 0\n  verbosity: 0\nremote-control:\n  control-enable: no\nzone:\n  name: ${topology.domain}\n  zonefile: zone\n`,
  );
  let nsd = null;
  let ceiling = null;
  try {
    nsd = spawn('nsd', ['-d', '-c', join(nsdDir, 'nsd.conf')], { stdio: 'inherit' });
    if (!(await waitForAnswer(NSD_PORT, probeName, 30_000))) throw new Error('NSD did not answer');

    // --- the bare Node ceiling: precomputed replies, nothing else ------------
    const zoneJson = join(dir, 'zone.json');
    writeFileSync(zoneJson, JSON.stringify({ domain: topology.domain, names: Object.fromEntries(zone) }));
    ceiling = spawn(process.execPath, [CEILING, String(CEILING_PORT), zoneJson], { stdio: 'inherit' });
    if (!(await waitForAnswer(CEILING_PORT, probeName, 30_000))) throw new Error('the Node ceiling server did not answer');
    const targets = [['ours', OURS_PORT], ['nsd', NSD_PORT], ['node-ceiling', CEILING_PORT]];

    // --- throughput, interleaved ---------------------------------------------
    const perf = { ours: [], nsd: [], 'node-ceiling': [] };
    for (let round = 0; round < QPS_ROUNDS; round++) {
      for (const [name, port] of targets) {
        const result = dnsperf(port, queries, ['-l', String(QPS_SECONDS), '-q', '500', '-t', '2']);
        perf[name].push(result.qps);
        log(`round ${round + 1} ${name}: ${sig(result.qps)} qps, ${result.lost} lost`);
      }
    }
    const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const qpsOurs = mean(perf.ours);
    const qpsNsd = mean(perf.nsd);

    // --- latency at a fixed rate ---------------------------------------------
    const latency = {};
    for (const [name, port] of targets) {
      const result = dnsperf(port, queries, ['-l', String(LATENCY_SECONDS), '-Q', String(LATENCY_RATE), '-q', '500', '-t', '2', '-v']);
      latency[name] = p50Latency(result.out);
      log(`${name} at ${LATENCY_RATE} qps: p50 ${sig(latency[name].p50 * 1e6)} us over ${latency[name].samples} queries, ${result.lost} lost`);
    }

    // --- memory after the load, and after answering every name once ----------
    const afterLoad = rssMiB(ours.pid);
    log(`ours after load: RSS ${sig(afterLoad.rss)} MiB (peak ${sig(afterLoad.peak)} MiB)`);
    const allNames = join(dir, 'all-names.txt');
    writeFileSync(allNames, [...zone.keys()].map((n) => `${n}.${topology.domain} A`).join('\n') + '\n');
    dnsperf(OURS_PORT, allNames, ['-n', '1', '-q', '200', '-t', '2']);
    const afterAll = rssMiB(ours.pid);
    log(`ours after answering all ${zone.size} names: RSS ${sig(afterAll.rss)} MiB (peak ${sig(afterAll.peak)} MiB)`);

    log('');
    log(`RESULT qps ours=${Math.round(qpsOurs)} nsd=${Math.round(qpsNsd)} ratio=${ratio(qpsOurs, qpsNsd)}`);
    log(`RESULT qps_vs_half_nsd ours=${Math.round(qpsOurs)} half_nsd=${Math.round(qpsNsd / 2)} ratio=${ratio(qpsOurs, qpsNsd / 2)}`);
    log(`RESULT p50-latency ours=${sig(latency.ours.p50 * 1e6)} nsd=${sig(latency.nsd.p50 * 1e6)} ratio=${ratio(latency.nsd.p50, latency.ours.p50)}`);
    log(`RESULT p50-latency-vs-2x-nsd-us ours=${sig(latency.ours.p50 * 1e6)} two_nsd=${sig(2 * latency.nsd.p50 * 1e6)} ratio=${ratio(2 * latency.nsd.p50, latency.ours.p50)}`);
    log(`RESULT rss_10k_hosts_mib ours=${sig(afterAll.peak)} target=${RSS_TARGET_MIB} ratio=${ratio(RSS_TARGET_MIB, afterAll.peak)}`);
    const qpsCeiling = mean(perf['node-ceiling']);
    log(`RESULT ceiling-qps node-ceiling=${Math.round(qpsCeiling)} nsd=${Math.round(qpsNsd)} ratio=${ratio(qpsCeiling, qpsNsd)}`);
    log(`RESULT qps-vs-ceiling ours=${Math.round(qpsOurs)} node-ceiling=${Math.round(qpsCeiling)} ratio=${ratio(qpsOurs, qpsCeiling)}`);
    log(`RESULT ceiling-p50-latency node-ceiling=${sig(latency['node-ceiling'].p50 * 1e6)} nsd=${sig(latency.nsd.p50 * 1e6)} ratio=${ratio(latency.nsd.p50, latency['node-ceiling'].p50)}`);
    log(`RESULT first_answer_10k_hosts_seconds ours=${sig(firstAnswerS)} target=${START_TARGET_S} ratio=${ratio(START_TARGET_S, firstAnswerS)}`);
  } finally {
    await stop(ours);
    if (nsd !== null) await stop(nsd);
    if (ceiling !== null) await stop(ceiling);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'meshplane-bench-dns-'));
atExit(() => rmSync(dir, { recursive: true, force: true }));
main(dir)
  .catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    process.exitCode = 1;
  })
  .finally(() => rmSync(dir, { recursive: true, force: true }));
