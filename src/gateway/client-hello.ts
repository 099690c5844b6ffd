/**
 * Reading the server name (SNI) from a TLS ClientHello without terminating
 * TLS. The hello may be split over several TLS records and TCP packets (a
 * post-quantum key share alone is over 1 KB), so the caller feeds what has
 * arrived so far and gets "need more", the name, or a reason it never will.
 */

type HelloResult =
  | { readonly kind: 'incomplete' }
  /**
   * A whole ClientHello: its SNI host name (lowercased), or null when it
   * carries none; and its legacy_version (0x0303 for TLS 1.2 and 1.3).
   */
  | { readonly kind: 'hello'; readonly serverName: string | null; readonly version: number }
  | { readonly kind: 'invalid'; readonly reason: string };

const CONTENT_HANDSHAKE = 22;
const CONTENT_ALERT = 21;
const ALERT_FATAL = 2;
const ALERT_UNRECOGNIZED_NAME = 112;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXTENSION_SERVER_NAME = 0;
const NAME_TYPE_HOST = 0;
/** Handshake messages above this are refused: a ClientHello is a few KB at most. */
const MAX_HELLO_BYTES = 16 * 1024;

const INCOMPLETE: HelloResult = { kind: 'incomplete' };
const invalid = (reason: string): HelloResult => ({ kind: 'invalid', reason });

/** Parses the first handshake message out of the TLS records in `data`. */
export function readClientHello(data: Uint8Array): HelloResult {
  // Reassemble the handshake payload from consecutive records.
  const payload: Uint8Array[] = [];
  let payloadLength = 0;
  let offset = 0;
  let messageLength = -1;
  while (offset + 5 <= data.length) {
    if (data[offset] !== CONTENT_HANDSHAKE) return invalid(offset === 0 ? 'not a TLS handshake' : 'ClientHello interrupted by another record type');
    if (data[offset + 1] !== 3) return invalid('not a TLS record version');
    const recordLength = (data[offset + 3]! << 8) | data[offset + 4]!;
    if (recordLength === 0) return invalid('empty TLS record');
    const end = Math.min(offset + 5 + recordLength, data.length);
    payload.push(data.subarray(offset + 5, end));
    payloadLength += end - offset - 5;
    if (messageLength < 0 && payloadLength >= 4) {
      const head = concat(payload, 4);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('first handshake message is not a ClientHello');
      messageLength = (head[1]! << 16) | (head[2]! << 8) | head[3]!;
      if (messageLength + 4 > MAX_HELLO_BYTES) return invalid(`ClientHello of ${messageLength} bytes is over the ${MAX_HELLO_BYTES}-byte cap`);
    }
    if (messageLength >= 0 && payloadLength >= messageLength + 4) return parseHello(concat(payload, messageLength + 4).subarray(4));
    if (end < offset + 5 + recordLength) return INCOMPLETE;
    offset = end;
  }
  if (offset === 0 && data.length > 0 && data[0] !== CONTENT_HANDSHAKE) return invalid('not a TLS handshake');
  return INCOMPLETE;
}

function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  if (parts.length === 1 || parts[0]!.length >= length) return parts[0]!.subarray(0, length);
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    const take = Math.min(part.length, length - at);
    out.set(part.subarray(0, take), at);
    at += take;
    if (at === length) break;
  }
  return out;
}

/**
 * A fatal unrecognized_name (112) alert record, written raw before closing:
 * the client learns why without the gateway terminating TLS. Its record
 * version is the hello's legacy_version, at most 0x0303: that is RFC 8446
 * §5.1's 0x0303 for TLS 1.2/1.3 clients (what haproxy's strict-sni sends),
 * and an old client's own version for TLS 1.0/1.1-only ones (RFC 5246 E.1).
 */
export function unrecognizedNameAlert(version: number): Buffer {
  const legacy = Math.min(Math.max(version, 0x0301), 0x0303);
  return Buffer.from([CONTENT_ALERT, legacy >> 8, legacy & 0xff, 0, 2, ALERT_FATAL, ALERT_UNRECOGNIZED_NAME]);
}

function parseHello(hello: Uint8Array): HelloResult {
  if (hello.length < 2) return invalid('truncated ClientHello');
  const version = (hello[0]! << 8) | hello[1]!;
  let offset = 2 + 32; // client_version, random
  const skip = (lengthBytes: 1 | 2): boolean => {
    if (offset + lengthBytes > hello.length) return false;
    const length = lengthBytes === 1 ? hello[offset]! : (hello[offset]! << 8) | hello[offset + 1]!;
    offset += lengthBytes + length;
    return offset <= hello.length;
  };
  if (!skip(1) || !skip(2) || !skip(1)) return invalid('truncated ClientHello');
  if (offset === hello.length) return { kind: 'hello', serverName: null, version }; // no extensions at all
  if (offset + 2 > hello.length) return invalid('truncated extensions');
  const extensionsEnd = offset + 2 + ((hello[offset]! << 8) | hello[offset + 1]!);
  if (extensionsEnd > hello.length) return invalid('truncated extensions');
  offset += 2;
  while (offset + 4 <= extensionsEnd) {
    const type = (hello[offset]! << 8) | hello[offset + 1]!;
    const length = (hello[offset + 2]! << 8) | hello[offset + 3]!;
    const body = offset + 4;
    if (body + length > extensionsEnd) return invalid('truncated extension');
    if (type === EXTENSION_SERVER_NAME) return readServerName(hello.subarray(body, body + length), version);
    offset = body + length;
  }
  return { kind: 'hello', serverName: null, version };
}

function readServerName(extension: Uint8Array, version: number): HelloResult {
  if (extension.length < 2) return invalid('empty server_name extension');
  const listEnd = Math.min(2 + ((extension[0]! << 8) | extension[1]!), extension.length);
  let offset = 2;
  while (offset + 3 <= listEnd) {
    const type = extension[offset]!;
    const length = (extension[offset + 1]! << 8) | extension[offset + 2]!;
    if (offset + 3 + length > listEnd) return invalid('truncated server name');
    if (type === NAME_TYPE_HOST) {
      const name = Buffer.from(extension.subarray(offset + 3, offset + 3 + length)).toString('latin1').toLowerCase();
      if (!/^[a-z0-9.-]+$/.test(name) || name.length > 253) return invalid('server name is not a host name');
      return { kind: 'hello', serverName: name.endsWith('.') ? name.slice(0, -1) : name, version };
    }
    offset += 3 + length;
  }
  return { kind: 'hello', serverName: null, version };
}
