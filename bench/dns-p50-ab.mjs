// A/B of the p50 at 20,000 qps: meshplane's DNS server (one process, the
// CLI's shebang flags) against the bare Node server (bench/node-udp-ceiling.mjs)
// on the same inputs, each asked twice from an overlay view's address, with
// `--trace-gc` on both so that a collection during the run would show.
// Inputs: the directory `BENCH_DNS_PROFILE=DIR npm run bench:dns` leaves
// (topology.json, zone.json, queries.txt).
//
// Usage: node bench/dns-p50-ab.mjs DIR [source address, default 127.0.2.1]
// Needs dnsperf (checked first); stops what it started on any exit.
import { Buffer } from 'node:buffer';
import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import { clearTimeout, setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { URL, fileURLToPath } from 'node:url';
import { exitOnSignals, spawnTracked as spawn } from './lib/children.mjs';
import { requireTools } from './lib/tools.mjs';

requireTools('bench/dns-p50-ab.mjs', ['dnsperf']);
exitOnSignals();
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist', 'cli', 'bin.js');
const [dir, source = '127.0.2.1'] = process.argv.slice(2);
if (dir === undefined) {
  process.stderr.write('usage: node bench/dns-p50-ab.mjs DIR [source]\n');
  process.exit(2);
}
const shebangFlags = readFileSync(BIN, 'utf8').split('\n')[0].split(/\s+/).slice(3);
const servers = {
  ours: { port: 26353, args: [...shebangFlags, '--trace-gc', BIN, 'dns', '--topology', join(dir, 'topology.json'), '--listen', '127.0.0.1:26353', '--no-forward', '--no-watch', '--workers', '1', '--log-level', 'warn'] },
  'node-ceiling': { port: 26355, args: ['--trace-gc', join(ROOT, 'bench', 'node-udp-ceiling.mjs'), '26355', join(dir, 'zone.json')] },
};
/** Whether the server on `port` answers a query for "web." (any answer will do). */
const answers = (port) =>
  new Promise((resolve) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => (socket.close(), resolve(false)), 300);
    socket.on('message', () => (clearTimeout(timer), socket.close(), resolve(true)));
    socket.send(Buffer.from('123401000001000000000000037765620000010001', 'hex'), port, '127.0.0.1');
  });
const dnsperf = (port, args) => spawnSync('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-a', source, '-d', join(dir, 'queries.txt'), '-q', '500', '-t', '2', ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });

for (const [name, { port, args }] of Object.entries(servers)) {
  let output = '';
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  for (let tries = 0; !(await answers(port)); tries++) {
    if (tries > 600) throw new Error(`${name} did not answer in 30 s: ${output.slice(-500)}`);
    await sleep(50);
  }
  dnsperf(port, ['-n', '1']); // every answer built once, as in bench:dns before its latency run
  for (let round = 1; round <= 2; round++) {
    const mark = output.length;
    const run = dnsperf(port, ['-l', '5', '-Q', '20000', '-v']);
    const latencies = [...run.stdout.matchAll(/^> \S+ .* ([\d.]+)$/gm)].map((m) => Number(m[1]) * 1e6).sort((a, b) => a - b);
    const at = (q) => latencies[Math.floor(latencies.length * q)]?.toFixed(0);
    const gc = output.slice(mark);
    const count = (re) => (gc.match(re) ?? []).length;
    process.stdout.write(`${name} round ${round}: p50 ${at(0.5)} us, p90 ${at(0.9)}, p99 ${at(0.99)}, n=${latencies.length}, lost ${/Queries lost:\s+(\d+)/.exec(run.stdout)?.[1]}; GC: ${count(/Scavenge/g)} scavenges, ${count(/Mark-Compact/g)} mark-compacts; load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}\n`);
  }
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
}
