/**
 * The gateway and the agent follow edits of their topology file while they
 * run (real `meshplane gateway` and `meshplane agent` processes, real TCP
 * backends, the file replaced atomically the way `meshplane compile` does):
 * an instance removed stops getting requests, a removed endpoint's port
 * closes, a bad edit changes nothing, a PROXY protocol change applies
 * without a redial, and an agent whose service left its host drains and
 * exits 0.
 */
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../src/lib/atomic-write.js';
import { issueMeshCredentials } from '../src/pki/index.js';
import { writeTopology } from '../src/topology/index.js';
import type { Topology } from '../src/topology/index.js';
import { compileMesh } from './support/dns.js';
import { registrationPort, startDaemon, stopAllDaemons } from './support/gateway.js';
import type { Daemon } from './support/gateway.js';
import { tempDir } from './support/run.js';
import { waitFor } from './support/wait.js';

const work = tempDir('gateway-live');
/** Front ports of this file's endpoints (apart from the other gateway tests' ranges). */
const RAW = 25510;
const EXTRA = 25511;
const GATEWAY_PORT = 25400;

interface Variant {
  /** Hosts that run `echo`. */
  readonly echoOn: readonly ('b1' | 'b2')[];
  readonly proxy?: 'none' | 'v1' | 'v2';
  /** Whether the second endpoint (front port EXTRA) exists. */
  readonly extra?: boolean;
}

/** gw1 runs the gateway; echo runs where `variant` says (b1, b2 in group "web", the others in "idle"). */
function compileVariant(variant: Variant): Topology {
  const dir = join(work.path, 'compile');
  mkdirSync(dir, { recursive: true });
  return compileMesh(dir, {
    overlays: [{ name: 'lvov', network: '100.64.55.0/24', port: 6590 }],
    hosts: [
      { name: 'gw1', ips: ['127.0.55.1'], groups: ['gateway'] },
      ...(['b1', 'b2'] as const).map((name, i) => ({ name, ips: [`127.0.55.${i + 2}`], groups: [variant.echoOn.includes(name) ? 'web' : 'idle', 'all_backends'] })),
    ],
    services: `gateway:
  scheduling_group: gateway
  ports: [${GATEWAY_PORT}]
  service_credentials:
    - {name: gateway, enable_client: false}
echo:
  scheduling_group: web
  ports: [25501]
  service_credentials: [{name: echo}]
  gateway_endpoints:
    - {name: raw, port: ${RAW}, mode: tcp, proxy_protocol: ${variant.proxy ?? 'none'}, health: false}
${variant.extra === false ? '' : `    - {name: extra, port: ${EXTRA}, mode: tcp, health: false}\n`}`,
  });
}

/**
 * A TCP backend that answers every line with its name, the PROXY protocol
 * header it saw at the start of the connection (none, v1 or v2) and the line.
 */
interface EchoBackend {
  readonly port: number;
  close(): void;
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

async function startEchoBackend(name: string): Promise<EchoBackend> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer = Buffer.alloc(0);
    let proxy: string | null = null;
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (proxy === null) {
        if (buffer.subarray(0, 12).equals(V2_SIGNATURE)) {
          if (buffer.length < 16) return;
          const length = buffer.readUInt16BE(14);
          if (buffer.length < 16 + length) return;
          proxy = 'v2';
          buffer = buffer.subarray(16 + length);
        } else if (buffer.subarray(0, 6).toString('latin1') === 'PROXY ') {
          const end = buffer.indexOf('\r\n');
          if (end < 0) return;
          proxy = 'v1';
          buffer = buffer.subarray(end + 2);
        } else if (buffer.length > 0) {
          proxy = 'none';
        }
      }
      for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
        socket.write(`${name} proxy=${proxy} ${buffer.subarray(0, newline).toString()}\n`);
        buffer = buffer.subarray(newline + 1);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** A client connection through a front port that asks one line at a time. */
interface Conversation {
  ask(line: string): Promise<string>;
  close(): void;
}

async function converse(port: number): Promise<Conversation> {
  const socket = connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  let received = '';
  let waiting: { resolve: (line: string) => void; reject: (err: Error) => void } | null = null;
  const deliver = (): void => {
    const newline = received.indexOf('\n');
    if (newline < 0 || waiting === null) return;
    const line = received.slice(0, newline);
    received = received.slice(newline + 1);
    const w = waiting;
    waiting = null;
    w.resolve(line);
  };
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString();
    deliver();
  });
  const fail = (err: Error): void => {
    const w = waiting;
    waiting = null;
    w?.reject(err);
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('connection closed before an answer')));
  return {
    ask: (line) =>
      new Promise((resolve, reject) => {
        if (socket.destroyed) return reject(new Error('connection closed'));
        waiting = { resolve, reject };
        socket.write(`${line}\n`);
        deliver();
      }),
    close: () => socket.destroy(),
  };
}

