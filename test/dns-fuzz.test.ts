/**
 * Garbage in, service continues: the real `meshplane dns` process gets
 * random packets and mutated valid queries over UDP and TCP (seeded, so a
 * failure can be replayed), with valid queries mixed in that must keep
 * getting the right answer. Every reply must decode (checked with dns2, an
 * independent decoder) as a response to the packet that caused it.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dns2 from 'dns2';
import { writeTopology } from '../src/topology/index.js';
import { LOOPBACK_MESH, buildQuery, compileMesh, tcpExchange, udpExchange } from './support/dns.js';
import { waitForOutput } from './support/netns.js';
import { CLI, tempDir } from './support/run.js';
import { within } from './support/wait.js';

const { Packet } = dns2;
const SEED = Number(process.env['DNS_FUZZ_SEED'] ?? 20261123);
const UDP_PACKETS = 20_000;
const TCP_CONNECTIONS = 60;

/** mulberry32: small, seedable, good enough to pick bytes. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const work = tempDir('dns-fuzz');
let child: ChildProcessWithoutNullStreams;
let server: { address: string; port: number };
let stderr = '';

/** Valid queries to start mutations from: several types, with and without EDNS, built by dns2. */
function corpus(): Buffer[] {
  const names = ['app.mesh.internal', 'h1.app.mesh.internal', 'big.mesh.internal', 'mesh.internal', 'nothere.mesh.internal', 'example.org'];
  const types = [Packet.TYPE.A, Packet.TYPE.AAAA, Packet.TYPE.SOA, Packet.TYPE.NS, Packet.TYPE.MX, Packet.TYPE.ANY];
  const out: Buffer[] = [];
  for (const name of names) {
    for (const type of types) {
      const packet = new Packet();
      packet.header.id = out.length;
      packet.header.rd = 1;
      packet.questions.push(new Packet.Question(name, type, Packet.CLASS.IN));
      out.push(packet.toBuffer());
      out.push(buildQuery(name, type, { id: out.length, edns: { udp: 1232 } }));
    }
  }
  return out;
}

function mutate(random: () => number, seed: Buffer): Buffer {
  const packet = Buffer.from(seed);
  switch (Math.floor(random() * 5)) {
    case 0: // flip bits
      for (let i = 0; i < 1 + random() * 4; i++) packet[Math.floor(random() * packet.length)]! ^= 1 << Math.floor(random() * 8);
      return packet;
    case 1: // truncate
      return packet.subarray(0, Math.floor(random() * packet.length));
    case 2: // random counts
      packet.writeUInt16BE(Math.floor(random() * 65536), 4 + 2 * Math.floor(random() * 4));
      return packet;
    case 3: // append junk
      return Buffer.concat([packet, Buffer.from(Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256)))]);
    default: // overwrite a label length with a pointer or a huge length
      packet[12] = random() < 0.5 ? 0xc0 : 0x3f + Math.floor(random() * 0xc0);
      return packet;
  }
}

async function stillAnswers(): Promise<void> {
  const reply = await udpExchange(server, buildQuery('h1.app.mesh.internal', 1, { id: 4242 }));
  expect(reply, `no answer; server stderr: ${stderr}`).not.toBeNull();
  const decoded = Packet.parse(reply!);
  expect(decoded.header.id).toBe(4242);
  expect(decoded.answers.map((a) => a.address)).toEqual(['127.0.10.1']);
}

beforeAll(async () => {
  const file = `${work.path}/topology.json`;
  writeTopology(file, compileMesh(work.path, LOOPBACK_MESH));
  child = spawn(process.execPath, [CLI, 'dns', '--topology', file, '--host', 'h4', '--listen', '127.0.0.1:0', '--no-forward', '--tcp-idle-timeout', '2']);
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const ready = waitForOutput(child, 'serving on');
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  await ready;
  server = { address: '127.0.0.1', port: Number(/127\.0\.0\.1:(\d+)/.exec(out)![1]) };
});

