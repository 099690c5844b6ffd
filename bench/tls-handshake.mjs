// Micro-benchmark: the CPU of one mutual TLS 1.3 handshake in Node (server
// and client in this one process, 8 at a time, ECDSA P-256 certificates made
// by openssl), with the server's default session tickets and with
// SSL_OP_NO_TICKET as `pki serve` sets it (src/pki/serve.ts), alternating,
// three pairs. OpenSSL 3.0 makes each TLS 1.3 stateless ticket by parsing
// the session back, the client's certificate with it (BENCHMARKS.md, pki).
//
// Usage: node bench/tls-handshake.mjs [handshakes per run, default 1500]
// Needs openssl (checked first). Ends with
// `RESULT handshake-cpu-us no-tickets=<v> tickets=<v> ratio=<r>` (r > 1: fewer µs without tickets).
import { spawnSync } from 'node:child_process';
import { constants } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import tls from 'node:tls';
import { atExit, exitOnSignals } from './lib/children.mjs';
import { requireTools } from './lib/tools.mjs';

requireTools('bench/tls-handshake.mjs', ['openssl']);
exitOnSignals();
const COUNT = Number(process.argv[2] ?? 1500);
const dir = mkdtempSync(join(tmpdir(), 'meshplane-bench-tls-'));
atExit(() => rmSync(dir, { recursive: true, force: true }));

const openssl = (...args) => {
  const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${run.stderr}`);
};
openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
openssl('req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=bench-ca', '-days', '1', '-out', 'ca.pem');
for (const [name, san] of [['server', 'IP:127.0.0.1'], ['client', 'URI:spiffe://mesh.internal/host/h1/credential/web']]) {
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
  openssl('req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-addext', `subjectAltName=${san}`, '-out', `${name}.csr`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-copy_extensions', 'copy', '-out', `${name}.pem`);
}
const read = (file) => readFileSync(join(dir, file));

/** CPU µs a handshake (both ends) over COUNT handshakes, 8 in flight, after 100 to warm up. */
async function run(secureOptions) {
  const server = tls.createServer({ key: read('server.key'), cert: read('server.pem'), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3', secureOptions }, (socket) => {
    socket.on('error', () => undefined);
    socket.getPeerX509Certificate();
    socket.end('x');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const context = tls.createSecureContext({ cert: read('client.pem'), key: read('client.key') });
  const port = server.address().port;
  const one = () =>
    new Promise((resolve) => {
      const socket = tls.connect({ port, host: '127.0.0.1', secureContext: context, rejectUnauthorized: false }, () => {
        socket.on('data', () => undefined);
        socket.on('end', () => resolve(socket.destroy()));
      });
      socket.on('error', resolve);
    });
  for (let i = 0; i < 100; i++) await one();
  const cpu = process.cpuUsage();
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => { while (next++ < COUNT) await one(); }));
  const used = process.cpuUsage(cpu);
  const seconds = (performance.now() - started) / 1000;
  await new Promise((resolve) => server.close(resolve));
  return { us: (used.user + used.system) / COUNT, rate: COUNT / seconds };
}

const results = { tickets: [], 'no-tickets': [] };
for (let pair = 1; pair <= 3; pair++) {
  for (const [label, options] of [['tickets', 0], ['no-tickets', constants.SSL_OP_NO_TICKET]]) {
    const r = await run(options);
    results[label].push(r.us);
    process.stdout.write(`pair ${pair} ${label}: ${r.us.toFixed(0)} us of CPU a handshake (both ends), ${r.rate.toFixed(0)} handshakes/s\n`);
  }
}
const median = (values) => [...values].sort((a, b) => a - b)[1];
const [withTickets, without] = [median(results.tickets), median(results['no-tickets'])];
process.stdout.write(`RESULT handshake-cpu-us no-tickets=${without.toFixed(0)} tickets=${withTickets.toFixed(0)} ratio=${(withTickets / without).toFixed(2)}\n`);
