// The least an mTLS HTTP/2 CONNECT tunnel in Node.js does: the same shape
// and transport as meshplane's gateway and agent (the agent dials out with
// TLS, the roles reverse, each client connection is one CONNECT stream, the
// same windows), with nothing else: no routing, no registration, no PROXY
// header, no metrics, no health checks; the same two-way pipe.
// bench:gateway runs it beside ours, so that each run shows what Node's TLS
// and HTTP/2 cost on the machine of the run (`RESULT h2-ceiling-*` lines).
//
// Usage:
//   node bench/node-h2-tunnel.mjs gateway FRONT_PORT TUNNEL_PORT CA CERT KEY
//   node bench/node-h2-tunnel.mjs agent TUNNEL_PORT BACKEND_PORT CA CERT KEY SERVERNAME
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { connect as netConnect, createServer as netServer } from 'node:net';
import process from 'node:process';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
// meshplane's own two-way pipe (half-close and backpressure as in the gateway and agent).
import { pipeBoth } from '../dist/lib/tunnel-io.js';

const SETTINGS = { initialWindowSize: 8 << 20, maxFrameSize: 64 * 1024, maxConcurrentStreams: 100_000, enablePush: false };
const SESSION = { settings: SETTINGS, maxSessionMemory: 256 };
const SESSION_WINDOW = 32 << 20;

const [role, ...args] = process.argv.slice(2);
const ignore = () => undefined;

if (role === 'gateway') {
  const [frontPort, tunnelPort, ca, cert, key] = args;
  let session = null;
  tlsServer({ ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] }, (socket) => {
    socket.setNoDelay(true);
    socket.on('error', ignore);
    const next = http2.connect('https://agent.invalid', { ...SESSION, createConnection: () => socket });
    next.on('error', ignore);
    next.once('connect', () => {
      next.setLocalWindowSize(SESSION_WINDOW);
      session = next;
    });
  }).listen(Number(tunnelPort), '127.0.0.1');
  netServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    client.on('error', ignore);
    if (session === null) return client.destroy();
    const stream = session.request({ ':method': 'CONNECT', ':authority': 'backend.invalid:1' });
    stream.on('error', ignore);
    pipeBoth(client, stream);
  }).listen(Number(frontPort), '127.0.0.1');
} else if (role === 'agent') {
  const [tunnelPort, backendPort, ca, cert, key, servername] = args;
  const socket = tlsConnect({ host: '127.0.0.1', port: Number(tunnelPort), ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), servername, ALPNProtocols: ['h2'] }, () => {
    socket.setNoDelay(true);
    const session = http2.performServerHandshake(socket, SESSION);
    session.on('error', ignore);
    session.once('localSettings', () => session.setLocalWindowSize(SESSION_WINDOW));
    session.on('stream', (stream) => {
      stream.on('error', ignore);
      stream.respond({ ':status': 200 });
      const backend = netConnect({ host: '127.0.0.1', port: Number(backendPort), noDelay: true, allowHalfOpen: true });
      backend.on('error', ignore);
      pipeBoth(stream, backend);
    });
  });
  socket.on('error', (err) => {
    process.stderr.write(`node-h2-tunnel agent: ${err.message}\n`);
    process.exit(1);
  });
} else {
  process.stderr.write('usage: node bench/node-h2-tunnel.mjs gateway|agent ...\n');
  process.exit(2);
}
