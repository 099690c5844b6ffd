// Benchmark: the gateway + agent tunnel (mTLS, HTTP/2 CONNECT streams)
// against a direct connection (the limit), haproxy in TCP mode (plaintext
// user-space proxy) and an OpenSSH reverse tunnel (`ssh -N -R`), all on
// loopback in one run, interleaved:
//   iperf3 throughput, 1 and 8 streams, both directions;
//   wrk requests/s on keep-alive and on new connections (haproxy answers);
//   wrk p50 and p99 latency at one connection, added over direct;
//   wrk with 1,000 clients at once, each request on a new connection (rate and errors);
//   memory of gateway + agent per 1,000 idle tunnelled connections.
// A pair of plain Node.js TCP relays (bench/node-relay.mjs) runs beside them
// as a reference: what two Node processes cost per connection and per byte
// before any TLS or HTTP/2, i.e. the ceiling of a two-process Node design.
// A bare mTLS HTTP/2 CONNECT tunnel in Node (bench/node-h2-tunnel.mjs) runs
// beside them too: ours' transport with nothing else, i.e. what Node's TLS and
// HTTP/2 cost before any of meshplane's routing, PROXY headers or metrics.
// Its two-worker form (issue 19, lever 5: does the second core pay?) is a
// target of its own, run only when named in BENCH_TARGETS:
// `node-h2-tunnel-2w` (2 gateway workers, 2 agent processes, Node cluster's
// default round-robin scheduling) and `node-h2-tunnel-2w-none` (the same
// with NODE_CLUSTER_SCHED_POLICY=none: the kernel spreads the accepts).
// Ours uses tcp-mode endpoints (the whole front port to one service), the
// same shape as haproxy's `mode tcp` and ssh's forwarded port.
//
// Run with `npm run bench:gateway` (builds first). Needs iperf3, wrk,
// haproxy, openssh-server and openssh-client (checked first: exit 2 with
// the apt-get line when one is missing); stops what it started on any exit. Ends with
// `RESULT <metric> ours=<v> <peer>=<v> ratio=<r>` (r > 1: ours is better).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { URL, fileURLToPath } from 'node:url';
import { issueMeshCredentials } from '../dist/pki/index.js';
import { atExit, exitOnSignals, spawnTracked, stopAll } from './lib/children.mjs';
import { treeCpuSeconds } from './lib/proc-cpu.mjs';
import { requireTools } from './lib/tools.mjs';

requireTools('bench/gateway.mjs', ['iperf3', 'wrk', 'haproxy', '/usr/sbin/sshd', 'ssh', 'ssh-keygen', 'nproc']);
exitOnSignals();

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist', 'cli', 'bin.js');
const RELAY = join(ROOT, 'bench', 'node-relay.mjs');
const GC_PRELOAD = join(ROOT, 'bench', 'gc-on-signal.mjs');
/** The node flags of the CLI's shebang (`#!/usr/bin/env -S node FLAGS`): the gateway and agents run with them, as installed. */
const CLI_NODE_ARGS = readFileSync(BIN, 'utf8').split('\n')[0].split(/\s+/).slice(3);
const H2_TUNNEL = join(ROOT, 'bench', 'node-h2-tunnel.mjs');
const P = { iperf: 25201, http: 25202, oursIperf: 25301, oursHttp: 25302, haIperf: 25401, haHttp: 25402, sshIperf: 25501, sshHttp: 25502, sshd: 25022, registration: 25400, relayIperf: 25601, relayHttp: 25602, relayIperfInner: 25611, relayHttpInner: 25612, h2Iperf: 25701, h2Http: 25702, h2TunnelIperf: 25711, h2TunnelHttp: 25712, h2IperfBackend: 25721 };
/**
 * The bare HTTP/2 tunnel's forms: W gateway workers (tunnel ports from `tunnel`, one a worker, per
 * backend), A agent processes, cluster scheduling. Only `node-h2-tunnel` runs unless BENCH_TARGETS
 * names the others (they cost a run minutes and memory that the default run does not need).
 */
