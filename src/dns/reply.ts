/**
 * Assembling reply packets: header, the question exactly as asked, the
 * answer's records (rotated and capped), the SOA for negative answers, and
 * an OPT record when the query had one. Sizes are worked out first so each
 * reply is one allocation and a few copies.
 */
import type { Answer, AnswerGroup } from './zone.js';
import type { Query } from './wire.js';
import { FLAG_AA, FLAG_QR, FLAG_RA, FLAG_RD, FLAG_TC, HEADER_SIZE, OPT_RECORD_SIZE, TYPE, optRecord } from './wire.js';

export interface ReplyLimits {
  /** Largest reply the transport carries (UDP: the asker's buffer capped by ours; TCP: 65535). */
  readonly maxSize: number;
  /** Our EDNS UDP payload size, advertised in the OPT we send. */
  readonly ourUdpSize: number;
  /** Whether we offer recursion (names outside the zone are forwarded). */
  readonly recursionAvailable: boolean;
}

function header(reply: Buffer, id: number, flags: number, qd: number, an: number, ns: number, ar: number): void {
  reply.writeUInt16BE(id, 0);
  reply.writeUInt16BE(flags, 2);
  reply.writeUInt16BE(qd, 4);
  reply.writeUInt16BE(an, 6);
  reply.writeUInt16BE(ns, 8);
  reply.writeUInt16BE(ar, 10);
}

function baseFlags(query: Pick<Query, 'opcode' | 'recursionDesired'>, limits: ReplyLimits): number {
  let flags = FLAG_QR | (query.opcode << 11);
  if (query.recursionDesired) flags |= FLAG_RD | (limits.recursionAvailable ? FLAG_RA : 0);
  return flags;
}

/** The question as asked (the asker's case kept) behind the header; a loop, not a subarray view per reply. */
function copyQuestion(reply: Buffer, packet: Uint8Array, questionEnd: number): void {
  for (let i = HEADER_SIZE; i < questionEnd; i++) reply[i] = packet[i]!;
}

/**
 * Bytes start..end of `from` into `to` at `at`; returns the count. A loop: the records of one reply
 * are tens to hundreds of bytes, where Buffer#copy's call into C++ cost more than the copy (profile).
 */
function copyBytes(from: Buffer, to: Buffer, at: number, start = 0, end = from.length): number {
  for (let i = start; i < end; i++) to[at + i - start] = from[i]!;
  return end - start;
}

const plainOpts = new Map<number, Buffer>();

/** The OPT record of a NOERROR-class reply, built once per UDP size. */
function plainOpt(udpSize: number): Buffer {
  let opt = plainOpts.get(udpSize);
  if (opt === undefined) plainOpts.set(udpSize, (opt = optRecord(udpSize, 0)));
  return opt;
}

/** An authoritative answer from the zone. */
export function zoneReply(packet: Uint8Array, query: Query, answer: Answer, limits: ReplyLimits): Buffer {
  if (answer.groups !== null) return groupReply(packet, query, answer, answer.groups, limits);
  const questionLength = query.questionEnd - HEADER_SIZE;
  const count = answer.limit;
  const total = answer.count;
  const size1 = answer.recordSize;
  const rotates = size1 > 0 && total > 1;
  const start = rotates ? answer.next : 0;
  // Uncapped: the next query starts one record later. Capped: it gets the next window, so
  // successive queries hand out every record.
  if (rotates) answer.next = (start + (count < total ? count : 1)) % total;

  const recordBytes = size1 > 0 ? count * size1 : answer.records.length;
  const authorityBytes = answer.authority === null ? 0 : answer.authority.length;
  const optBytes = query.edns === null ? 0 : OPT_RECORD_SIZE;
  const size = HEADER_SIZE + questionLength + recordBytes + authorityBytes + optBytes;
  const flags = baseFlags(query, limits) | FLAG_AA | answer.rcode;

  if (size > limits.maxSize) return truncatedReply(packet, query, flags, limits);

  const reply = Buffer.allocUnsafe(size);
  header(reply, query.id, flags, 1, count, answer.authority === null ? 0 : 1, optBytes > 0 ? 1 : 0);
  copyQuestion(reply, packet, query.questionEnd);
  let offset = HEADER_SIZE + questionLength;
  if (!rotates) {
    offset += copyBytes(answer.records, reply, offset, 0, recordBytes);
  } else {
    // Records start..start+count, wrapping around the end of the buffer.
    const firstRun = Math.min(count, total - start);
    offset += copyBytes(answer.records, reply, offset, start * size1, (start + firstRun) * size1);
    if (firstRun < count) offset += copyBytes(answer.records, reply, offset, 0, (count - firstRun) * size1);
  }
  if (answer.authority !== null) offset += copyBytes(answer.authority, reply, offset);
  if (optBytes > 0) copyBytes(plainOpt(limits.ourUdpSize), reply, offset);
  return reply;
}

