// The least a Node.js process can do per tunnelled connection: accept, dial
// the next hop, pipe both ways. bench:gateway chains two of these (the same
// two-process shape as gateway + agent, without TLS and HTTP/2) to show what
// Node itself costs on this machine, apart from meshplane's own work.
// Usage: node bench/node-relay.mjs LISTEN_PORT TARGET_PORT
import { connect, createServer } from 'node:net';
import process from 'node:process';

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
  const upstream = connect({ port: targetPort, host: '127.0.0.1', noDelay: true, allowHalfOpen: true });
  client.pipe(upstream);
  upstream.pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
}).listen(listenPort, '127.0.0.1');
