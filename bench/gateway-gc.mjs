// Issue 19, lever 6: does V8 collect in a storm while a tunnel moves one
// stream, and with which module graph and flags? For each variant this
// starts a gateway and an agent (the real CLI, dist/cli/bin.js, or the bare
// HTTP/2 tunnel, bench/node-h2-tunnel.mjs, with modules preloaded by
// --import), all with --trace-gc, runs one iperf3 one-stream transfer
// through them (GC_SECONDS, default 8) and counts the collections each
// process logged during that transfer, by kind and reason, beside the
// transfer's Gbit/s. The live heap after start-up (the first mark-compact's
// or, without one, the last scavenge's "after" size before the transfer) is
// printed too: V8 sizes its old-generation limit from it.
//
// Run after `npm run build`: `node bench/gateway-gc.mjs [variant ...]`
// (default: all; names below). GC_TRANSFERS=N transfers per variant (each
// one after a fresh start); GC_NODE_ARGS='--trace-incremental-marking' adds
// node flags to every process (with that one, each start of incremental
// marking is counted by reason, with V8's old-generation size and limit).
// Needs iperf3.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { URL, fileURLToPath } from 'node:url';
import { issueMeshCredentials } from '../dist/pki/index.js';
import { atExit, exitOnSignals, spawnTracked, stopAll } from './lib/children.mjs';
import { requireTools } from './lib/tools.mjs';

requireTools('bench/gateway-gc.mjs', ['iperf3']);
exitOnSignals();

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist', 'cli', 'bin.js');
const H2_TUNNEL = join(ROOT, 'bench', 'node-h2-tunnel.mjs');
/** The node flags of the CLI's shebang: the installed command runs with them; `node bin.js` does not. */
const SHEBANG = readFileSync(BIN, 'utf8').split('\n')[0].split(/\s+/).slice(3);
const SECONDS = Number(process.env.GC_SECONDS ?? 8);
const TRANSFERS = Number(process.env.GC_TRANSFERS ?? 1);
const EXTRA = (process.env.GC_NODE_ARGS ?? '').split(' ').filter(Boolean);
const P = { backend: 26201, registration: 26400, front: 26301, h2Front: 26701, h2Tunnel: 26711 };
const imports = (...modules) => modules.flatMap((m) => ['--import', join(ROOT, m)]);
/** name: [kind, extra node flags] */
const VARIANTS = {
  'real-shebang': ['real', SHEBANG],
  'real-no-flag': ['real', []],
  bare: ['bare', []],
  'bare+shebang': ['bare', SHEBANG],
  'bare+cli': ['bare', imports('dist/cli/main.js')],
  'bare+gateway': ['bare', imports('dist/gateway/index.js')],
  'bare+pki': ['bare', imports('dist/pki/index.js')],
  'bare+cli+shebang': ['bare', [...SHEBANG, ...imports('dist/cli/main.js')]],
};

const log = (line) => process.stdout.write(`${line}\n`);
const sig = (x) => Number(x.toPrecision(3)).toString();

function start(args, env = process.env) {
  const child = spawnTracked(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  child.output = () => out;
  return child;
}

function iperf(port, seconds) {
  const out = JSON.parse(execFileSync('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J'], { encoding: 'utf8', timeout: 60_000 }));
  if (out.end?.sum_received === undefined) throw new Error(out.error ?? 'iperf3: no result');
  return out.end.sum_received.bits_per_second / 1e9;
}