/** One question on a new connection: who answered it, with which PROXY header. */
async function askOnce(port: number, line = 'ping'): Promise<string> {
  const conversation = await converse(port);
  try {
    return await conversation.ask(line);
  } finally {
    conversation.close();
  }
}

function portRefuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

function count(text: string, what: string): number {
  return text.split('\n').filter((line) => line.includes(what)).length;
}

let topologyFile: string;
let stateDir: string;
const root = (host: string): string => join(stateDir, 'credentials', host);
const backends: EchoBackend[] = [];

beforeAll(async () => {
  mkdirSync(join(work.path, 'live'));
  topologyFile = join(work.path, 'live', 'topology.json');
  stateDir = join(work.path, 'state');
  // Credentials for echo on both hosts, whatever a variant says later.
  await issueMeshCredentials({ topology: compileVariant({ echoOn: ['b1', 'b2'] }), stateDir });
  for (const name of ['b1', 'b2']) backends.push(await startEchoBackend(name));
});

afterEach(async () => {
  await stopAllDaemons();
});

afterAll(() => {
  for (const backend of backends) backend.close();
  work.remove();
});

function startGateway(extra: readonly string[] = []): Daemon {
  return startDaemon(['gateway', '--topology', topologyFile, '--credentials-root', root('gw1'), '--listen', '127.0.0.1:0', '--front-address', '127.0.0.1', ...extra], 'agents register on');
}

function startAgent(host: 'b1' | 'b2', gatewayPort: number, extra: readonly string[] = []): Daemon {
  const backend = backends[host === 'b1' ? 0 : 1]!;
  return startDaemon(
    ['agent', '--topology', topologyFile, '--host', host, '--service', 'echo', '--credentials-root', root(host), '--gateway', `127.0.0.1:${gatewayPort}`, '--backend', `127.0.0.1:${backend.port}`, '--reconnect-max', '0.5', ...extra],
    'meshplane agent:',
  );
}

const explain = (...daemons: Daemon[]) => (): string => daemons.map((d) => d.output()).join('\n---\n');