const H2_FORMS = {
  'node-h2-tunnel': { front: [P.h2Iperf, P.h2Http], tunnel: [P.h2TunnelIperf, P.h2TunnelHttp], workers: 1, agents: 1, sched: null },
  'node-h2-tunnel-2w': { front: [25801, 25802], tunnel: [25811, 25821], workers: 2, agents: 2, sched: 'rr' },
  'node-h2-tunnel-2w-none': { front: [25901, 25902], tunnel: [25911, 25921], workers: 2, agents: 2, sched: 'none' },
};
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
/** BENCH_ONLY=wrk skips iperf3 (for quick iterations; the RESULT lines then lack throughput); BENCH_ONLY=new-conn runs only wrk with new connections. */
const ONLY = process.env.BENCH_ONLY ?? '';
/** BENCH_TARGETS=ours,ssh runs only those (and direct, the reference); for quick iterations. */
const ONLY_TARGETS = process.env.BENCH_TARGETS ? new Set(['direct', ...process.env.BENCH_TARGETS.split(',')]) : null;
/** Extra node flags for the gateway and agents, e.g. BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof'. */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const IPERF_SECONDS = 4;
const WRK_SECONDS = 4;
/**
 * BENCH_BEFORE_BIN=path/to/dist/cli/bin.js runs that build too, as target `before` (its gateway's
 * ports shifted by BEFORE_SHIFT), so a change is measured against the code before it in one run.
 */
const BEFORE_BIN = process.env.BENCH_BEFORE_BIN || null;
const BEFORE_SHIFT = 1000;
/** Extra agent flags for ours (BENCH_AGENT_ARGS) and for `before` (BENCH_BEFORE_AGENT_ARGS), e.g. '--backend-pool 4'. */
const AGENT_ARGS = (process.env.BENCH_AGENT_ARGS ?? '').split(' ').filter(Boolean);
const BEFORE_AGENT_ARGS = (process.env.BENCH_BEFORE_AGENT_ARGS ?? '').split(' ').filter(Boolean);
/** BENCH_SKIP_MEMORY=1 skips the idle-memory figures (for quick iterations on the load rounds). */
const SKIP_MEMORY = process.env.BENCH_SKIP_MEMORY === '1';
/**
 * Clients of the crowd run (new connections, all at once). They all come from 127.0.0.1, which here
 * stands for many clients: ours' gateway gets a per-source cap above the crowd (by default a tenth
 * of the front's cap, which would reset most of them, as it should from one real address).
 */
const CROWD = Number(process.env.BENCH_CROWD ?? 1000);
const IDLE_CONNECTIONS = Number(process.env.BENCH_IDLE ?? 1000);
/** Batches of idle connections opened one after another (after a warm-up): the slope from the first to the last. */
const MEMORY_BATCHES = 3;

const log = (line) => process.stdout.write(`${line}\n`);
const sig = (x) => (Number.isFinite(x) ? Number(x.toPrecision(3)).toString() : String(x));
const children = [];

function start(command, args, options = {}) {
  const child = spawnTracked(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  child.output = () => out;
  children.push(child);
  return child;
}

async function waitForPort(port, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.on('connect', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await sleep(50);
  }
}

function rssKiB(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

/**
 * Memory the processes hold, in KiB: each collects its garbage first (bench/gc-on-signal.mjs,
 * on SIGUSR2) and reports process.memoryUsage(); summed over the processes.
 */
async function heldMemoryKiB(children, memoryDir) {
  const files = children.map((child) => join(memoryDir, `${child.pid}.json`));
  for (const file of files) rmSync(file, { force: true });
  for (const child of children) child.kill('SIGUSR2');
  const deadline = Date.now() + 10_000;
  const reports = [];
  for (const file of files) {
    for (;;) {
      try {
        reports.push(JSON.parse(readFileSync(file, 'utf8')));
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`no memory report in ${file} (started with ${GC_PRELOAD}?)`);
        await sleep(50);
      }
    }
  }
  const sum = (key) => reports.reduce((total, report) => total + report[key], 0) / 1024;
  return { rss: sum('rss'), heapUsed: sum('heapUsed'), heapTotal: sum('heapTotal'), external: sum('external') };
}

function iperf(port, streams, reverse) {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(IPERF_SECONDS), '-J', '-P', String(streams)];
  if (reverse) args.push('-R');
  for (let attempt = 1; ; attempt++) {
    let out;
    try {
      out = JSON.parse(execFileSync('iperf3', args, { encoding: 'utf8', timeout: 60_000 }));
    } catch (err) {
      out = { error: String(err.stdout ?? err) };
    }
    if (out.end?.sum_received !== undefined) return out.end.sum_received.bits_per_second / 1e9;
    if (attempt === 3) throw new Error(`iperf3 ${args.join(' ')}: ${out.error ?? 'no result'}`);
    execFileSync('sleep', ['1']);
  }
}

