// A tiny TCP peer for the overlay tests, run inside network namespaces.
//   serve PORT NAME           answer each connection's first line with "NAME <line>"
//   ask HOST PORT MSG MS      send MSG, print the answer; exit 1 on error, 2 on timeout
//   connect HOST PORT MS      exit 0 once connected; 1 on error, 2 on timeout
import net from 'node:net';
import process from 'node:process';
import { setTimeout } from 'node:timers';

const [mode, ...args] = process.argv.slice(2);

function giveUpAfter(ms) {
  setTimeout(() => {
    process.stderr.write('timeout\n');
    process.exit(2);
  }, ms);
}

if (mode === 'serve') {
  const [port, name] = args;
  const server = net.createServer((socket) => {
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      buffer += chunk;
      const end = buffer.indexOf('\n');
      if (end >= 0) socket.end(`${name} ${buffer.slice(0, end)}\n`);
    });
  });
  server.listen(Number(port), '0.0.0.0', () => process.stdout.write('listening\n'));
  process.on('SIGTERM', () => process.exit(0));
} else if (mode === 'ask' || mode === 'connect') {
  const [host, port, third, fourth] = args;
  giveUpAfter(Number(mode === 'ask' ? fourth : third));
  const socket = net.connect({ host, port: Number(port) });
  let reply = '';
  socket.setEncoding('utf8');
  socket.on('connect', () => {
    if (mode === 'connect') process.exit(0);
    socket.write(`${third}\n`);
  });
  socket.on('data', (chunk) => (reply += chunk));
  socket.on('error', (err) => {
    process.stderr.write(`${err.code ?? err.message}\n`);
    process.exit(1);
  });
  socket.on('end', () => {
    process.stdout.write(reply);
    process.exit(0);
  });
} else {
  process.stderr.write('usage: tcp-echo.mjs serve PORT NAME | ask HOST PORT MSG MS | connect HOST PORT MS\n');
  process.exit(64);
}
