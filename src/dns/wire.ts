/**
 * The DNS wire format, as much of it as an authoritative server for A/AAAA
 * names needs: reading one query (RFC 1035 section 4, EDNS0 from RFC 6891)
 * and encoding the few record types we answer with. Hand-written because it
 * runs once per query: a general decoder (dns2) is about 13x slower here.
 */
import { ipToBytes, parseIp } from '../lib/ip.js';

export const TYPE = { A: 1, NS: 2, SOA: 6, PTR: 12, AAAA: 28, SRV: 33, OPT: 41, IXFR: 251, AXFR: 252, ANY: 255 } as const;
export const CLASS_IN = 1;
export const CLASS_ANY = 255;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;
export type Rcode = (typeof RCODE)[keyof typeof RCODE];

export const FLAG_QR = 0x8000;
export const FLAG_AA = 0x0400;
export const FLAG_TC = 0x0200;
export const FLAG_RD = 0x0100;
export const FLAG_RA = 0x0080;

export const HEADER_SIZE = 12;
/** Largest UDP reply to a client that sent no EDNS (RFC 1035). */
export const CLASSIC_UDP_SIZE = 512;
/** Size of the OPT record we add: root name, type, class, TTL, empty RDATA. */
export const OPT_RECORD_SIZE = 11;

interface Edns {
  readonly udpSize: number;
  readonly version: number;
  readonly dnssecOk: boolean;
}

/** A query that parsed: everything the answer depends on. */
export interface Query {
  readonly id: number;
  readonly opcode: number;
  readonly recursionDesired: boolean;
  /** Lowercased, without the trailing dot; "" is the root. */
  readonly name: string;
  /** Offset just past QTYPE/QCLASS: bytes 12..questionEnd are echoed verbatim (keeps the asker's case). */
  readonly questionEnd: number;
  readonly type: number;
  readonly qclass: number;
  readonly edns: Edns | null;
}

/**
 * Why a packet could not be answered normally. `drop`: not worth a reply
 * (too short to carry an ID, or a response rather than a query). The
 * others carry the ID so that an error reply can be sent.
 */
type ParseFailure =
  | { readonly kind: 'drop' }
  | {
      readonly kind: 'formerr';
      readonly id: number;
      readonly opcode: number;
      readonly recursionDesired: boolean;
      /** Set when the question itself was readable: the FORMERR echoes it (and the OPT, when there was one). */
      readonly questionEnd?: number;
      readonly edns?: Edns | null;
    }
  | { readonly kind: 'notimp'; readonly id: number; readonly opcode: number; readonly recursionDesired: boolean };

type ParseResult = ({ readonly kind: 'query' } & Query) | ParseFailure;

const DROP: ParseFailure = { kind: 'drop' };
/** Reused for every query: names are at most 255 bytes. */
const NAME_SCRATCH = Buffer.alloc(256);
const MAX_NAME_LENGTH = 255;

/** Reads one query. Never throws: garbage becomes `drop` or `formerr`. */
export function parseQuery(packet: Uint8Array): ParseResult {
  if (packet.length < HEADER_SIZE) return DROP;
  const id = (packet[0]! << 8) | packet[1]!;
  const flags = (packet[2]! << 8) | packet[3]!;
  if ((flags & FLAG_QR) !== 0) return DROP; // never answer a response: that is how loops start
  const opcode = (flags >> 11) & 0xf;
  const recursionDesired = (flags & FLAG_RD) !== 0;
  if (opcode !== 0) return { kind: 'notimp', id, opcode, recursionDesired };
  // Built only for a packet that needs it: this runs once per query.
  const formerr = (): ParseFailure => ({ kind: 'formerr', id, opcode, recursionDesired });
  const qdcount = (packet[4]! << 8) | packet[5]!;
  const ancount = (packet[6]! << 8) | packet[7]!;
  const nscount = (packet[8]! << 8) | packet[9]!;
  const arcount = (packet[10]! << 8) | packet[11]!;
  if (qdcount !== 1) return formerr();

  // QNAME: labels only; a compression pointer cannot point anywhere useful this early.
  // The text form is built in a scratch buffer and becomes one string (no per-character garbage).
  let offset = HEADER_SIZE;
  let nameLength = 0;
  for (;;) {
    if (offset >= packet.length) return formerr();
    const length = packet[offset]!;
    if (length === 0) {
      offset += 1;
      break;
    }
    if (length > 63) return formerr();
    if (offset + 1 + length > packet.length || offset + 1 + length - HEADER_SIZE > MAX_NAME_LENGTH) return formerr();
    if (nameLength > 0) NAME_SCRATCH[nameLength++] = 46; // '.'
    for (let i = offset + 1; i <= offset + length; i++) {
      const byte = packet[i]!;
      // Lowercase ASCII; a dot inside a label must not read as a label boundary: map it to NUL, which matches no name.
      NAME_SCRATCH[nameLength++] = byte >= 65 && byte <= 90 ? byte + 32 : byte === 46 ? 0 : byte;
    }
    offset += 1 + length;
  }
  const name = NAME_SCRATCH.toString('latin1', 0, nameLength);
  if (offset + 4 > packet.length) return formerr();
  const type = (packet[offset]! << 8) | packet[offset + 1]!;
  const qclass = (packet[offset + 2]! << 8) | packet[offset + 3]!;
  offset += 4;
  const questionEnd = offset;
  if (type === TYPE.OPT) return formerr();

  let edns: Edns | null = null;
  if (ancount + nscount + arcount > 0) {
    // Skip answer and authority records (a query should have none), then look for OPT.
    for (let i = 0; i < ancount + nscount + arcount; i++) {
      const nameEnd = skipName(packet, offset);
      if (nameEnd < 0 || nameEnd + 10 > packet.length) return formerr();
      const rrType = (packet[nameEnd]! << 8) | packet[nameEnd + 1]!;
      const rdLength = (packet[nameEnd + 8]! << 8) | packet[nameEnd + 9]!;
      const end = nameEnd + 10 + rdLength;
      if (end > packet.length) return formerr();
      if (i >= ancount + nscount && rrType === TYPE.OPT) {
        // RFC 6891 6.1.1: one OPT, owned by the root.
        if (edns !== null || nameEnd !== offset + 1) return formerr();
        edns = {
          udpSize: Math.max(CLASSIC_UDP_SIZE, (packet[nameEnd + 2]! << 8) | packet[nameEnd + 3]!),
          version: packet[nameEnd + 5]!,
          dnssecOk: (packet[nameEnd + 6]! & 0x80) !== 0,
        };
      }
      offset = end;
    }
  }
  // Bytes past the last record (RFC 1035 4.1: a message is its sections and nothing else). BIND and
  // Knot answer FORMERR ("trailing garbage"); answering NOERROR would make us an amplifier for
  // padded junk and hide broken clients.
  if (offset !== packet.length) return { kind: 'formerr', id, opcode, recursionDesired, questionEnd, edns };
  return { kind: 'query', id, opcode, recursionDesired, name, questionEnd, type, qclass, edns };
}

