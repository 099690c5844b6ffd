// Soak: a bounded, mixed, hostile run against real meshplane processes on
// loopback, to show that the mesh holds up over time (issue 15):
//
//   - steady client requests through the Host, CONNECT and TLS fronts
//     (counted ok / failed; failures while we kill something on purpose are
//     counted apart);
//   - client bursts: SOAK_BURST clients (default 1,000) that send a request
//     and reset their connections at once, answers unread;
//   - kills: the agent of one backend is SIGKILLed and restarted every
//     SOAK_AGENT_KILL_S seconds, the gateway once at half time;
//   - reloads: SIGHUP to the gateway and DNS, services.yml edited (an
//     instance count toggled), and once an empty services.yml that must be
//     refused while the old data keeps serving;
//   - DNS: steady UDP and TCP queries (an unanswered or wrong answer is
//     "lost"), random and malformed packets, and TCP slowloris rounds.
//
// At the end it prints figures as RESULT lines: requests ok/failed, tunnels
// dropped by clients, DNS answers lost, agent exits, and RSS and open file
// descriptors of the long-lived processes in the first and the last minute.
//
//   npm run soak                      # 10 minutes
//   SOAK_MINUTES=3 npm run soak       # shorter
//
// Needs haproxy (the PROXY-protocol backend; checked first: exit 2 with the
// apt-get line when missing). Stops everything it started on any exit
// (bench/lib/children.mjs). Loopback only (127.0.61.0/24), fixed ports 26xxx.
import { Buffer } from 'node:buffer';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { clearInterval, clearTimeout, setImmediate, setInterval, setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { URL, fileURLToPath } from 'node:url';
import { compileTopology, loadConfig } from '../dist/config/index.js';
import { issueMeshCredentials } from '../dist/pki/index.js';
import { exitOnSignals, killAll, spawnTracked } from './lib/children.mjs';
import { requireTools } from './lib/tools.mjs';

requireTools('bench/soak.mjs', ['haproxy']);

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist', 'cli', 'bin.js');
/** Bench-only preload: on SIGUSR2 a process collects its garbage and reports its memory (see there). */
const GC_PRELOAD = ['--expose-gc', '--import', join(ROOT, 'bench', 'gc-on-signal.mjs')];
const MINUTES = Number(process.env.SOAK_MINUTES ?? 10);
const BURST = Number(process.env.SOAK_BURST ?? 1000);
const BURST_EVERY_S = Number(process.env.SOAK_BURST_EVERY_S ?? 30);
const AGENT_KILL_EVERY_S = Number(process.env.SOAK_AGENT_KILL_S ?? 120);
const RELOAD_EVERY_S = 20;
const EDIT_EVERY_S = 60;
const SLOWLORIS_EVERY_S = 60;
const SAMPLE_EVERY_S = 10;
/** After a kill, failures until this long after the killed part is back are the kill's. */
const KILL_GRACE_MS = 3000;

const ADDR = { gw: '127.0.61.1', b1: '127.0.61.2', b2: '127.0.61.3', client: '127.0.61.9' };
const PORT = { registration: 26400, http: 26080, connect: 26128, tls: 26443, web: 26081, site: 26082, db: 26500, dns: 26053 };
const DOMAIN = 'mesh.internal';

const log = (line) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

// ---------------------------------------------------------------------------------------------
// Processes: every child is remembered and killed on any exit (bench/lib/children.mjs).

const MEMORY_DIR = mkdtempSync(join(tmpdir(), 'meshplane-soak-memory-'));

function start(name, command, args) {
  const child = spawnTracked(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BENCH_MEMORY_DIR: MEMORY_DIR } });
  child.name = name;
  child.lines = [];
  let partial = '';
  const onData = (chunk) => {
    const text = partial + chunk.toString();
    const lines = text.split('\n');
    partial = lines.pop();
    for (const line of lines) {
      child.lines.push(line);
      for (const watcher of child.watchers ?? []) watcher(line);
    }
    if (child.lines.length > 20_000) child.lines.splice(0, 10_000);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  return child;
}