function wrk(port, extra) {
  const out = execFileSync('wrk', ['-d', String(WRK_SECONDS), ...extra, `http://127.0.0.1:${port}/`], { encoding: 'utf8', timeout: 60_000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  const percentile = (p) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
    return m === null ? NaN : Number(m[1]) * { us: 1, ms: 1000, s: 1e6 }[m[2]];
  };
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const errorCount = (socketErrors === null ? 0 : socketErrors.slice(1).reduce((a, b) => a + Number(b), 0)) + (non2xx === null ? 0 : Number(non2xx[1]));
  const errors = [socketErrors?.[0], non2xx?.[0]].filter(Boolean).join('; ');
  return { rps, p50us: percentile(50), p99us: percentile(99), errors, errorCount };
}

async function main(dir) {
  log(`machine: ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, node ${process.version}, ${execFileSync('haproxy', ['-v'], { encoding: 'utf8' }).split('\n')[0]}, ${execFileSync('ssh', ['-V'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) || 'ssh'}`);

  // --- the mesh: a gateway host and a backend host, credentials from the PKI ---
  // Health checks off: iperf3 is no HTTP server, and the runs compare tunnels, not checks.
  writeFileSync(join(dir, 'hosts.yml'), `all:\n  children:\n    gateway:\n      hosts:\n        gw1: {ip: 127.0.50.1}\n    backend:\n      hosts:\n        b1: {ip: 127.0.50.2}\n`);
  // `shift` moves the gateway's own ports: the `before` target (BENCH_BEFORE_BIN) runs a second
  // gateway beside ours, on the same backends.
  const services = (shift) =>
    `gateway:\n  scheduling_group: gateway\n  ports: [${P.registration + shift}]\n  service_credentials: [{name: gateway, enable_client: false}]\n` +
    `iperf:\n  scheduling_group: backend\n  ports: [${P.iperf}]\n  service_credentials: [{name: iperf}]\n  gateway_endpoints:\n    - {name: raw, port: ${P.oursIperf + shift}, mode: tcp, health: false}\n` +
    `http:\n  scheduling_group: backend\n  ports: [${P.http}]\n  service_credentials: [{name: http}]\n  gateway_endpoints:\n    - {name: raw, port: ${P.oursHttp + shift}, mode: tcp, health: false}\n`;
  const compile = (name, shift) => {
    writeFileSync(join(dir, `${name}.yml`), services(shift));
    const file = join(dir, `${name}.json`);
    execFileSync(process.execPath, [BIN, 'compile', '-s', join(dir, `${name}.yml`), '-i', join(dir, 'hosts.yml'), '-o', file]);
    return file;
  };
  const topologyFile = compile('topology', 0);
  const topology = JSON.parse(readFileSync(topologyFile, 'utf8'));
  const state = join(dir, 'state');
  await issueMeshCredentials({ topology, stateDir: state });

  // --- backends: iperf3 and haproxy answering small HTTP requests ---
  start('iperf3', ['-s', '-p', String(P.iperf), '-B', '127.0.0.1']);
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    `global\n  maxconn 8000\ndefaults\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n` +
      `frontend backend_http\n  mode http\n  bind 127.0.0.1:${P.http}\n  http-request return status 200 content-type text/plain string "ok\\n"\n` +
      `listen tcp_iperf\n  mode tcp\n  bind 127.0.0.1:${P.haIperf}\n  server s 127.0.0.1:${P.iperf}\n` +
      `listen tcp_http\n  mode tcp\n  bind 127.0.0.1:${P.haHttp}\n  server s 127.0.0.1:${P.http}\n`,
  );
  start('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]);

  // --- ours: the real CLI processes ---
  // Preloaded for the memory figures only: it acts on SIGUSR2, which nothing else sends.
  const memoryDir = join(dir, 'memory');
  mkdirSync(memoryDir);
  const measured = [...CLI_NODE_ARGS, '--expose-gc', '--import', GC_PRELOAD];
  const measuredEnv = { env: { ...process.env, BENCH_MEMORY_DIR: memoryDir } };
  const startOurs = (bin, topologyPath, shift, agentArgs) => {
    const gatewayProcess = start(process.execPath, [...NODE_ARGS, ...measured, bin, 'gateway', '--topology', topologyPath, '--credentials-root', join(state, 'credentials', 'gw1'), '--listen', `127.0.0.1:${P.registration + shift}`, '--front-address', '127.0.0.1', '--log-level', 'warn', '--max-connections-per-source', String(CROWD * 4)], measuredEnv);
    const agentProcesses = ['iperf', 'http'].map((service) =>
      start(process.execPath, [...NODE_ARGS, ...measured, bin, 'agent', '--topology', topologyPath, '--host', 'b1', '--service', service, '--credentials-root', join(state, 'credentials', 'b1'), '--gateway', `127.0.0.1:${P.registration + shift}`, '--log-level', 'warn', ...agentArgs], measuredEnv),
    );
    return [gatewayProcess, agentProcesses];
  };
  const [gateway, agents] = startOurs(BIN, topologyFile, 0, AGENT_ARGS);
  // The same code as another build (e.g. the commit before a change), for before/after in one run.
  if (BEFORE_BIN !== null) startOurs(BEFORE_BIN, compile('topology-before', BEFORE_SHIFT), BEFORE_SHIFT, BEFORE_AGENT_ARGS);

  // --- ssh -R: sshd on loopback with a throwaway host key and client key ---
  const ssh = join(dir, 'ssh');
  mkdirSync(ssh);
  mkdirSync('/run/sshd', { recursive: true });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(ssh, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(ssh, 'client_key')]);
  writeFileSync(join(ssh, 'authorized_keys'), readFileSync(join(ssh, 'client_key.pub')));
  chmodSync(join(ssh, 'authorized_keys'), 0o600);
  writeFileSync(
    join(ssh, 'sshd_config'),
    `ListenAddress 127.0.0.1:${P.sshd}\nHostKey ${join(ssh, 'host_key')}\nAuthorizedKeysFile ${join(ssh, 'authorized_keys')}\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile ${join(ssh, 'sshd.pid')}\nAllowTcpForwarding yes\nGatewayPorts no\nMaxStartups 10000\n`,
  );
  start('/usr/sbin/sshd', ['-D', '-e', '-f', join(ssh, 'sshd_config')]);
  await waitForPort(P.sshd);
  start('ssh', ['-N', '-p', String(P.sshd), '-i', join(ssh, 'client_key'), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ExitOnForwardFailure=yes', '-R', `127.0.0.1:${P.sshIperf}:127.0.0.1:${P.iperf}`, '-R', `127.0.0.1:${P.sshHttp}:127.0.0.1:${P.http}`, 'root@127.0.0.1']);

  // Probe only the HTTP ports: a bare connection to iperf3 aborts its current test.
  for (const port of [P.http, P.haHttp, P.sshHttp, P.oursHttp, ...(BEFORE_BIN === null ? [] : [P.oursHttp + BEFORE_SHIFT])]) await waitForPort(port);
  await sleep(1000);

  // --- memory per 1,000 idle tunnelled connections, measured before the load rounds: the
  // growth of memory held (read after each process collected its garbage, bench/gc-on-signal.mjs)
  // from 1,000 to 4,000 open connections, per 1,000. A warm-up batch is opened and closed first
  // (JIT code, heap and socket pools grow once). The batches then stay open: with nothing freed
  // between readings, no reading can reuse pages that an earlier batch gave back. (RSS as read,
  // garbage included, is printed too: it depends on when V8 last collected.)
  const ourProcesses = [gateway, ...agents];
  const measureIdle = async (port, processes) => {
    const rss = () => processes.reduce((sum, child) => sum + rssKiB(child.pid), 0);
    const open = [];
    const openBatch = async () => {
      for (let i = 0; i < IDLE_CONNECTIONS; i++) {
        open.push(
          await new Promise((resolve, reject) => {
            const s = connect(port, '127.0.0.1', () => resolve(s));
            s.on('error', reject);
          }),
        );
      }
      await sleep(2000);
    };
    const closeAll = async () => {
      for (const s of open.splice(0)) s.destroy();
      await sleep(2000);
    };
    await openBatch();
    await closeAll();
    const points = [];
    for (let i = 0; i <= MEMORY_BATCHES; i++) {
      await openBatch();
      points.push({ open: open.length, rss: rss(), held: await heldMemoryKiB(processes, memoryDir) });
    }
    if (process.env.BENCH_SNAPSHOT === '1') {
      // Heap snapshots while the connections are open (children started with --heapsnapshot-signal=SIGUSR1).
      for (const child of processes) child.kill('SIGUSR1');
      await sleep(15_000);
    }
    await closeAll();
    const first = points[0];
    const last = points.at(-1);
    const perThousand = (kib) => kib / 1024 / ((last.open - first.open) / 1000);
    log(`  held after GC with ${points.map((p) => `${p.open}: ${sig(p.held.rss / 1024)}`).join(', ')} MiB; RSS as read ${points.map((p) => sig(p.rss / 1024)).join(', ')} MiB`);
    return {
      first,
      last,
      heldPerK: perThousand(last.held.rss - first.held.rss),
      rssPerK: perThousand(last.rss - first.rss),
      heapPerK: perThousand(last.held.heapUsed - first.held.heapUsed),
      heapTotalPerK: perThousand(last.held.heapTotal - first.held.heapTotal),
      externalPerK: perThousand(last.held.external - first.held.external),
    };
  };
  const describe = (m) =>
    `${sig(m.heldPerK)} MiB per 1,000 held from ${m.first.open} to ${m.last.open} (JS heap ${sig(m.heapPerK)} used, ${sig(m.heapTotalPerK)} reserved; external ${sig(m.externalPerK)}); ${sig(m.rssPerK)} MiB per 1,000 as read`;
  const memory = SKIP_MEMORY ? null : await measureIdle(P.oursHttp, ourProcesses);
  if (memory !== null) log(`ours, gateway + agents, idle tunnelled connections: ${describe(memory)}`);

  // --- the reference: two plain Node relays, outer -> inner -> backend ---
  start(process.execPath, [RELAY, String(P.relayIperfInner), String(P.iperf)]);
  start(process.execPath, [RELAY, String(P.relayIperf), String(P.relayIperfInner)]);
  const relayPair = [
    start(process.execPath, [...measured, RELAY, String(P.relayHttpInner), String(P.http)], measuredEnv),
    start(process.execPath, [...measured, RELAY, String(P.relayHttp), String(P.relayHttpInner)], measuredEnv),
  ];
  await waitForPort(P.relayHttp);
  const relayMemory = SKIP_MEMORY ? null : await measureIdle(P.relayHttp, relayPair);
  if (relayMemory !== null) log(`node-relay-pair, idle connections: ${describe(relayMemory)}`);
  const memoryResults = () => {
  if (memory === null || relayMemory === null) return;
  log(`RESULT mem-per-1k-idle-mib ours=${sig(memory.heldPerK)} target=10 ratio=${sig(10 / memory.heldPerK)}`);
  log(`RESULT ceiling-mem-per-1k-idle-mib node-relay-pair=${sig(relayMemory.heldPerK)} ours=${sig(memory.heldPerK)} ratio=${sig(relayMemory.heldPerK / memory.heldPerK)}`);
  };
  /** BENCH_ROUNDS=0: the memory figures only. */
  if (ROUNDS === 0) return memoryResults();

  // --- the other reference: a bare mTLS HTTP/2 CONNECT tunnel in Node, one pair per backend ---
  const gatewayDir = join(state, 'credentials', 'gw1', 'x509', 'gateway');
  // Its own iperf3 server: a test it leaves unfinished must not keep the shared one busy.
  start('iperf3', ['-s', '-p', String(P.h2IperfBackend), '-B', '127.0.0.1']);
  /** Per form: the gateway and agent processes of its http pair (the CPU figures under new connections). */
  const h2Http = {};
  for (const [form, { front, tunnel, workers, agents: agentCount, sched }] of Object.entries(H2_FORMS)) {
    if (form !== 'node-h2-tunnel' && !ONLY_TARGETS?.has(form)) continue;
    const env = { env: { ...process.env, H2_AGENTS: String(agentCount), ...(sched === null ? {} : { NODE_CLUSTER_SCHED_POLICY: sched }) } };
    for (const [i, [service, backend]] of [['iperf', P.h2IperfBackend], ['http', P.http]].entries()) {
      const h2Gateway = start(process.execPath, [H2_TUNNEL, 'gateway', String(front[i]), String(tunnel[i]), join(gatewayDir, 'ca.pem'), join(gatewayDir, 'server', 'cert.pem'), join(gatewayDir, 'server', 'private_key.pem'), String(workers)], env);
      for (let w = 0; w < workers; w++) await waitForPort(tunnel[i] + w);
      const agentDir = join(state, 'credentials', 'b1', 'x509', service);
      const h2Agent = start(process.execPath, [H2_TUNNEL, 'agent', String(tunnel[i]), String(backend), join(agentDir, 'ca.pem'), join(agentDir, 'client', 'cert.pem'), join(agentDir, 'client', 'private_key.pem'), `gateway.${topology.domain}`, String(agentCount), String(workers)], env);
      // Every gateway worker holds a tunnel from every agent process before a client comes.
      const deadline = Date.now() + 15_000;
      while (!h2Gateway.output().includes('ready')) {
        if (Date.now() > deadline) throw new Error(`${form} ${service}: no tunnels after 15 s: ${h2Gateway.output()}${h2Agent.output()}`);
        await sleep(50);
      }
      if (service === 'http') h2Http[form] = { gateway: h2Gateway.pid, agent: h2Agent.pid, processes: `${workers === 1 ? 1 : workers + 1}+${agentCount === 1 ? 1 : agentCount + 1}` };
    }
  }
  await sleep(500);

  const allTargets = { direct: [P.iperf, P.http], haproxy: [P.haIperf, P.haHttp], ssh: [P.sshIperf, P.sshHttp], ours: [P.oursIperf, P.oursHttp], 'node-relay-pair': [P.relayIperf, P.relayHttp], ...Object.fromEntries(Object.keys(h2Http).map((form) => [form, H2_FORMS[form].front])), ...(BEFORE_BIN === null ? {} : { before: [P.oursIperf + BEFORE_SHIFT, P.oursHttp + BEFORE_SHIFT] }) };
  const targets = Object.fromEntries(Object.entries(allTargets).filter(([t]) => ONLY_TARGETS === null || ONLY_TARGETS.has(t)));
  const results = {};
  const record = (target, metric, value) => ((results[target] ??= {})[metric] ??= []).push(value);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [target, [iperfPort, httpPort]] of Object.entries(targets)) {
      for (const [metric, streams, reverse] of [['throughput-1stream-up', 1, false], ['throughput-1stream-down', 1, true], ['throughput-8streams-up', 8, false], ['throughput-8streams-down', 8, true]]) {
        let gbits = NaN;
        try {
          if (ONLY === '') gbits = iperf(iperfPort, streams, reverse);
        } catch (err) {
          // A reference that fails (the bare tunnels have no error handling to speak of) must not cost the run.
          if (target === 'ours' || target === 'ssh' || target === 'direct') throw err;
          log(`${target}: ${metric} failed (${err.message.split('\n')[0]}); recorded as NaN`);
        }
        record(target, metric, gbits);
      }
      // A signal that came during the synchronous runs above is handled here (the loop yields once per target).
      await sleep(0);
      // BENCH_ONLY=new-conn: only the new-connection run (e.g. for a CPU profile of that load).
      const skipped = { rps: NaN, p50us: NaN, p99us: NaN, errors: '', errorCount: 0 };
      const newOnly = ONLY === 'new-conn';
      const keepalive = newOnly ? skipped : wrk(httpPort, ['-t', '2', '-c', '32']);
      // Where the time goes under new connections: CPU seconds of ours' gateway and http agent over the
      // run (for the bare tunnels: the gateway's and the agent's processes summed, primaries included).
      const measuredPids = target === 'ours' ? [gateway.pid, agents[1].pid] : target in h2Http ? [h2Http[target].gateway, h2Http[target].agent] : null;
      const busy = measuredPids?.map(treeCpuSeconds) ?? null;
      const fresh = wrk(httpPort, ['-t', '2', '-c', '32', '-H', 'Connection: close']);
      if (busy !== null) {
        const [gatewayCpu, agentCpu] = measuredPids.map((pid, i) => treeCpuSeconds(pid) - busy[i]);
        const perConnection = `${sig(((gatewayCpu + agentCpu) / (fresh.rps * WRK_SECONDS)) * 1e6)} µs CPU per connection, gateway + agent`;
        if (target === 'ours') log(`  ours under new connections: gateway ${sig(gatewayCpu / WRK_SECONDS)} cores, http agent ${sig(agentCpu / WRK_SECONDS)} cores (of ${execFileSync('nproc', { encoding: 'utf8' }).trim()}; wrk and the backend share the rest); ${perConnection}`);
        else log(`  ${target} under new connections: gateway ${sig(gatewayCpu / WRK_SECONDS)} cores, agent ${sig(agentCpu / WRK_SECONDS)} cores (processes ${h2Http[target].processes}, summed); ${perConnection}`);
        record(target, 'cpu-gateway', gatewayCpu / WRK_SECONDS);
        record(target, 'cpu-agent', agentCpu / WRK_SECONDS);
      }
      const latency = newOnly ? skipped : wrk(httpPort, ['-t', '1', '-c', '1', '--latency']);
      // 1,000 clients at once, each request on a new connection: the setup rate under a crowd, and what fails.
      const crowd = newOnly ? skipped : wrk(httpPort, ['-t', '2', '-c', String(CROWD), '-H', 'Connection: close']);
      record(target, 'keepalive-rps', keepalive.rps);
      record(target, 'new-conn', fresh.rps);
      record(target, 'latency-p50-us', latency.p50us);
      record(target, 'latency-p99-us', latency.p99us);
      record(target, 'crowd-new-conn', crowd.rps);
      record(target, 'crowd-errors', crowd.errorCount);
      log(
        `round ${round} ${target.padEnd(15)} 1s ${sig(results[target]['throughput-1stream-up'].at(-1))}/${sig(results[target]['throughput-1stream-down'].at(-1))} Gbit/s, 8s ${sig(results[target]['throughput-8streams-up'].at(-1))}/${sig(results[target]['throughput-8streams-down'].at(-1))} Gbit/s, keep-alive ${sig(keepalive.rps)} rps, new ${sig(fresh.rps)} rps ${fresh.errors}, p50 ${sig(latency.p50us)} us, p99 ${sig(latency.p99us)} us, ${CROWD} at once ${sig(crowd.rps)} rps (${crowd.errorCount} errors${crowd.errors ? `: ${crowd.errors}` : ''})`,
      );
    }
  }

  const mean = (target, metric) => results[target][metric].reduce((a, b) => a + b, 0) / results[target][metric].length;
  log('');
  const both = (metric) => (target) => (mean(target, `${metric}-up`) + mean(target, `${metric}-down`)) / 2;
  const lines = [
    ['throughput-1stream', both('throughput-1stream'), 'rate', 'Gbit/s'],
    ['throughput-1stream-up', (t) => mean(t, 'throughput-1stream-up'), 'rate'],
    ['throughput-1stream-down', (t) => mean(t, 'throughput-1stream-down'), 'rate'],
    ['throughput-8streams', both('throughput-8streams'), 'rate'],
    ['throughput-8streams-up', (t) => mean(t, 'throughput-8streams-up'), 'rate'],
    ['throughput-8streams-down', (t) => mean(t, 'throughput-8streams-down'), 'rate'],
    ['keepalive-rps', (t) => mean(t, 'keepalive-rps'), 'rate'],
    ['new-conn', (t) => mean(t, 'new-conn'), 'rate'],
    ['latency-p50', (t) => mean(t, 'latency-p50-us') - mean('direct', 'latency-p50-us'), 'time'],
    ['latency-p99', (t) => mean(t, 'latency-p99-us') - mean('direct', 'latency-p99-us'), 'time'],
    [`new-conn-${CROWD}-at-once`, (t) => mean(t, 'crowd-new-conn'), 'rate'],
  ];
  // Each subject against its peers (r > 1: the subject is better): ours against everything, the
  // bare tunnel's worker forms against the one-process tunnel and ssh.
  const comparisons = [
    ['ours', ['ssh', 'before', 'haproxy', 'node-relay-pair', 'node-h2-tunnel']],
    ...['node-h2-tunnel-2w', 'node-h2-tunnel-2w-none'].map((form) => [form, ['node-h2-tunnel', 'ssh']]),
  ].filter(([subject]) => subject in targets);
  for (const [name, value, kind] of lines) {
    for (const [subject, peers] of comparisons) {
      for (const peer of peers.filter((t) => t in targets)) {
        const ours = value(subject);
        const theirs = value(peer);
        // An added latency at or below zero (the direct run's own tail was slower) has no meaningful ratio.
        const noise = kind === 'time' && (ours <= 0 || theirs <= 0);
        const r = kind === 'rate' ? ours / theirs : theirs / ours;
        log(`RESULT ${name} ${subject}=${sig(ours)} ${peer}=${sig(theirs)} ratio=${noise ? 'n/a (an added time at or below zero: the direct reference was slower in that run)' : sig(r)}`);
      }
    }
  }
  // CPU under new connections (cores, of nproc), gateway and agent processes summed; what a second worker costs or finds.
  for (const target of ['ours', ...Object.keys(h2Http)].filter((t) => results[t]?.['cpu-gateway'] !== undefined)) {
    log(`RESULT new-conn-cpu-cores ${target} gateway=${sig(mean(target, 'cpu-gateway'))} agent=${sig(mean(target, 'cpu-agent'))} per-connection-us=${sig(((mean(target, 'cpu-gateway') + mean(target, 'cpu-agent')) / mean(target, 'new-conn')) * 1e6)}`);
  }
  // The ceilings of the design against ssh -R: the bare Node relay pair (two Node processes, no
  // TLS, no HTTP/2) and the bare mTLS HTTP/2 tunnel (the same transport as ours, nothing else).
  for (const [prefix, reference] of [['ceiling', 'node-relay-pair'], ['h2-ceiling', 'node-h2-tunnel']]) {
    if (!(reference in targets && 'ssh' in targets)) continue;
    for (const [name, value, kind] of lines.filter(([n]) => ['throughput-1stream', 'throughput-1stream-up', 'throughput-1stream-down', 'throughput-8streams', 'keepalive-rps', 'new-conn', 'latency-p50'].includes(n))) {
      const bare = value(reference);
      const ssh = value('ssh');
      log(`RESULT ${prefix}-${name} ${reference}=${sig(bare)} ssh=${sig(ssh)} ratio=${sig(kind === 'rate' ? bare / ssh : ssh / bare)}`);
    }
  }
  // Errors are counts, not rates: no ratio (0 against 0 is no comparison).
  for (const target of ['ours', 'ssh', ...Object.keys(h2Http)].filter((t) => t in targets)) log(`RESULT new-conn-${CROWD}-at-once-errors ${target}=${results[target]['crowd-errors'].reduce((a, b) => a + b, 0)}`);
  log(`RESULT direct-reference throughput-1stream=${sig(both('throughput-1stream')('direct'))} keepalive-rps=${sig(mean('direct', 'keepalive-rps'))} new-conn=${sig(mean('direct', 'new-conn'))} latency-p50-us=${sig(mean('direct', 'latency-p50-us'))}`);
  memoryResults();
}

const dir = mkdtempSync(join(tmpdir(), 'meshplane-bench-gateway-'));
atExit(() => rmSync(dir, { recursive: true, force: true }));
main(dir)
  .catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    for (const child of children) process.stderr.write(`--- ${child.spawnargs.slice(0, 3).join(' ')}\n${child.output().slice(-2000)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    // SIGTERM first, so that a --cpu-prof child writes its profile.
    await stopAll(NODE_ARGS.length > 0 ? 3000 : 200);
  });