/** Offset just past a (possibly compressed) name, or -1 when malformed. */
function skipName(packet: Uint8Array, start: number): number {
  let offset = start;
  for (;;) {
    if (offset >= packet.length) return -1;
    const length = packet[offset]!;
    if (length === 0) return offset + 1;
    if ((length & 0xc0) === 0xc0) return offset + 2 <= packet.length ? offset + 2 : -1;
    if (length > 63) return -1;
    offset += 1 + length;
  }
}

/** Wire form of a domain name ("" is the root), uncompressed. */
export function encodeName(name: string): Buffer {
  if (name === '') return Buffer.from([0]);
  const labels = name.split('.');
  const parts: Buffer[] = [];
  for (const label of labels) {
    const bytes = Buffer.from(label, 'ascii');
    if (bytes.length === 0 || bytes.length > 63) throw new RangeError(`bad DNS label in "${name}"`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** A pointer to the question's name, which always starts right after the header. */
const POINTER_TO_QNAME = Buffer.from([0xc0, HEADER_SIZE]);

/**
 * One resource record. `owner` null means "the question's name" and is
 * written as a 2-byte compression pointer.
 */
export function encodeRecord(owner: Buffer | null, type: number, ttl: number, rdata: Buffer): Buffer {
  const name = owner ?? POINTER_TO_QNAME;
  const record = Buffer.alloc(name.length + 10 + rdata.length);
  name.copy(record, 0);
  let offset = name.length;
  offset = record.writeUInt16BE(type, offset);
  offset = record.writeUInt16BE(CLASS_IN, offset);
  offset = record.writeUInt32BE(ttl >>> 0, offset);
  offset = record.writeUInt16BE(rdata.length, offset);
  rdata.copy(record, offset);
  return record;
}

/** RDATA of an A or AAAA record from address text. */
export function addressRdata(address: string): Buffer {
  const parsed = parseIp(address);
  if (parsed === undefined) throw new RangeError(`not an IP address: ${address}`);
  return ipToBytes(parsed);
}

/** RDATA of an SRV record (RFC 2782); the target is never compressed. */
export function srvRdata(priority: number, weight: number, port: number, target: Buffer): Buffer {
  const rdata = Buffer.alloc(6 + target.length);
  rdata.writeUInt16BE(priority, 0);
  rdata.writeUInt16BE(weight, 2);
  rdata.writeUInt16BE(port, 4);
  target.copy(rdata, 6);
  return rdata;
}

interface SoaFields {
  readonly mname: string;
  readonly rname: string;
  readonly serial: number;
  readonly refresh: number;
  readonly retry: number;
  readonly expire: number;
  readonly minimum: number;
}

export function soaRdata(soa: SoaFields): Buffer {
  const numbers = Buffer.alloc(20);
  [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum].forEach((value, index) => numbers.writeUInt32BE(value >>> 0, index * 4));
  return Buffer.concat([encodeName(soa.mname), encodeName(soa.rname), numbers]);
}

/** The OPT record of a reply: our UDP size, extended RCODE high bits, version 0. */
export function optRecord(udpSize: number, extendedRcode: number): Buffer {
  const record = Buffer.alloc(OPT_RECORD_SIZE);
  record[0] = 0; // root
  record.writeUInt16BE(TYPE.OPT, 1);
  record.writeUInt16BE(udpSize, 3);
  record[5] = extendedRcode >> 4;
  record[6] = 0; // version
  // flags (DO) and RDLENGTH stay 0: we sign nothing and add no options.
  return record;
}