// One --trace-gc line: "... 1234 ms: Mark-Compact 10.1 (13.0) -> 8.2 (12.5) MB, ... (average mu = ..., current mu = ...) reason; ..."
const GC_LINE = /: (Scavenge|Mark-Compact(?: \(reduce\))?|Mark-sweep|Minor Mark-Compact|Minor Mark-Sweep)\s+([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB.*current mu = [\d.]+\) (.*?);?\s*$/;
const parse = (text) =>
  text
    .split('\n')
    .map((line) => GC_LINE.exec(line))
    .filter(Boolean)
    .map(([, kind, before, , after, committedAfter, reason]) => ({ kind, before: Number(before), after: Number(after), committed: Number(committedAfter), reason: reason.trim() }));

// "[IncrementalMarking] Start (allocation limit): (size/limit/slack) v8: 27MB / 27MB / 0MB global: ..."
const MARKING_START = /\[IncrementalMarking\] Start \((.*?)\): \(size\/limit\/slack\) v8: (\d+)MB \/ (\d+)MB \/ (\d+)MB global: (\d+)MB \/ (\d+)MB/;
function describeMarking(text) {
  const starts = text.split('\n').map((line) => MARKING_START.exec(line)).filter(Boolean);
  if (starts.length === 0) return '';
  const reasons = new Map();
  for (const [, reason] of starts) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  const range = (i) => `${Math.min(...starts.map((m) => Number(m[i])))}-${Math.max(...starts.map((m) => Number(m[i])))}`;
  return `; incremental marking started ${starts.length}x (${[...reasons].map(([r, n]) => `${n} ${r}`).join(', ')}) at old generation ${range(2)} MB against a limit of ${range(3)} MB (global ${range(5)} / ${range(6)} MB)`;
}

function describe(events) {
  const byKind = new Map();
  for (const e of events) {
    const kind = byKind.get(e.kind) ?? { count: 0, reasons: new Map(), min: Infinity, max: 0 };
    kind.count++;
    kind.reasons.set(e.reason, (kind.reasons.get(e.reason) ?? 0) + 1);
    kind.min = Math.min(kind.min, e.after);
    kind.max = Math.max(kind.max, e.after);
    byKind.set(e.kind, kind);
  }
  if (byKind.size === 0) return 'no collections';
  return [...byKind]
    .map(([kind, k]) => `${kind} ${k.count} (${[...k.reasons].map(([r, n]) => `${n} ${r}`).join(', ')}; heap after ${sig(k.min)}-${sig(k.max)} MB)`)
    .join('; ');
}

async function waitFor(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

async function main(dir) {
  writeFileSync(join(dir, 'hosts.yml'), `all:\n  children:\n    gateway:\n      hosts:\n        gw1: {ip: 127.0.50.1}\n    backend:\n      hosts:\n        b1: {ip: 127.0.50.2}\n`);
  writeFileSync(
    join(dir, 'services.yml'),
    `gateway:\n  scheduling_group: gateway\n  ports: [${P.registration}]\n  service_credentials: [{name: gateway, enable_client: false}]\n` +
      `iperf:\n  scheduling_group: backend\n  ports: [${P.backend}]\n  service_credentials: [{name: iperf}]\n  gateway_endpoints:\n    - {name: raw, port: ${P.front}, mode: tcp, health: false}\n`,
  );
  const topologyFile = join(dir, 'topology.json');
  execFileSync(process.execPath, [BIN, 'compile', '-s', join(dir, 'services.yml'), '-i', join(dir, 'hosts.yml'), '-o', topologyFile]);
  const topology = JSON.parse(readFileSync(topologyFile, 'utf8'));
  const state = join(dir, 'state');
  await issueMeshCredentials({ topology, stateDir: state });
  const gatewayDir = join(state, 'credentials', 'gw1', 'x509', 'gateway');
  const agentDir = join(state, 'credentials', 'b1', 'x509', 'iperf');

  const names = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(VARIANTS);
  log(`node ${process.version}, ${SECONDS} s one-stream iperf3 transfer per run; CLI shebang flags: ${SHEBANG.join(' ') || '(none)'}`);
  for (const name of names) {
    const [kind, flags] = VARIANTS[name] ?? [];
    if (kind === undefined) throw new Error(`unknown variant ${name}: ${Object.keys(VARIANTS).join(', ')}`);
    for (let run = 1; run <= TRANSFERS; run++) {
      spawnTracked('iperf3', ['-s', '-p', String(P.backend), '-B', '127.0.0.1'], { stdio: 'ignore' });
      let gateway;
      let agent;
      let front;
      if (kind === 'real') {
        front = P.front;
        gateway = start([...flags, ...EXTRA, '--trace-gc', BIN, 'gateway', '--topology', topologyFile, '--credentials-root', join(state, 'credentials', 'gw1'), '--listen', `127.0.0.1:${P.registration}`, '--front-address', '127.0.0.1', '--log-level', 'warn']);
        agent = start([...flags, ...EXTRA, '--trace-gc', BIN, 'agent', '--topology', topologyFile, '--host', 'b1', '--service', 'iperf', '--credentials-root', join(state, 'credentials', 'b1'), '--gateway', `127.0.0.1:${P.registration}`, '--log-level', 'warn']);
      } else {
        front = P.h2Front;
        gateway = start([...flags, ...EXTRA, '--trace-gc', H2_TUNNEL, 'gateway', String(P.h2Front), String(P.h2Tunnel), join(gatewayDir, 'ca.pem'), join(gatewayDir, 'server', 'cert.pem'), join(gatewayDir, 'server', 'private_key.pem')]);
        await sleep(300);
        agent = start([...flags, ...EXTRA, '--trace-gc', H2_TUNNEL, 'agent', String(P.h2Tunnel), String(P.backend), join(agentDir, 'ca.pem'), join(agentDir, 'client', 'cert.pem'), join(agentDir, 'client', 'private_key.pem'), `gateway.${topology.domain}`]);
      }
      // Ready when a 1 s transfer goes through (it also warms the JIT, as a running gateway would be).
      await waitFor(`${name}: a transfer through port ${front}`, () => {
        try {
          iperf(front, 1);
          return true;
        } catch {
          return false;
        }
      });
      await sleep(500);
      const mark = [gateway, agent].map((c) => c.output().length);
      const startUp = [gateway, agent].map((c) => {
        const events = parse(c.output());
        const full = events.find((e) => e.kind.startsWith('Mark'));
        return full?.after ?? events.at(-1)?.after ?? NaN;
      });
      const gbits = iperf(front, SECONDS);
      await sleep(300);
      const during = [gateway, agent].map((c, i) => parse(c.output().slice(mark[i])));
      log(`${name} run ${run} (${[...flags.filter((f) => f !== '--import'), ''].join(' ').replaceAll(ROOT, '')}): ${sig(gbits)} Gbit/s`);
      const text = [gateway, agent].map((c, i) => c.output().slice(mark[i]));
      log(`  gateway (live after start-up ${sig(startUp[0])} MB): ${describe(during[0])}${describeMarking(text[0])}`);
      log(`  agent   (live after start-up ${sig(startUp[1])} MB): ${describe(during[1])}${describeMarking(text[1])}`);
      const fulls = during.map((events) => events.filter((e) => e.kind.startsWith('Mark')).length);
      const scavenges = during.map((events) => events.filter((e) => e.kind === 'Scavenge').length);
      log(`RESULT gc-per-transfer ${name} gbits=${sig(gbits)} gateway-mark-compact=${fulls[0]} agent-mark-compact=${fulls[1]} gateway-scavenge=${scavenges[0]} agent-scavenge=${scavenges[1]}`);
      if (process.env.GC_KEEP_TRACE) for (const [role, c] of [['gateway', gateway], ['agent', agent]]) writeFileSync(join(process.env.GC_KEEP_TRACE, `${name}-${run}-${role}.log`), c.output());
      await stopAll(500);
    }
  }
}

const dir = mkdtempSync(join(tmpdir(), 'meshplane-bench-gateway-gc-'));
atExit(() => rmSync(dir, { recursive: true, force: true }));
main(dir)
  .catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    process.exitCode = 1;
  })
  .finally(() => stopAll(500));