afterAll(async () => {
  if (child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  work.remove();
});

describe(`DNS fuzzing (seed ${SEED})`, () => {
  it('answers random and mutated UDP packets with well-formed replies or not at all, and keeps serving', async () => {
    const random = prng(SEED);
    const seeds = corpus();
    const socket = createSocket('udp4');
    const sentIds = new Map<number, number>();
    const problems: string[] = [];
    let replies = 0;
    // The last packet: a plain query with an ID no other packet carried. The server answers in
    // order, so once its reply is here, every reply to the packets before it is too.
    let lastId = -1;
    let lastAnswered!: () => void;
    const drained = new Promise<void>((resolve) => (lastAnswered = resolve));
    socket.on('message', (reply) => {
      if (reply.length >= 2 && reply.readUInt16BE(0) === lastId) return lastAnswered();
      replies++;
      if (reply.length < 12) return void problems.push(`short reply of ${reply.length} bytes`);
      const id = reply.readUInt16BE(0);
      if (!sentIds.has(id)) problems.push(`reply with ID ${id}, which no packet carried`);
      if ((reply[2]! & 0x80) === 0) problems.push(`reply ${id} without QR`);
      try {
        Packet.parse(reply);
      } catch (err) {
        problems.push(`reply ${id} does not decode: ${String(err)}`);
      }
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    for (let i = 0; i < UDP_PACKETS; i++) {
      const packet =
        random() < 0.3
          ? Buffer.from(Array.from({ length: Math.floor(random() * 600) }, () => Math.floor(random() * 256)))
          : mutate(random, seeds[Math.floor(random() * seeds.length)]!);
      if (packet.length >= 2) sentIds.set(packet.readUInt16BE(0), i);
      socket.send(packet, server.port, server.address);
      // Bursts of 100, then wait until the server has caught up (the socket buffers are finite):
      // it answers in order, so its answer to a query sent after the burst means it has read it.
      if (i % 100 === 99) await stillAnswers();
    }
    lastId = [...Array(65536).keys()].find((id) => !sentIds.has(id))!;
    sentIds.set(lastId, UDP_PACKETS);
    socket.send(buildQuery('h1.app.mesh.internal', 1, { id: lastId }), server.port, server.address);
    await within(drained, { what: 'the answer to the last packet' });
    socket.close();
    expect(problems).toEqual([]);
    expect(replies).toBeGreaterThan(UDP_PACKETS / 10);
    await stillAnswers();
    expect(child.exitCode).toBeNull();
  });

  it('survives bad TCP frames, partial frames and abrupt closes', async () => {
    const random = prng(SEED + 1);
    const seeds = corpus();
    for (let c = 0; c < TCP_CONNECTIONS; c++) {
      await new Promise<void>((resolve) => {
        const socket = connect(server.port, server.address);
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
        socket.on('connect', () => {
          const frames: Buffer[] = [];
          for (let f = 0; f < 5; f++) {
            const body = mutate(random, seeds[Math.floor(random() * seeds.length)]!);
            const declared = random() < 0.2 ? Math.floor(random() * 65536) : body.length;
            frames.push(Buffer.from([declared >> 8, declared & 0xff]), body);
          }
          const all = Buffer.concat(frames);
          // Sometimes stop mid-frame and hang up.
          socket.end(random() < 0.3 ? all.subarray(0, Math.floor(random() * all.length)) : all);
          setTimeout(() => socket.destroy(), 100);
        });
      });
    }
    const replies = await tcpExchange(server, [buildQuery('app.mesh.internal', 1, { id: 9 }), buildQuery('h3.mesh.internal', 28, { id: 10 })]);
    expect(replies.map((r) => r.readUInt16BE(0)).sort((a, b) => a - b)).toEqual([9, 10]);
    await stillAnswers();
    expect(child.exitCode).toBeNull();
  });
});
