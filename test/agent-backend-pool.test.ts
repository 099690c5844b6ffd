/**
 * The agent's pool of backend connections made before they are needed
 * (--backend-pool): it fills only once a backend was used, hands out
 * connected sockets the backend has not closed or spoken on, closes what
 * stays unused past its idle time, and stays empty (no retry storm) while
 * the backend refuses. A real TCP server is the backend.
 */
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BackendPool } from '../src/agent/testing.js';
import { waitFor } from './support/wait.js';

interface Backend {
  readonly server: Server;
  readonly port: number;
  /** Connections the server accepted, in order. */
  readonly accepted: Socket[];
  /** How many of them are still open. */
  open(): number;
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function backend(onConnection: (socket: Socket) => void = () => undefined): Promise<Backend> {
  const accepted: Socket[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    accepted.push(socket);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const socket of accepted) socket.destroy();
    server.close();
  });
  return { server, port: (server.address() as AddressInfo).port, accepted, open: () => accepted.filter((s) => !s.destroyed && !s.readableEnded).length };
}

function pool(size: number, idleMs?: number): BackendPool {
  const p = new BackendPool(size, idleMs);
  cleanups.push(() => p.close());
  return p;
}

describe('backend pool', () => {
  it('fills only after the first take, then hands out connected sockets that carry bytes both ways', async () => {
    // An echo server: silent until spoken to, as a pooled backend must be.
    const b = await backend((socket) => socket.on('data', (chunk: Buffer) => socket.write(chunk)));
    const p = pool(2);
    const address = { address: '127.0.0.1', port: b.port };
    await new Promise((r) => setTimeout(r, 100));
    expect(b.accepted.length).toBe(0);
    expect(p.take(address)).toBeNull();
    await waitFor(() => p.ready === 2 && b.accepted.length === 2, { what: 'two pooled connections' });
    const socket = p.take(address)!;
    expect(socket).not.toBeNull();
    expect(socket.readyState).toBe('open');
    // Refilled off the hot path: back to two ready, three made in all.
    await waitFor(() => p.ready === 2 && b.accepted.length === 3, { what: 'the pool refilled' });
    // The caller reads it as the agent's pipe does: with a 'data' listener.
    const echoed = new Promise<string>((resolve) => socket.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    socket.write('hello');
    expect(await echoed).toBe('hello');
    socket.destroy();
  });

  it('closes sockets unused past the idle time and makes no new ones until the next take', async () => {
    const b = await backend();
    const p = pool(3, 300);
    const address = { address: '127.0.0.1', port: b.port };
    p.take(address);
    await waitFor(() => b.accepted.length === 3, { what: 'three pooled connections' });
    await waitFor(() => p.ready === 0 && b.open() === 0, { what: 'idle sockets closed' });
    await new Promise((r) => setTimeout(r, 400));
    expect(b.accepted.length).toBe(3);
  });

  it('never hands out a socket the backend closed', async () => {
    const b = await backend((socket) => socket.end());
    const p = pool(2);
    const address = { address: '127.0.0.1', port: b.port };
    expect(p.take(address)).toBeNull();
    await waitFor(() => b.accepted.length === 2, { what: 'two pooled connections' });
    await new Promise((r) => setTimeout(r, 200));
    expect(p.ready).toBe(0);
    expect(p.take(address)).toBeNull();
  });

  it('pools nothing more for a backend that speaks first', async () => {
    const b = await backend((socket) => socket.write('220 ready\r\n'));
    const p = pool(2);
    const address = { address: '127.0.0.1', port: b.port };
    expect(p.take(address)).toBeNull();
    await waitFor(() => b.accepted.length === 2 && p.ready === 0, { what: 'greeted connections dropped' });
    // A greeting made long before the client came is not handed out, and no more are made.
    expect(p.take(address)).toBeNull();
    await new Promise((r) => setTimeout(r, 200));
    expect(p.ready).toBe(0);
    expect(b.accepted.length).toBe(2);
  });

  it('stays empty while the backend refuses', async () => {
    const b = await backend();
    const port = b.port;
    b.server.close();
    for (const socket of b.accepted) socket.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const p = pool(4);
    const address = { address: '127.0.0.1', port };
    expect(p.take(address)).toBeNull();
    await new Promise((r) => setTimeout(r, 300));
    expect(p.ready).toBe(0);
    expect(p.take(address)).toBeNull();
  });
});
