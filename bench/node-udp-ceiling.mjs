// The least a Node.js process can do per DNS query: receive a datagram,
// look its question up in a map of finished replies, patch in the ID, send.
// No views, no EDNS, no metrics, no case folding. bench:dns runs it beside
// meshplane and NSD so that each run shows what Node itself reaches on the
// machine of the run (`RESULT ceiling-qps`).
// Usage: node bench/node-udp-ceiling.mjs PORT ZONE_JSON
// ZONE_JSON: {"domain": "...", "names": {"relative.name": ["addr", ...]}}
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { Buffer } from 'node:buffer';

const [port, zoneFile] = process.argv.slice(2);
const { domain, names } = JSON.parse(readFileSync(zoneFile, 'utf8'));

const wireName = (name) => Buffer.concat([...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);
/** question bytes (latin1) -> reply without its ID */
const replies = new Map();
for (const [relative, addresses] of Object.entries(names)) {
  const question = Buffer.concat([wireName(`${relative}.${domain}`), Buffer.from([0, 1, 0, 1])]);
  const v4 = addresses.filter((a) => !a.includes(':'));
  const reply = Buffer.alloc(12 + question.length + 16 * v4.length);
  reply.writeUInt16BE(0x8400, 2);
  reply.writeUInt16BE(1, 4);
  reply.writeUInt16BE(v4.length, 6);
  question.copy(reply, 12);
  v4.forEach((address, i) => {
    const at = 12 + question.length + 16 * i;
    reply.set([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, ...address.split('.').map(Number)], at);
  });
  replies.set(question.toString('latin1'), reply);
}

const socket = createSocket('udp4');
socket.on('message', (packet, rinfo) => {
  let end = 12;
  while (end < packet.length && packet[end] !== 0) end += packet[end] + 1;
  const template = replies.get(packet.toString('latin1', 12, end + 5));
  let reply;
  if (template === undefined) {
    reply = Buffer.from(packet.subarray(0, end + 5));
    reply.writeUInt16BE(0x8403, 2);
  } else {
    reply = Buffer.from(template);
  }
  reply[0] = packet[0];
  reply[1] = packet[1];
  socket.send(reply, rinfo.port, rinfo.address);
});
socket.bind(Number(port), '127.0.0.1');
// A clean exit on SIGTERM, so that `node --cpu-prof` writes its profile (BENCH_DNS_PROFILE).
process.once('SIGTERM', () => process.exit(0));
