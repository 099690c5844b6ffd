/**
 * The agent process never leaves unless told to: however its tunnel ends
 * (a GOAWAY from the gateway with or without an error code, a GOAWAY its
 * own HTTP/2 stack sent after a flood of stream resets), it redials and
 * registers again. The real `meshplane agent` runs against a stub gateway
 * in the test that can end the tunnel each of those ways.
 */
import { once } from 'node:events';
import { connect as http2Connect, constants as http2Constants } from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2';
import { createServer as createTlsServer } from 'node:tls';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { afterAll, beforeAll, afterEach, describe, expect, it } from 'vitest';
import { credentialTlsFiles, readTlsFiles } from '../src/gateway/index.js';
import { HEADER, REGISTRATION_PATH } from '../src/lib/tunnel-io.js';
import { prepareBurstMesh } from './support/gateway-burst.js';
import { startAgent, stopAllDaemons } from './support/gateway.js';
import type { Daemon, GatewayFixture } from './support/gateway.js';
import { tempDir } from './support/run.js';

const work = tempDir('gateway-agent-lifecycle');
let fixture: GatewayFixture;

/** A gateway that registers agents and then lets the test end their tunnels. */
interface StubGateway {
  readonly port: number;
  /** Registered tunnels, in order. */
  readonly tunnels: ClientHttp2Session[];
  /** GOAWAY codes the stub received from agents. */
  readonly goaways: number[];
  close(): void;
}

async function startStubGateway(): Promise<StubGateway> {
  const tls = readTlsFiles(credentialTlsFiles(fixture.root('gw1'), 'gateway', null));
  const tunnels: ClientHttp2Session[] = [];
  const goaways: number[] = [];
  const sockets = new Set<TLSSocket>();
  const server: TlsServer = createTlsServer({ ...tls, requestCert: true, rejectUnauthorized: false, ALPNProtocols: ['h2'] }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    const session = http2Connect('https://agent.invalid', { createConnection: () => socket });
    session.on('error', () => undefined);
    session.on('goaway', (code: number) => goaways.push(code));
    const hello = session.request({ ':method': 'GET', ':path': REGISTRATION_PATH });
    hello.on('error', () => undefined);
    hello.resume();
    hello.on('end', () => tunnels.push(session));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    tunnels,
    goaways,
    close: () => {
      server.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

async function waitFor(check: () => boolean, what: string, agent: Daemon, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (agent.child.exitCode !== null || agent.child.signalCode !== null) throw new Error(`${what}: the agent exited (${agent.child.exitCode ?? agent.child.signalCode}) instead\n${agent.output()}`);
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${agent.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let stub: StubGateway | undefined;
let agent: Daemon | undefined;
/** The agent's backend: echoes, and ends when its client does. */
let backend: Server;

async function agentRegistered(): Promise<{ stub: StubGateway; agent: Daemon; first: ClientHttp2Session }> {
  stub = await startStubGateway();
  const started = startAgent(fixture, 'app', stub.port, ['--backend', `127.0.0.1:${(backend.address() as AddressInfo).port}`]);
  agent = started;
  await started.ready;
  const s = stub;
  await waitFor(() => s.tunnels.length === 1, 'the agent registered', started);
  return { stub: s, agent: started, first: s.tunnels[0]! };
}

beforeAll(async () => {
  fixture = await prepareBurstMesh(work.path);
  backend = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
}, 60_000);

afterEach(async () => {
  // Told to stop, it drains and exits 0.
  if (agent !== undefined) expect(await agent.stop('SIGTERM')).toBe(0);
  stub?.close();
  agent = undefined;
  stub = undefined;
});

afterAll(async () => {
  await stopAllDaemons();
  backend?.close();
  work.remove();
});

describe('the agent redials however its tunnel ends', () => {
  it('after its own HTTP/2 stack sent GOAWAY on a flood of stream resets, and stopped reading', async () => {
    const { stub, agent, first } = await agentRegistered();
    // 1,200 requests the agent answers (404), each then reset by the gateway: more RST_STREAM than
    // nghttp2 lets a server receive at once (1000, then 33/s).
    const streams: ClientHttp2Stream[] = [];
    for (let i = 0; i < 1200; i++) {
      const stream = first.request({ ':method': 'GET', ':path': `/flood/${i}` }, { endStream: false });
      stream.on('error', () => undefined);
      streams.push(stream);
    }
    await Promise.all(streams.map((s) => once(s, 'response')));
    for (const stream of streams) stream.close(http2Constants.NGHTTP2_CANCEL);
    // The agent's session answered with GOAWAY INTERNAL_ERROR (Node then drops the stub's end).
    await waitFor(() => stub.goaways.includes(http2Constants.NGHTTP2_INTERNAL_ERROR), 'GOAWAY INTERNAL_ERROR from the agent', agent);
    await waitFor(() => stub.tunnels.length === 2, 'the agent registered again', agent);
    expect(agent.output()).toMatch(/"msg":"tunnel closed; reconnecting"/);
  }, 60_000);

  it('after a GOAWAY with an error code from a gateway that keeps the connection open', async () => {
    const { stub, agent, first } = await agentRegistered();
    first.goaway(http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
    await waitFor(() => stub.tunnels.length === 2, 'the agent registered again', agent);
    expect(agent.output()).toMatch(/"reason":"the gateway sent GOAWAY \(code 11\)","msg":"tunnel closed; reconnecting"/);
  }, 60_000);

  it('at once after a graceful GOAWAY, while a connection still open on the old tunnel goes on', async () => {
    const { stub, agent, first } = await agentRegistered();
    // A tunnelled connection to the (echoing) backend that stays open through the GOAWAY.
    const open = first.request({ ':method': 'CONNECT', ':authority': 'app.mesh.internal:24782', [HEADER.endpoint]: 'plain' });
    open.on('error', () => undefined);
    await once(open, 'response');
    first.goaway(http2Constants.NGHTTP2_NO_ERROR);
    await waitFor(() => stub.tunnels.length === 2, 'a new tunnel while the old one drains', agent);
    // The old tunnel still carries its connection.
    let echoed = '';
    open.on('data', (chunk: Buffer) => (echoed += chunk.toString()));
    open.write('still there\n');
    await waitFor(() => echoed.includes('still there\n'), 'the echo through the old tunnel', agent);
    open.end();
    await once(open, 'close');
  }, 60_000);
});
