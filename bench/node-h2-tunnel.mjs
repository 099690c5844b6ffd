// The least an mTLS HTTP/2 CONNECT tunnel in Node.js does: the same shape
// and transport as meshplane's gateway and agent (the agent dials out with
// TLS, the roles reverse, each client connection is one CONNECT stream, the
// same windows), with nothing else: no routing, no registration, no PROXY
// header, no metrics, no health checks; the same two-way pipe.
// bench:gateway runs it beside ours, so that each run shows what Node's TLS
// and HTTP/2 cost on the machine of the run (`RESULT h2-ceiling-*` lines).
//
// Workers (issue 19, lever 5: does a second core pay?), measured here rather
// than built into the product: the gateway role takes a worker count W and
// the agent role a process count A and the gateway's worker count W.
// With W > 1 a node:cluster primary forks W workers; worker i takes tunnels
// on TUNNEL_PORT+i (its own socket, `exclusive`: the primary is not on that
// path) and all share FRONT_PORT through cluster's shared handle. Scheduling
// is Node's: round-robin by the primary (Linux default) or, with
// NODE_CLUSTER_SCHED_POLICY=none, every worker accepts from the one socket
// and the kernel picks. With A > 1, A agent processes each open one tunnel to
// every gateway worker's port; a gateway worker spreads its client
// connections round-robin over the tunnels it holds. W = A = 1 (the default)
// is one process each, no cluster: the single-process tunnel as before.
// The gateway prints `ready` once every worker holds AGENTS tunnels (env
// H2_AGENTS, default 1), so that a bench never sends a client to a worker
// with no tunnel (which resets it).
//
// Usage:
//   node bench/node-h2-tunnel.mjs gateway FRONT_PORT TUNNEL_PORT CA CERT KEY [W]
//   node bench/node-h2-tunnel.mjs agent TUNNEL_PORT BACKEND_PORT CA CERT KEY SERVERNAME [A [W]]
import cluster from 'node:cluster';
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

/** Runs `body(index)` in `count` cluster workers (the primary only forks and watches), or in this process when count is 1. */
function inProcesses(count, body, onMessage = ignore) {
  if (count === 1) return body(0);
  if (cluster.isWorker) return body(Number(process.env.H2_INDEX));
  for (let i = 0; i < count; i++) cluster.fork({ H2_INDEX: String(i) }).on('message', onMessage);
  // A worker that dies takes the run with it: a half tunnel would measure nothing.
  cluster.on('exit', () => process.exit(1));
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
}

if (role === 'gateway') {
  const [frontPort, tunnelPort, ca, cert, key, workersArg = '1'] = args;
  const workers = Number(workersArg);
  const agents = Number(process.env.H2_AGENTS ?? 1);
  let readyWorkers = 0;
  const onReady = () => {
    if (++readyWorkers === workers) process.stdout.write('ready\n');
  };
  inProcesses(
    workers,
    (index) => {
      const sessions = [];
      let turn = 0;
      const tunnels = tlsServer({ ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] }, (socket) => {
        socket.setNoDelay(true);
        socket.on('error', ignore);
        const next = http2.connect('https://agent.invalid', { ...SESSION, createConnection: () => socket });
        next.on('error', ignore);
        next.once('close', () => {
          const at = sessions.indexOf(next);
          if (at !== -1) sessions.splice(at, 1);
        });
        next.once('connect', () => {
          next.setLocalWindowSize(SESSION_WINDOW);
          sessions.push(next);
          if (sessions.length === agents) (workers === 1 ? onReady : () => process.send('ready'))();
        });
      });
      // `exclusive`: the worker's own socket, so that no tunnel goes through the primary.
      tunnels.listen({ port: Number(tunnelPort) + index, host: '127.0.0.1', exclusive: true });
      netServer({ noDelay: true, allowHalfOpen: true }, (client) => {
        client.on('error', ignore);
        if (sessions.length === 0) return client.destroy();
        const session = sessions[turn++ % sessions.length];
        const stream = session.request({ ':method': 'CONNECT', ':authority': 'backend.invalid:1' });
        stream.on('error', ignore);
        pipeBoth(client, stream);
      }).listen(Number(frontPort), '127.0.0.1');
    },
    (message) => message === 'ready' && onReady(),
  );
} else if (role === 'agent') {
  const [tunnelPort, backendPort, ca, cert, key, servername, processesArg = '1', workersArg = '1'] = args;
  inProcesses(Number(processesArg), () => {
    for (let i = 0; i < Number(workersArg); i++) {
      const socket = tlsConnect({ host: '127.0.0.1', port: Number(tunnelPort) + i, ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), servername, ALPNProtocols: ['h2'] }, () => {
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
    }
  });
} else {
  process.stderr.write('usage: node bench/node-h2-tunnel.mjs gateway|agent ...\n');
  process.exit(2);
}
