/**
 * A minimal DER writer and a strict DER reader: just what the signing fast
 * path needs (CSR fields in, TBSCertificate out). @peculiar/x509 builds a
 * full object model per certificate (~1-3 ms of JavaScript); assembling the
 * few variable parts around pre-encoded constant parts takes microseconds.
 * Everything it produces is checked by openssl and @peculiar in the tests.
 */
import { MeshplaneError } from '../errors.js';

export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  t61String: 0x14,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

function lengthBytes(length: number): number[] {
  if (length < 0x80) return [length];
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

/** One TLV from a tag and its content parts. */
export function tlv(tag: number, ...parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const header = [tag, ...lengthBytes(length)];
  const out = new Uint8Array(header.length + length);
  out.set(header, 0);
  let offset = header.length;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export const seq = (...parts: readonly Uint8Array[]): Uint8Array => tlv(TAG.sequence, ...parts);

/** A positive INTEGER from big-endian magnitude bytes. */
export function positiveInteger(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  return (trimmed[0] ?? 0) & 0x80 ? tlv(TAG.integer, Uint8Array.of(0), trimmed) : tlv(TAG.integer, trimmed);
}

const two = (n: number): string => String(n).padStart(2, '0');

/** RFC 5280 Time: UTCTime through 2049, GeneralizedTime after. */
export function time(date: Date): Uint8Array {
  const y = date.getUTCFullYear();
  const rest = `${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}${two(date.getUTCHours())}${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(TAG.utcTime, Buffer.from(`${two(y % 100)}${rest}`, 'latin1'));
  return tlv(TAG.generalizedTime, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'latin1'));
}

/** PEM armour, 64 characters a line. */
export function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The DER inside the first PEM block with `label`; undefined when there is none. */
export function unpem(text: string, label: string): Uint8Array | undefined {
  const begin = `-----BEGIN ${label}-----`;
  const start = text.indexOf(begin);
  if (start < 0) return undefined;
  const end = text.indexOf(`-----END ${label}-----`, start);
  if (end < 0) return undefined;
  return Buffer.from(text.slice(start + begin.length, end).replace(/\s+/g, ''), 'base64');
}

export interface Node {
  readonly tag: number;
  /** Offsets into the buffer: the whole TLV [start, end), its content [contentStart, end). */
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

/** Strict DER reader over one buffer: definite lengths only, every read bounds-checked. */
export class DerReader {
  constructor(
    readonly buffer: Uint8Array,
    private readonly what: string,
  ) {}

  fail(reason: string): never {
    throw new MeshplaneError('PKI_ERR_CSR_INVALID', `${this.what} is not valid DER: ${reason}`);
  }

  /** The TLV at `offset`, which must end by `limit`. */
  node(offset: number, limit = this.buffer.length): Node {
    const b = this.buffer;
    if (offset + 2 > limit) this.fail('truncated');
    const tag = b[offset] as number;
    if ((tag & 0x1f) === 0x1f) this.fail('multi-byte tags are not used here');
    let length = b[offset + 1] as number;
    let contentStart = offset + 2;
    if (length & 0x80) {
      const count = length & 0x7f;
      if (count === 0 || count > 4) this.fail('unsupported length');
      if (contentStart + count > limit) this.fail('truncated length');
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + (b[contentStart + i] as number);
      contentStart += count;
    }
    const end = contentStart + length;
    if (end > limit) this.fail('length runs past the end');
    return { tag, start: offset, contentStart, end };
  }

  /** The children of a constructed node. */
  children(parent: Node): Node[] {
    const out: Node[] = [];
    for (let offset = parent.contentStart; offset < parent.end; ) {
      const child = this.node(offset, parent.end);
      out.push(child);
      offset = child.end;
    }
    return out;
  }

  expect(node: Node | undefined, tag: number, what: string): Node {
    if (node === undefined || node.tag !== tag) this.fail(`expected ${what}`);
    return node;
  }

  bytes(node: Node): Uint8Array {
    return this.buffer.subarray(node.start, node.end);
  }

  content(node: Node): Uint8Array {
    return this.buffer.subarray(node.contentStart, node.end);
  }
}

/** Dotted text of an OID's content bytes. */
export function oidText(bytes: Uint8Array): string {
  const parts: number[] = [];
  let value = 0;
  for (const byte of bytes) {
    value = value * 128 + (byte & 0x7f);
    if ((byte & 0x80) === 0) {
      if (parts.length === 0) parts.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else parts.push(value);
      value = 0;
    }
  }
  return parts.join('.');
}

/** Encodes a dotted OID as a DER OBJECT IDENTIFIER. */
export function oid(text: string): Uint8Array {
  const [first = 0, second = 0, ...rest] = text.split('.').map(Number);
  const bytes: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const chunk: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) chunk.unshift((n & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(TAG.oid, Uint8Array.from(bytes));
}

/** Reads a UTCTime or GeneralizedTime node (the forms RFC 5280 allows: seconds, "Z"). */
export function readTime(reader: DerReader, node: Node): Date {
  const text = Buffer.from(reader.content(node)).toString('latin1');
  const match = node.tag === TAG.utcTime ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text) : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (match === null) reader.fail(`unreadable time "${text}"`);
  const [y, mo, d, h, mi, se] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  const year = node.tag === TAG.utcTime ? (y < 50 ? 2000 + y : 1900 + y) : y;
  return new Date(Date.UTC(year, mo - 1, d, h, mi, se));
}

/** The commonName of a Name (the last one, as OpenSSL shows it; '' when there is none). */
export function readCommonName(r: DerReader, name: Node | undefined): string {
  let commonName = '';
  for (const rdn of r.children(r.expect(name, TAG.sequence, 'Name'))) {
    for (const atv of r.children(r.expect(rdn, TAG.set, 'RDN'))) {
      const [type, value] = r.children(r.expect(atv, TAG.sequence, 'attribute'));
      if (type !== undefined && value !== undefined && oidText(r.content(r.expect(type, TAG.oid, 'OID'))) === '2.5.4.3') {
        commonName = Buffer.from(r.content(value)).toString(value.tag === TAG.utf8String ? 'utf8' : 'latin1');
      }
    }
  }
  return commonName;
}

interface ExtensionNode {
  /** Dotted OID. */
  readonly id: string;
  /** The DER inside the extension's OCTET STRING. */
  readonly value: Node;
}

/** The extensions of an `Extensions` SEQUENCE node. */
export function readExtensionList(r: DerReader, extensions: Node | undefined): ExtensionNode[] {
  return r.children(r.expect(extensions, TAG.sequence, 'extensions')).map((extension) => {
    const fields = r.children(r.expect(extension, TAG.sequence, 'extension'));
    const value = r.expect(fields[fields.length - 1], TAG.octetString, 'extension value');
    return { id: oidText(r.content(r.expect(fields[0], TAG.oid, 'extension OID'))), value: r.node(value.contentStart, value.end) };
  });
}

/** The extensions of a DER certificate (empty when it has none). */
export function certificateExtensions(r: DerReader): ExtensionNode[] {
  const [tbs] = r.children(r.expect(r.node(0), TAG.sequence, 'Certificate'));
  const wrapper = r.children(r.expect(tbs, TAG.sequence, 'TBSCertificate')).find((n) => n.tag === 0xa3);
  return wrapper === undefined ? [] : readExtensionList(r, r.children(wrapper)[0]);
}

/** DNS and IP names of a GeneralNames node; other types are described in `others`. */
export function readGeneralNames(r: DerReader, names: Node): { dns: string[]; ips: string[]; uris: string[]; others: string[] } {
  const out = { dns: [] as string[], ips: [] as string[], uris: [] as string[], others: [] as string[] };
  for (const name of r.children(r.expect(names, TAG.sequence, 'GeneralNames'))) {
    const type = name.tag & 0x1f;
    const value = r.content(name);
    if (type === 2) out.dns.push(Buffer.from(value).toString('latin1').toLowerCase());
    else if (type === 7 && (value.length === 4 || value.length === 16)) out.ips.push(ipText(value));
    else if (type === 6) out.uris.push(Buffer.from(value).toString('latin1'));
    else out.others.push(`${GENERAL_NAME_TYPES[type] ?? `type ${type}`}:${type === 1 || type === 6 ? Buffer.from(value).toString('latin1') : '…'}`);
  }
  return out;
}

const GENERAL_NAME_TYPES: Readonly<Record<number, string>> = { 0: 'otherName', 1: 'email', 3: 'x400Address', 4: 'directoryName', 5: 'ediPartyName', 6: 'uri', 8: 'registeredID' };

/** OIDs of an ExtendedKeyUsage value. */
export function readOidList(r: DerReader, list: Node): string[] {
  return r.children(r.expect(list, TAG.sequence, 'OID list')).map((n) => oidText(r.content(r.expect(n, TAG.oid, 'OID'))));
}

/** An iPAddress GeneralName's bytes (4 or 16) as text; IPv6 uncompressed (callers canonicalize). */
function ipText(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return groups.join(':');
}

/** Converts a DER ECDSA signature (SEQUENCE of r, s) to IEEE P1363 r||s of `size` bytes each. */
export function derSignatureToP1363(der: Uint8Array, size = 32): Uint8Array {
  const reader = new DerReader(der, 'signature');
  const [r, s] = reader.children(reader.expect(reader.node(0), TAG.sequence, 'SEQUENCE'));
  const out = new Uint8Array(size * 2);
  [r, s].forEach((node, i) => {
    let value = reader.content(reader.expect(node, TAG.integer, 'INTEGER'));
    while (value.length > size && value[0] === 0) value = value.subarray(1);
    if (value.length > size) reader.fail('integer too long');
    out.set(value, size * (i + 1) - value.length);
  });
  return out;
}
