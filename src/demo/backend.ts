/**
 * The demo backend `meshplane up` puts behind the example mesh's gateway
 * endpoints: one port that takes a PROXY protocol header (v1 or v2, or
 * none), then TLS (terminated with the service's own server certificate) or
 * plain HTTP, and answers every request with who asked, as the PROXY header
 * told it. It shows an operator the whole path working; it is not a
 * production server.
 */
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { Duplex } from 'node:stream';
import type { Server, Socket } from 'node:net';
import { TLSSocket, createSecureContext } from 'node:tls';
import { readProxyHeader } from '../agent/index.js';
import type { ConnectionAddresses } from '../agent/index.js';

interface DemoBackendOptions {
  readonly service: string;
  readonly host: string;
  readonly address: string;
  readonly port: number;
  /** Server certificate and key (PEM) for TLS clients; without them TLS hellos are refused. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
}

const clients = new WeakMap<Socket, { addresses: ConnectionAddresses | null; proxy: string }>();

export async function startDemoBackend(options: DemoBackendOptions): Promise<Server> {
  const http = createHttpServer((request: IncomingMessage, response: ServerResponse) => {
    const raw = request.socket instanceof TLSSocket ? (request.socket as TLSSocket & { demoRaw?: Socket }).demoRaw : request.socket;
    const seen = raw === undefined ? undefined : clients.get(raw);
    const client = seen?.addresses === null || seen === undefined ? `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? 0}` : `${seen.addresses.sourceAddress}:${seen.addresses.sourcePort}`;
    const body = `hello from ${options.service} on ${options.host}: you are ${client} (PROXY ${seen?.proxy ?? 'none'}${request.socket instanceof TLSSocket ? ', TLS' : ''}), asked for ${request.headers.host ?? ''}${request.url ?? ''}\n`;
    response.writeHead(request.url === '/health' ? 200 : 200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });
  const secureContext = options.tls === undefined ? undefined : createSecureContext({ cert: options.tls.cert, key: options.tls.key });
  const server = createNetServer((socket) => {
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const header = readProxyHeader(buffered);
      if (header.kind === 'incomplete') return;
      if (header.kind === 'invalid') {
        socket.destroy();
        return;
      }
      const rest = header.kind === 'header' ? buffered.subarray(header.length) : buffered;
      if (rest.length === 0 && header.kind === 'header' && buffered.length === header.length) {
        // Header only so far: wait for the first byte of the payload to tell TLS from HTTP.
        buffered = Buffer.alloc(0);
        clients.set(socket, { addresses: header.addresses, proxy: header.version });
        return;
      }
      socket.off('data', onData);
      if (header.kind === 'header') clients.set(socket, { addresses: header.addresses, proxy: header.version });
      if (rest[0] === 0x16 && secureContext !== undefined) {
        // TLSSocket reads a net.Socket's file descriptor directly and would miss the bytes already
        // read; a plain Duplex in front makes it take them from the stream instead.
        const tls = new TLSSocket(streamOf(socket, rest), { isServer: true, secureContext }) as TLSSocket & { demoRaw?: Socket };
        tls.demoRaw = socket;
        tls.on('error', () => socket.destroy());
        http.emit('connection', tls);
      } else {
        socket.pause();
        socket.unshift(rest);
        http.emit('connection', socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.address, () => resolve());
  });
  server.on('close', () => http.close());
  return server;
}

/** A Duplex over `socket` that first yields `head` (bytes already read from it). */
function streamOf(socket: Socket, head: Buffer): Duplex {
  const duplex = new Duplex({
    read: () => socket.resume(),
    write: (chunk: Buffer, _encoding, callback) => socket.write(chunk, callback),
    final: (callback) => socket.end(callback),
    destroy: (error, callback) => {
      socket.destroy();
      callback(error);
    },
  });
  duplex.push(head);
  socket.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('close', () => duplex.destroy());
  return duplex;
}