/** Resolves with the first line (already printed or to come) that contains `text`; rejects after `ms` or on exit. */
function waitForLine(child, text, ms = 30_000) {
  const seen = child.lines.find((l) => l.includes(text));
  if (seen !== undefined) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`${child.name}: "${text}" not seen within ${ms} ms:\n${child.lines.slice(-20).join('\n')}`)), ms);
    const onExit = (code, signal) => done(new Error(`${child.name} exited (${code ?? signal}) before "${text}":\n${child.lines.slice(-20).join('\n')}`));
    const watcher = (line) => line.includes(text) && done(null, line);
    const done = (err, line) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      child.watchers = child.watchers.filter((w) => w !== watcher);
      if (err) reject(err);
      else resolve(line);
    };
    child.watchers = [...(child.watchers ?? []), watcher];
    child.once('exit', onExit);
  });
}

/** Resolves once something accepts on address:port; rejects when `child` exits first or after 15 s. */
async function waitForPort(address, port, child) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = netConnect({ host: address, port });
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive(child)) throw new Error(`${child.name} exited:\n${child.lines.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`nothing listens on ${address}:${port} after 15 s`);
    await sleep(50);
  }
}

function alive(child) {
  return child.exitCode === null && child.signalCode === null;
}

function exited(child) {
  return alive(child) ? new Promise((resolve) => child.once('exit', resolve)) : Promise.resolve();
}

// ---------------------------------------------------------------------------------------------
// The mesh: one gateway host, two backend hosts; web (Host + CONNECT fronts) on both, site (TLS
// front) on b1, db (DNS only) whose instance count the soak toggles.

function servicesYml(dbInstances) {
  return `gateway:
  scheduling_group: gateway
  ports: [${PORT.registration}]
  service_credentials:
    - {name: gateway, enable_client: false}
web:
  scheduling_group: backends
  num_instances: 2
  ports: [${PORT.web}]
  service_credentials: [{name: web}]
  gateway_endpoints:
    - {name: plain, hostnames: [web.soak.test], port: ${PORT.http}, mode: http, proxy_protocol: v1}
    - {name: tunnel, hostnames: [web.soak.test], port: ${PORT.connect}, mode: connect, proxy_protocol: v1}
site:
  scheduling_group: site
  ports: [${PORT.site}]
  service_credentials: [{name: site, extra_san: [site.soak.test]}]
  gateway_endpoints:
    - {name: tls, hostnames: [site.soak.test], port: ${PORT.tls}, mode: tls, proxy_protocol: v2}
db:
  scheduling_group: backends
  num_instances: ${dbInstances}
  ports: [${PORT.db}]
`;
}

const HOSTS_YML = `all:
  vars:
    domain: ${DOMAIN}
  hosts:
    gw1: {ip: ${ADDR.gw}}
    b1: {ip: ${ADDR.b1}}
    b2: {ip: ${ADDR.b2}}
  children:
    gateway:
      hosts:
        gw1:
    backends:
      hosts:
        b1:
        b2:
    site:
      hosts:
        b1:
`;

function writeAtomic(file, text) {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

function haproxyConfig(dir, siteCertDir) {
  const pem = join(dir, 'site.pem');
  writeFileSync(pem, readFileSync(join(siteCertDir, 'cert.pem'), 'utf8') + readFileSync(join(siteCertDir, 'private_key.pem'), 'utf8'));
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(
    file,
    `global
  maxconn 5000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend web_b1
  bind ${ADDR.b1}:${PORT.web} accept-proxy
  http-request return status 200 content-type text/plain string "web b1\\n"
frontend web_b2
  bind ${ADDR.b2}:${PORT.web} accept-proxy
  http-request return status 200 content-type text/plain string "web b2\\n"
frontend site_b1
  bind ${ADDR.b1}:${PORT.site} accept-proxy ssl crt ${pem}
  http-request return status 200 content-type text/plain string "site b1\\n"
`,
  );
  return file;
}

// ---------------------------------------------------------------------------------------------
// Counters and the windows in which failures are ours (a kill, a restart).

const counts = {
  requestsOk: 0,
  requestsFailed: 0,
  requestsFailedDuringKills: 0,
  burstClients: 0,
  dnsQueries: 0,
  dnsLost: 0,
  dnsTcpQueries: 0,
  dnsTcpLost: 0,
  fuzzPackets: 0,
  tunnelDropsByClients: 0,
  tunnelDropsByKills: 0,
  agentExits: 0,
  agentKills: 0,
  gatewayKills: 0,
  reloads: 0,
  emptyReloadsRefused: 0,
};
const failureExamples = new Map();
/** [from, to] in ms since epoch; `to` is Infinity until the killed part is back. */
const killWindows = [];

function inKillWindow(at) {
  return killWindows.some(([from, to]) => at >= from && at <= to + KILL_GRACE_MS);
}

function noteFailure(kind, detail) {
  if (inKillWindow(Date.now())) {
    counts.requestsFailedDuringKills++;
    return;
  }
  counts.requestsFailed++;
  const key = `${kind}: ${detail}`;
  failureExamples.set(key, (failureExamples.get(key) ?? 0) + 1);
}

// ---------------------------------------------------------------------------------------------
// Clients.

/** One request through a front; resolves true on an HTTP 200 within 5 s. */
function request(kind, ca) {
  return new Promise((resolve) => {
    let socket;
    let got = '';
    let settled = false;
    const finish = (ok, why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (!ok) noteFailure(kind, why);
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false, 'no answer within 5 s'), 5000);
    const onData = (chunk) => {
      got += chunk.toString('latin1');
      if (kind === 'connect' && got.startsWith('HTTP/1.1 200 Connection established\r\n\r\n')) {
        got = got.slice(39);
        if (!socket.sentInner) {
          socket.sentInner = true;
          socket.write(`GET / HTTP/1.1\r\nHost: web.${DOMAIN}\r\nConnection: close\r\n\r\n`);
        }
      }
      if (got.includes('\r\n\r\n') && !(kind === 'connect' && !socket.sentInner)) {
        const status = got.slice(0, got.indexOf('\r\n'));
        finish(/^HTTP\/1\.[01] 200 /.test(status) && !status.includes('Connection established'), `answered "${status}"`);
      }
    };
    if (kind === 'tls') {
      socket = tlsConnect({ host: ADDR.gw, port: PORT.tls, servername: 'site.soak.test', ca, localAddress: ADDR.client });
      socket.once('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: site.soak.test\r\nConnection: close\r\n\r\n'));
    } else {
      socket = netConnect({ host: ADDR.gw, port: kind === 'http' ? PORT.http : PORT.connect, localAddress: ADDR.client });
      socket.once('connect', () =>
        socket.write(kind === 'http' ? 'GET / HTTP/1.1\r\nHost: web.soak.test\r\nConnection: close\r\n\r\n' : `CONNECT web.${DOMAIN}:${PORT.web} HTTP/1.1\r\nHost: web.${DOMAIN}:${PORT.web}\r\n\r\n`),
      );
    }
    socket.on('data', onData);
    socket.on('error', (err) => finish(false, err.code ?? err.message));
    socket.on('close', () => finish(false, `closed after ${JSON.stringify(got.slice(0, 40))}`));
  });
}

async function steadyRequests(until, ca) {
  const kinds = ['http', 'connect', 'tls'];
  const worker = async (offset) => {
    for (let i = offset; Date.now() < until(); i++) {
      if (await request(kinds[i % kinds.length], ca)) counts.requestsOk++;
      await sleep(20);
    }
  };
  await Promise.all([0, 1, 2, 3].map(worker));
}

/** BURST clients send a request each, then all reset their connections at once, answers unread. */
async function burst(ca) {
  const sockets = [];
  const ready = [];
  for (let i = 0; i < BURST; i++) {
    const kind = ['http', 'connect', 'tls'][i % 3];
    // Spread over 50 source addresses, as many clients would be (a per-source cap is not what is tested here).
    const localAddress = `127.0.61.${100 + (i % 50)}`;
    let socket;
    ready.push(
      new Promise((resolve) => {
        if (kind === 'tls') {
          socket = tlsConnect({ host: ADDR.gw, port: PORT.tls, servername: 'site.soak.test', ca, localAddress });
          socket.once('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: site.soak.test\r\n\r\n', () => resolve()));
        } else {
          socket = netConnect({ host: ADDR.gw, port: kind === 'http' ? PORT.http : PORT.connect, localAddress });
          socket.once('connect', () =>
            socket.write(kind === 'http' ? 'GET / HTTP/1.1\r\nHost: web.soak.test\r\n\r\n' : `CONNECT web.${DOMAIN}:${PORT.web} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: web\r\n\r\n`, () => resolve()),
          );
        }
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
      }),
    );
    sockets.push(socket);
  }
  await Promise.race([Promise.all(ready), sleep(10_000)]);
  // Give the gateway a moment to route them, so the resets hit open tunnels.
  await sleep(300);
  for (const socket of sockets) {
    if (socket.destroyed) continue;
    try {
      (socket.resetAndDestroy ?? socket.destroy).call(socket);
    } catch {
      socket.destroy();
    }
  }
  counts.burstClients += BURST;
}

// ---------------------------------------------------------------------------------------------
// DNS: steady queries (UDP and TCP), fuzz and slowloris.

function query(name, id, type = 1) {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([header, ...labels, Buffer.from([0]), tail]);
}

/** Names that must always answer NOERROR with at least one address. */
const LIVE_NAMES = [`web.${DOMAIN}`, `b1.web.${DOMAIN}`, `site.${DOMAIN}`, `gw1.${DOMAIN}`, `gateway.${DOMAIN}`, `db.${DOMAIN}`];

function answerIsGood(reply) {
  const rcode = reply[3] & 0x0f;
  const answers = reply.readUInt16BE(6);
  return rcode === 0 && answers > 0;
}

async function steadyDnsUdp(until) {
  const socket = createSocket('udp4');
  await new Promise((resolve) => socket.bind(0, ADDR.client, resolve));
  const pending = new Map();
  socket.on('message', (reply) => {
    const id = reply.readUInt16BE(0);
    const entry = pending.get(id);
    if (entry === undefined) return;
    pending.delete(id);
    clearTimeout(entry.timer);
    if (!answerIsGood(reply)) {
      counts.dnsLost++;
      failureExamples.set(`dns udp ${entry.name}: rcode ${reply[3] & 0x0f}, ${reply.readUInt16BE(6)} answers`, (failureExamples.get(`dns udp ${entry.name}: rcode ${reply[3] & 0x0f}, ${reply.readUInt16BE(6)} answers`) ?? 0) + 1);
    }
  });
  let id = 0;
  while (Date.now() < until()) {
    for (let i = 0; i < 10; i++) {
      id = (id + 1) & 0xffff;
      const qid = id;
      const name = LIVE_NAMES[qid % LIVE_NAMES.length];
      // After the timer, one more look at the socket (setImmediate runs after the poll phase): when
      // this process itself was busy, the answer may be waiting there, and it is not lost.
      const timer = setTimeout(() => setImmediate(() => {
        if (pending.delete(qid)) {
          counts.dnsLost++;
          failureExamples.set(`dns udp ${name}: no answer within 2 s`, (failureExamples.get(`dns udp ${name}: no answer within 2 s`) ?? 0) + 1);
        }
      }), 2000);
      pending.set(qid, { name, timer });
      counts.dnsQueries++;
      socket.send(query(name, qid), PORT.dns, ADDR.gw);
    }
    await sleep(100);
  }
  await sleep(2100);
  socket.close();
}

/** One TCP query on a fresh connection; true when a good answer came within 3 s. */
function tcpQuery(name, id) {
  return new Promise((resolve) => {
    const packet = query(name, id);
    const length = Buffer.alloc(2);
    length.writeUInt16BE(packet.length);
    const socket = netConnect({ host: ADDR.gw, port: PORT.dns, localAddress: ADDR.client });
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => done(false), 3000);
    const done = (ok) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => socket.write(Buffer.concat([length, packet])));
    socket.on('data', (chunk) => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) done(answerIsGood(got.subarray(2)));
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}

async function steadyDnsTcp(until) {
  for (let id = 1; Date.now() < until(); id++) {
    counts.dnsTcpQueries++;
    if (!(await tcpQuery(LIVE_NAMES[id % LIVE_NAMES.length], id))) counts.dnsTcpLost++;
    await sleep(250);
  }
}

/** Random bytes, truncated and mangled queries, trailing garbage: about 50 packets a second. */
async function dnsFuzz(until) {
  const socket = createSocket('udp4');
  await new Promise((resolve) => socket.bind(0, ADDR.client, resolve));
  socket.on('message', () => undefined);
  const random = (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(Math.random() * 256)));
  while (Date.now() < until()) {
    for (let i = 0; i < 5; i++) {
      const valid = query(LIVE_NAMES[i % LIVE_NAMES.length], Math.floor(Math.random() * 65536));
      const pick = Math.floor(Math.random() * 4);
      const packet =
        pick === 0
          ? random(Math.floor(Math.random() * 600))
          : pick === 1
            ? valid.subarray(0, Math.floor(Math.random() * valid.length))
            : pick === 2
              ? Buffer.concat([valid, random(1 + Math.floor(Math.random() * 1000))])
              : Buffer.from(valid.map((b) => (Math.random() < 0.1 ? Math.floor(Math.random() * 256) : b)));
      socket.send(packet, PORT.dns, ADDR.gw);
      counts.fuzzPackets++;
    }
    await sleep(100);
  }
  socket.close();
}

/** 300 TCP connections that trickle one byte every 2 s for 20 s, then go. */
async function slowloris() {
  const sockets = [];
  for (let i = 0; i < 300; i++) {
    const socket = netConnect({ host: ADDR.gw, port: PORT.dns, localAddress: `127.0.61.${20 + (i % 10)}` });
    socket.on('error', () => undefined);
    sockets.push(socket);
  }
  for (let t = 0; t < 10; t++) {
    for (const socket of sockets) if (!socket.destroyed) socket.write(Buffer.from([0]));
    await sleep(2000);
  }
  for (const socket of sockets) socket.destroy();
}

// ---------------------------------------------------------------------------------------------
// Processes of the mesh.

function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

function rssMiB(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
  } catch {
    return NaN;
  }
}

function median(values) {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor(sorted.length / 2)];
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'meshplane-soak-'));
  process.on('exit', () => {
    killAll();
    rmSync(dir, { recursive: true, force: true });
    rmSync(MEMORY_DIR, { recursive: true, force: true });
  });
  const paths = { services: join(dir, 'services.yml'), inventory: join(dir, 'hosts.yml') };
  writeFileSync(paths.inventory, HOSTS_YML);
  writeFileSync(paths.services, servicesYml(1));
  const config = loadConfig(paths);
  if (!config.ok) throw new Error(`soak mesh does not compile: ${JSON.stringify(config.diagnostics.errors)}`);
  const stateDir = join(dir, 'state');
  await issueMeshCredentials({ topology: compileTopology(config), stateDir });
  const root = (host) => join(stateDir, 'credentials', host);
  const ca = readFileSync(join(root('b1'), 'x509', 'site', 'ca.pem'));

  let inputsEmpty = false;
  const haproxy = start('haproxy', 'haproxy', ['-db', '-f', haproxyConfig(dir, join(root('b1'), 'x509', 'site', 'server'))]);
  await waitForPort(ADDR.b1, PORT.web, haproxy);
  const inputs = ['-s', paths.services, '-i', paths.inventory];
  const dns = start('dns', process.execPath, [...GC_PRELOAD, BIN, 'dns', ...inputs, '--host', 'gw1', '--listen', `${ADDR.gw}:${PORT.dns}`, '--no-forward']);
  await waitForLine(dns, 'meshplane dns: serving');

  const startGateway = () => {
    const child = start('gateway', process.execPath, [...GC_PRELOAD, BIN, 'gateway', ...inputs, '--credentials-root', root('gw1'), '--listen', `${ADDR.gw}:${PORT.registration}`, '--front-address', ADDR.gw]);
    void waitForLine(child, 'agents register on').then(() => (child.ready = true), () => undefined);
    return child;
  };
  let gateway = startGateway();
  const gateways = [gateway];
  await waitForLine(gateway, 'agents register on');

  const agentSpecs = [
    { key: 'web@b1', host: 'b1', service: 'web', backend: `${ADDR.b1}:${PORT.web}` },
    { key: 'web@b2', host: 'b2', service: 'web', backend: `${ADDR.b2}:${PORT.web}` },
    { key: 'site@b1', host: 'b1', service: 'site', backend: `${ADDR.b1}:${PORT.site}` },
  ];
  const agents = new Map();
  /** Agent processes we are about to kill: their exits are ours. */
  const killing = new Set();
  const startAgent = (spec) => {
    const child = start(`agent ${spec.key}`, process.execPath, [...GC_PRELOAD, BIN, 'agent', ...inputs, '--host', spec.host, '--service', spec.service, '--credentials-root', root(spec.host), '--gateway', `${ADDR.gw}:${PORT.registration}`, '--backend', spec.backend, '--reconnect-max', '1']);
    child.once('exit', (code, signal) => {
      if (killing.has(child)) return;
      counts.agentExits++;
      log(`agent ${spec.key} exited on its own (${code ?? signal}); restarting it:\n${child.lines.slice(-10).join('\n')}`);
      if (!stopping) agents.set(spec.key, startAgent(spec));
    });
    child.watchers = [
      (line) => {
        if (!line.includes('tunnel closed')) return;
        const at = timeOf(line);
        if (inKillWindow(at)) counts.tunnelDropsByKills++;
        else {
          counts.tunnelDropsByClients++;
          log(`tunnel of ${spec.key} dropped outside any kill: ${line}`);
        }
      },
    ];
    return child;
  };
  const registered = (key) => {
    const [service, host] = key.split('@');
    return gateways.flatMap((g) => g.lines).filter((l) => l.includes('backend registered') && l.includes(`"agent":"${host}/${service}/`)).length;
  };
  const waitRegistered = async (key, before, ms = 30_000) => {
    const deadline = Date.now() + ms;
    while (registered(key) <= before) {
      if (Date.now() > deadline) throw new Error(`agent ${key} did not register within ${ms} ms`);
      await sleep(50);
    }
  };
  for (const spec of agentSpecs) agents.set(spec.key, startAgent(spec));
  for (const spec of agentSpecs) await waitRegistered(spec.key, 0);
  log(`mesh up: dns ${dns.pid}, gateway ${gateway.pid}, agents ${[...agents.values()].map((a) => a.pid).join(' ')}, haproxy ${haproxy.pid}`);

  const started = Date.now();
  const endAt = started + MINUTES * 60_000;
  const until = () => (stopping ? 0 : endAt);
  process.once('SIGINT', () => {
    log('interrupted: finishing early');
    stopping = true;
  });

  // Samples of RSS and descriptors, per process key and minute.
  const samples = [];
  const sample = async () => {
    const t = Date.now() - started;
    const procs = { dns, gateway, 'agent web@b1': agents.get('web@b1'), 'agent site@b1': agents.get('site@b1') };
    for (const [key, child] of Object.entries(procs)) {
      if (!child || !alive(child)) continue;
      const entry = { key, pid: child.pid, t, rss: rssMiB(child.pid), fds: fdCount(child.pid), held: NaN };
      samples.push(entry);
      // Memory held: heap and external after a full collection (garbage not yet collected is no leak).
      const file = join(MEMORY_DIR, `${child.pid}.json`);
      rmSync(file, { force: true });
      child.kill('SIGUSR2');
      for (let i = 0; i < 100 && Number.isNaN(entry.held); i++) {
        try {
          const report = JSON.parse(readFileSync(file, 'utf8'));
          entry.held = (report.heapUsed + report.external) / 1024 / 1024;
        } catch {
          await sleep(20);
        }
      }
    }
  };

  /** Sleeps `ms`, or until the end of the run if that comes first. */
  const nap = (ms) => sleep(Math.max(0, Math.min(ms, until() - Date.now())));
  const every = async (seconds, job, firstAfter = seconds) => {
    await nap(firstAfter * 1000);
    while (Date.now() < until()) {
      try {
        await job();
      } catch (err) {
        log(`soak job failed: ${err.stack ?? err}`);
        counts.jobErrors = (counts.jobErrors ?? 0) + 1;
      }
      await nap(seconds * 1000);
    }
  };

  let dbInstances = 1;
  let gatewayKilled = false;
  const jobs = [
    steadyRequests(until, ca),
    steadyDnsUdp(until),
    steadyDnsTcp(until),
    dnsFuzz(until),
    every(SAMPLE_EVERY_S, async () => sample(), 0),
    every(BURST_EVERY_S, async () => {
      log(`burst of ${BURST} resetting clients`);
      await burst(ca);
    }),
    every(RELOAD_EVERY_S, async () => {
      dns.kill('SIGHUP');
      // As systemd does, reload only a gateway that has started (a SIGHUP before Node has run a line
      // of ours ends the process: nothing in it can hold that one).
      if (alive(gateway) && gateway.ready) gateway.kill('SIGHUP');
      counts.reloads++;
    }),
    every(EDIT_EVERY_S, async () => {
      if (inputsEmpty) return;
      dbInstances = dbInstances === 1 ? 2 : 1;
      writeAtomic(paths.services, servicesYml(dbInstances));
      counts.reloads++;
    }),
    every(SLOWLORIS_EVERY_S, async () => {
      log('DNS TCP slowloris: 300 trickling connections for 20 s');
      await slowloris();
    }),
    // Once, a quarter in: an empty services.yml must be refused while the old names keep answering.
    every(MINUTES * 60 * 10, async () => {
      const refusedBefore = dns.lines.filter((l) => /CONFIG_ERR_NO_SERVICES|keeps? (serving|the old)/i.test(l)).length;
      log('empty services.yml: must be refused');
      inputsEmpty = true;
      writeAtomic(paths.services, '# truncated by an editor\n');
      dns.kill('SIGHUP');
      await sleep(3000);
      const refusedAfter = dns.lines.filter((l) => /CONFIG_ERR_NO_SERVICES|keeps? (serving|the old)/i.test(l)).length;
      if (refusedAfter > refusedBefore) counts.emptyReloadsRefused++;
      writeAtomic(paths.services, servicesYml(dbInstances));
      inputsEmpty = false;
      dns.kill('SIGHUP');
    }, MINUTES * 15),
    every(AGENT_KILL_EVERY_S, async () => {
      // An agent started while services.yml is empty could not read it: that exit would be ours.
      while (inputsEmpty) await sleep(100);
      const key = 'web@b2';
      const victim = agents.get(key);
      const before = registered(key);
      const window = [Date.now(), Infinity];
      killWindows.push(window);
      killing.add(victim);
      victim.kill('SIGKILL');
      await exited(victim);
      counts.agentKills++;
      agents.set(key, startAgent(agentSpecs[1]));
      await waitRegistered(key, before);
      window[1] = Date.now();
      log(`agent ${key} killed and back in ${window[1] - window[0]} ms`);
    }, AGENT_KILL_EVERY_S / 2),
    every(MINUTES * 60 * 10, async () => {
      if (gatewayKilled) return;
      gatewayKilled = true;
      const befores = agentSpecs.map((s) => registered(s.key));
      const window = [Date.now(), Infinity];
      killWindows.push(window);
      gateway.kill('SIGKILL');
      await exited(gateway);
      counts.gatewayKills++;
      gateway = startGateway();
      gateways.push(gateway);
      await waitForLine(gateway, 'agents register on');
      // The new gateway's log starts empty: every agent registers there again.
      for (const [i, spec] of agentSpecs.entries()) await waitRegistered(spec.key, befores[i]);
      window[1] = Date.now();
      gateway.restartedAt = window[1] - started;
      log(`gateway killed and every agent back in ${window[1] - window[0]} ms`);
    }, MINUTES * 30 + 7),
  ];
  const progress = setInterval(() => {
    log(`${Math.round((Date.now() - started) / 1000)} s: ${JSON.stringify(counts)}`);
    if (failureExamples.size > 0) log(`  failures so far: ${JSON.stringify(Object.fromEntries([...failureExamples].sort((a, b) => b[1] - a[1]).slice(0, 6)))}`);
  }, 60_000);
  await Promise.all(jobs);
  clearInterval(progress);
  await sample();

  // Gateway deregistrations that no kill explains are tunnels dropped by clients, too.
  for (const line of gateways.flatMap((g) => g.lines)) {
    if (!line.includes('backend deregistered')) continue;
    const at = timeOf(line);
    if (!inKillWindow(at) && !line.includes('"agent":"b2/web/')) counts.tunnelDropsByClients++;
  }
  for (const [key, child] of [['dns', dns], ['gateway', gateway], ['haproxy', haproxy]]) {
    if (!alive(child)) throw new Error(`${key} died during the soak:\n${child.lines.slice(-30).join('\n')}`);
  }

  log(`failures outside kills, by kind: ${JSON.stringify(Object.fromEntries([...failureExamples].sort((a, b) => b[1] - a[1]).slice(0, 12)))}`);
  const fig = (v) => (Number.isFinite(v) ? Number(v.toPrecision(4)).toString() : String(v));
  const result = (what, value, target) => process.stdout.write(`RESULT soak.${what} ours=${fig(value)}${target === undefined ? '' : ` target=${target}`}\n`);
  result('minutes', (Date.now() - started) / 60_000);
  result('requests_ok', counts.requestsOk);
  result('requests_failed', counts.requestsFailed, 0);
  result('requests_failed_during_kills', counts.requestsFailedDuringKills);
  result('burst_clients', counts.burstClients);
  result('tunnels_dropped_by_clients', counts.tunnelDropsByClients, 0);
  result('agent_exits', counts.agentExits, 0);
  result('agent_kills', counts.agentKills);
  result('gateway_kills', counts.gatewayKills);
  result('reloads', counts.reloads);
  result('empty_reload_refused', counts.emptyReloadsRefused, 1);
  result('dns_udp_queries', counts.dnsQueries);
  result('dns_answers_lost', counts.dnsLost + counts.dnsTcpLost, 0);
  result('dns_tcp_queries', counts.dnsTcpQueries);
  result('dns_fuzz_packets', counts.fuzzPackets);
  // RSS and descriptors: the median over the first minute against the last minute, per process
  // (the gateway from its first minute after the restart).
  const span = Date.now() - started;
  for (const key of [...new Set(samples.map((s) => s.key))]) {
    const mine = samples.filter((s) => s.key === key && (key !== 'gateway' || s.t >= (gateway.restartedAt ?? 0)));
    const from = mine[0]?.t ?? 0;
    const first = mine.filter((s) => s.t <= from + 60_000 && s.t >= Math.min(from + 20_000, span));
    const last = mine.filter((s) => s.t >= span - 60_000);
    if (first.length === 0 || last.length === 0 || last[0].t - from < 120_000) continue;
    const name = key.replace(/[^a-z0-9]+/g, '_');
    const rss = [median(first.map((s) => s.rss)), median(last.map((s) => s.rss))];
    const fds = [median(first.map((s) => s.fds)), median(last.map((s) => s.fds))];
    const held = [median(first.map((s) => s.held)), median(last.map((s) => s.held))];
    process.stdout.write(`RESULT soak.${name}_held_after_gc_mib first=${fig(held[0])} last=${fig(held[1])} change=${fig((held[1] / held[0] - 1) * 100)}%\n`);
    process.stdout.write(`RESULT soak.${name}_rss_mib first=${fig(rss[0])} last=${fig(rss[1])} change=${fig((rss[1] / rss[0] - 1) * 100)}%\n`);
    process.stdout.write(`RESULT soak.${name}_fds first=${fig(fds[0])} last=${fig(fds[1])} change=${fig((fds[1] / fds[0] - 1) * 100)}%\n`);
  }
  stopping = true;
}

/** The pino `time` of a JSON log line (ms since epoch), or now. */
function timeOf(line) {
  const match = /"time":(\d+)/.exec(line);
  return match === null ? Date.now() : Number(match[1]);
}

let stopping = false;
// Stop everything started, also when killed (the 'exit' handler does not run on a signal).
// SIGINT is not among them: it ends the run early, with its figures (see main).
exitOnSignals(['SIGTERM', 'SIGHUP']);
main().then(
  () => {
    killAll();
    process.exit(0);
  },
  (err) => {
    process.stderr.write(`soak failed: ${err.stack ?? err}\n`);
    killAll();
    process.exit(1);
  },
);
