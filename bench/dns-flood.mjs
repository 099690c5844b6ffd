#!/usr/bin/env node
/**
 * TCP flood against a real `meshplane dns`: slowloris (connections trickling
 * one byte of a query every 2 s) or idle connections, from one or several
 * loopback sources, while `dig +tcp` asks for a real name. Prints what the
 * server held, how long the longest flood connection lived, and how many dig
 * queries were answered (with their latency).
 *
 *   node bench/dns-flood.mjs [--mode slowloris|idle] [--count 300] [--sources 127.0.0.2,127.0.0.3]
 *                            [--seconds 40] [--digs 20] [--cli dist/cli/bin.js] [-- extra dns flags]
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Buffer } from 'node:buffer';
import console from 'node:console';
import process from 'node:process';
import { clearInterval, setInterval, setTimeout } from 'node:timers';
import { URL } from 'node:url';
import { atExit, exitOnSignals, spawnTracked as spawn } from './lib/children.mjs';
import { requireTools } from './lib/tools.mjs';
/* global fetch */

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    mode: { type: 'string', default: 'slowloris' },
    count: { type: 'string', default: '300' },
    sources: { type: 'string', default: '127.0.0.1' },
    seconds: { type: 'string', default: '40' },
    digs: { type: 'string', default: '20' },
    reconnect: { type: 'string', default: '250' },
    cli: { type: 'string', default: new URL('../dist/cli/bin.js', import.meta.url).pathname },
  },
});
const count = Number(values.count);
const sources = values.sources.split(',');
const seconds = Number(values.seconds);
const digs = Number(values.digs);

requireTools('bench/dns-flood.mjs', ['dig']);
exitOnSignals();
const dir = mkdtempSync(join(tmpdir(), 'meshplane-flood-'));
atExit(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'hosts.yml'), 'all:\n  vars:\n    domain: mesh.internal\n  hosts:\n    h1: {ip: 127.0.10.1}\n    h2: {ip: 127.0.10.2}\n    h3: {ip: 127.0.10.3}\n    h4: {ip: 127.0.10.4}\n');
writeFileSync(join(dir, 'services.yml'), 'app: {}\n');
const child = spawn(process.execPath, [values.cli, 'dns', '-s', join(dir, 'services.yml'), '-i', join(dir, 'hosts.yml'), '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward', '--no-watch', '--metrics', '127.0.0.1:0', ...positionals], { stdio: ['ignore', 'pipe', 'inherit'] });
const line = await new Promise((resolve, reject) => {
  let out = '';
  child.stdout.on('data', (c) => {
    out += c;
    if (out.includes('\n')) resolve(out);
  });
  child.on('exit', (code) => reject(new Error(`dns exited ${code}`)));
});
const port = Number(/127\.0\.0\.1:(\d+)/.exec(line)[1]);
const metricsUrl = /metrics at (\S+)/.exec(line)[1];

// app.mesh.internal A, framed for TCP; the flood never sends its last byte.
const message = Buffer.concat([Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...'app.mesh.internal'.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0, 0, 1, 0, 1])]);
const query = Buffer.concat([Buffer.from([0, message.length]), message]);
let stopped = false;
let longest = 0;
const live = new Map();
const open = (slot) => {
  if (stopped) return;
  const socket = connect({ host: '127.0.0.1', port, localAddress: sources[slot % sources.length] });
  const entry = { openedAt: 0, timer: null };
  live.set(socket, entry);
  socket.on('error', () => undefined);
  socket.on('connect', () => {
    entry.openedAt = Date.now();
    if (values.mode !== 'slowloris') return;
    let sent = 0;
    entry.timer = setInterval(() => sent < query.length - 1 && socket.write(query.subarray(sent, ++sent)), 2000);
  });
  socket.on('close', () => {
    clearInterval(entry.timer);
    if (entry.openedAt) longest = Math.max(longest, Date.now() - entry.openedAt);
    live.delete(socket);
    if (!stopped) setTimeout(() => open(slot), Number(values.reconnect));
  });
};
for (let i = 0; i < count; i++) open(i);

const digOnce = () =>
  new Promise((resolve) => {
    const started = Date.now();
    execFile('dig', ['@127.0.0.1', '-p', String(port), '+tcp', '+tries=1', '+time=3', 'app.mesh.internal'], (error, stdout) => {
      resolve({ ok: error === null && /status: NOERROR/.test(stdout) && /ANSWER: 4/.test(stdout), ms: Date.now() - started });
    });
  });
const metric = async (name) => {
  const text = await (await fetch(metricsUrl)).text();
  return text.split('\n').filter((l) => l.startsWith(name)).join(' ');
};

const start = Date.now();
await new Promise((r) => setTimeout(r, 2000));
const results = [];
const gap = ((seconds - 4) * 1000) / digs;
let maxHeld = 0;
for (let i = 0; i < digs; i++) {
  results.push(await digOnce());
  maxHeld = Math.max(maxHeld, Number((await metric('meshplane_dns_tcp_connections ')).split(' ')[1] ?? 0));
  const next = start + 2000 + (i + 1) * gap;
  if (next > Date.now()) await new Promise((r) => setTimeout(r, next - Date.now()));
}
for (const entry of live.values()) if (entry.openedAt) longest = Math.max(longest, Date.now() - entry.openedAt);
const closed = await metric('meshplane_dns_tcp_closed_total');
stopped = true;
for (const socket of live.keys()) socket.destroy();
child.kill('SIGTERM');
rmSync(dir, { recursive: true, force: true });
const ok = results.filter((r) => r.ok);
const ms = ok.map((r) => r.ms).sort((a, b) => a - b);
console.log(
  JSON.stringify(
    {
      mode: values.mode,
      count,
      sources,
      seconds: Math.round((Date.now() - start) / 1000),
      dig_tcp_answered: `${ok.length}/${digs}`,
      dig_ms_median: ms[Math.floor(ms.length / 2)] ?? null,
      dig_ms_max: ms.at(-1) ?? null,
      server_max_connections_seen: maxHeld,
      longest_flood_connection_s: Math.round(longest / 100) / 10,
      closed_by_reason: closed.replace(/meshplane_dns_tcp_closed_total/g, '').trim() || null,
    },
    null,
    2,
  ),
);
process.exit(0);