/** RFC 2181 9: the whole answer dropped and TC set; the asker retries over TCP. OPT stays (RFC 6891 7). */
function truncatedReply(packet: Uint8Array, query: Query, flags: number, limits: ReplyLimits): Buffer {
  const questionLength = query.questionEnd - HEADER_SIZE;
  const optBytes = query.edns === null ? 0 : OPT_RECORD_SIZE;
  const reply = Buffer.allocUnsafe(HEADER_SIZE + questionLength + optBytes);
  header(reply, query.id, flags | FLAG_TC, 1, 0, 0, optBytes > 0 ? 1 : 0);
  copyQuestion(reply, packet, query.questionEnd);
  if (optBytes > 0) plainOpt(limits.ourUdpSize).copy(reply, HEADER_SIZE + questionLength);
  return reply;
}

/**
 * An answer in groups (SRV): a window of `limit` groups, moving like a
 * capped A answer; their records in the answer section, their targets'
 * addresses in the additional one (before the OPT). Too big: TC, as for A.
 */
function groupReply(packet: Uint8Array, query: Query, answer: Answer, groups: readonly AnswerGroup[], limits: ReplyLimits): Buffer {
  const questionLength = query.questionEnd - HEADER_SIZE;
  const total = groups.length;
  const count = answer.limit;
  const start = total > 1 ? answer.next : 0;
  if (total > 1) answer.next = (start + (count < total ? count : 1)) % total;
  let recordBytes = 0;
  let records = 0;
  let additionalBytes = 0;
  let additional = 0;
  for (let i = 0; i < count; i++) {
    const group = groups[(start + i) % total]!;
    recordBytes += group.records.length;
    records += group.count;
    additionalBytes += group.additional.length;
    additional += group.additionalCount;
  }
  const optBytes = query.edns === null ? 0 : OPT_RECORD_SIZE;
  const size = HEADER_SIZE + questionLength + recordBytes + additionalBytes + optBytes;
  const flags = baseFlags(query, limits) | FLAG_AA | answer.rcode;
  if (size > limits.maxSize) return truncatedReply(packet, query, flags, limits);

  const reply = Buffer.allocUnsafe(size);
  header(reply, query.id, flags, 1, records, 0, additional + (optBytes > 0 ? 1 : 0));
  copyQuestion(reply, packet, query.questionEnd);
  let offset = HEADER_SIZE + questionLength;
  for (let i = 0; i < count; i++) offset += groups[(start + i) % total]!.records.copy(reply, offset);
  for (let i = 0; i < count; i++) offset += groups[(start + i) % total]!.additional.copy(reply, offset);
  if (optBytes > 0) plainOpt(limits.ourUdpSize).copy(reply, offset);
  return reply;
}

/**
 * A reply carrying only an RCODE (REFUSED, NOTIMP, FORMERR, SERVFAIL,
 * BADVERS). The question is echoed when it could be read.
 */
export function errorReply(
  packet: Uint8Array,
  query: Pick<Query, 'id' | 'opcode' | 'recursionDesired'> & Partial<Pick<Query, 'questionEnd' | 'edns'>>,
  rcode: number,
  limits: ReplyLimits,
): Buffer {
  const questionLength = query.questionEnd === undefined ? 0 : query.questionEnd - HEADER_SIZE;
  // BADVERS (16) does not fit the header's 4 bits: its high bits go in the OPT record.
  const withOpt = (query.edns !== undefined && query.edns !== null) || rcode > 15;
  const reply = Buffer.allocUnsafe(HEADER_SIZE + questionLength + (withOpt ? OPT_RECORD_SIZE : 0));
  header(reply, query.id, baseFlags(query, limits) | (rcode & 0xf), questionLength > 0 ? 1 : 0, 0, 0, withOpt ? 1 : 0);
  if (questionLength > 0) copyQuestion(reply, packet, HEADER_SIZE + questionLength);
  if (withOpt) optRecord(limits.ourUdpSize, rcode).copy(reply, HEADER_SIZE + questionLength);
  return reply;
}

/** Whether a query type asks for a zone transfer, which we never serve. */
export function isTransfer(type: number): boolean {
  return type === TYPE.AXFR || type === TYPE.IXFR;
}