describe('the gateway follows the topology file', () => {
  it('stops routing to a removed instance, closes a removed endpoint\'s port, keeps other connections, and survives a bad edit', async () => {
    writeTopology(topologyFile, compileVariant({ echoOn: ['b1', 'b2'] }));
    const gateway = startGateway();
    const port = registrationPort(await gateway.ready);
    // The agents do not watch: what happens here is the gateway's doing (and its registration check).
    const agents = [startAgent('b1', port, ['--no-watch']), startAgent('b2', port, ['--no-watch'])];
    await Promise.all(agents.map((a) => a.ready));
    const why = explain(gateway, ...agents);
    await waitFor(() => count(gateway.output(), '"msg":"backend registered"') >= 2, { what: 'both agents registered', explain: why });

    // Both instances serve.
    const seen = new Set<string>();
    await waitFor(
      async () => {
        seen.add((await askOnce(RAW)).split(' ')[0]!);
        return seen.size === 2;
      },
      { what: 'answers from b1 and b2', explain: why },
    );
    expect(await askOnce(EXTRA)).toMatch(/^b[12] proxy=none ping$/);

    // A long-lived connection through b1, which stays an instance.
    let held: Conversation | null = null;
    await waitFor(
      async () => {
        const candidate = await converse(RAW);
        if ((await candidate.ask('hello')).startsWith('b1 ')) return (held = candidate);
        candidate.close();
        return false;
      },
      { what: 'a connection through b1', explain: why },
    );

    // b2 no longer runs echo, and the extra endpoint is gone.
    writeTopology(topologyFile, compileVariant({ echoOn: ['b1'], extra: false }));
    await waitFor(() => portRefuses(EXTRA), { what: 'the removed endpoint\'s front port closed', explain: why });
    await waitFor(() => gateway.output().includes('instance removed from the topology'), { what: 'b2 dropped', explain: why });
    // Within a few seconds, every new connection goes to b1 (the b2 agent's redials are refused).
    for (let i = 0; i < 20; i++) expect(await askOnce(RAW, `after ${i}`)).toBe(`b1 proxy=none after ${i}`);
    await waitFor(() => gateway.output().includes('runs no instance of service'), { what: 'the b2 agent\'s redial refused', explain: why });
    for (let i = 0; i < 5; i++) expect(await askOnce(RAW)).toBe('b1 proxy=none ping');
    // The connection through the unaffected backend lived through it.
    expect(await held!.ask('still there')).toBe('b1 proxy=none still there');

    // A bad edit: logged, and routing goes on as before.
    writeFileAtomic(topologyFile, '{"format_version": 1, "domain": ');
    await waitFor(() => gateway.output().includes('reload failed'), { what: 'the bad edit reported', explain: why });
    expect(gateway.output()).toContain('TOPOLOGY_ERR_FORMAT');
    expect(await askOnce(RAW)).toBe('b1 proxy=none ping');
    expect(await held!.ask('and now')).toBe('b1 proxy=none and now');
    expect(gateway.child.exitCode).toBeNull();
    held!.close();
  });
});

describe('the agent follows the topology file', () => {
  it('takes a new PROXY protocol without redialling, and drains and exits 0 when its service leaves the host', async () => {
    writeTopology(topologyFile, compileVariant({ echoOn: ['b1'], proxy: 'none' }));
    // The gateway does not watch: what happens here is the agent's doing.
    const gateway = startGateway(['--no-watch']);
    const port = registrationPort(await gateway.ready);
    const agent = startAgent('b1', port, ['--drain-timeout', '60']);
    await agent.ready;
    const why = explain(gateway, agent);
    await waitFor(() => count(gateway.output(), '"msg":"backend registered"') >= 1, { what: 'the agent registered', explain: why });
    expect(await askOnce(RAW)).toBe('b1 proxy=none ping');

    writeTopology(topologyFile, compileVariant({ echoOn: ['b1'], proxy: 'v1' }));
    await waitFor(async () => (await askOnce(RAW)) === 'b1 proxy=v1 ping', { what: 'PROXY v1 sent after the change', explain: why });
    expect(agent.output()).toContain('settings updated from the topology; tunnels kept');
    // The same tunnel: registered once, never redialled.
    expect(count(gateway.output(), '"msg":"backend registered"')).toBe(1);
    expect(count(agent.output(), '"msg":"tunnel up"')).toBe(1);

    // A connection open when the service leaves b1 finishes on the draining agent.
    const held = await converse(RAW);
    expect(await held.ask('before')).toBe('b1 proxy=v1 before');
    const exited = new Promise<number | null>((resolve) => agent.child.once('exit', (code) => resolve(code)));
    writeTopology(topologyFile, compileVariant({ echoOn: ['b2'], proxy: 'v1' }));
    await waitFor(() => agent.output().includes('service no longer on this host'), { what: 'the agent noticed', explain: why });
    await waitFor(() => gateway.output().includes('agent is draining'), { what: 'the gateway saw the drain', explain: why });
    expect(await held.ask('while draining')).toBe('b1 proxy=v1 while draining');
    expect(agent.child.exitCode).toBeNull();
    held.close();
    expect(await exited).toBe(0);
  });
});
