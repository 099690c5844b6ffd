/**
 * PROXY protocol headers (haproxy's proxy-protocol.txt), written by the
 * agent before any client byte so the backend learns the real client
 * address: v1 is one text line, v2 a binary block.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ipFromBytes, ipToBytes, parseIp } from '../lib/ip.js';

export type ProxyVersion = 'v1' | 'v2';

export interface ConnectionAddresses {
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly destinationAddress: string;
  readonly destinationPort: number;
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** IPv4-mapped IPv6 (::ffff:1.2.3.4) counts as IPv4, as the client really is. */
function unmap(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

export function proxyHeader(version: ProxyVersion, addresses: ConnectionAddresses | null): Buffer {
  const source = addresses === null ? '' : unmap(addresses.sourceAddress);
  const destination = addresses === null ? '' : unmap(addresses.destinationAddress);
  const family = isIPv4(source) && isIPv4(destination) ? 4 : isIPv6(source) && isIPv6(destination) ? 6 : 0;
  if (version === 'v1') {
    if (addresses === null || family === 0) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    return Buffer.from(`PROXY TCP${family} ${source} ${destination} ${addresses.sourcePort} ${addresses.destinationPort}\r\n`, 'latin1');
  }
  if (addresses === null || family === 0) {
    // LOCAL command, no addresses: the backend uses the connection's own.
    return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  }
  const addressBytes = family === 4 ? 4 : 16;
  const body = Buffer.alloc(addressBytes * 2 + 4);
  ipBytes(source).copy(body, 0);
  ipBytes(destination).copy(body, addressBytes);
  body.writeUInt16BE(addresses.sourcePort, addressBytes * 2);
  body.writeUInt16BE(addresses.destinationPort, addressBytes * 2 + 2);
  const header = Buffer.from([0x21, family === 4 ? 0x11 : 0x21, 0, 0]);
  header.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, header, body]);
}

function ipBytes(address: string): Buffer {
  return ipToBytes(parseIp(address)!);
}

type ProxyHeaderRead =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'none' }
  | { readonly kind: 'header'; readonly version: ProxyVersion; readonly addresses: ConnectionAddresses | null; readonly length: number }
  | { readonly kind: 'invalid'; readonly reason: string };

/** Reads a PROXY v1 or v2 header at the start of `data` (what a backend does; used by the demo backend and tests). */
export function readProxyHeader(data: Buffer): ProxyHeaderRead {
  if (data.length >= 1 && data[0] === 0x0d) {
    if (data.length < 16) return V2_SIGNATURE.subarray(0, data.length).equals(data) ? { kind: 'incomplete' } : { kind: 'none' };
    if (!data.subarray(0, 12).equals(V2_SIGNATURE)) return { kind: 'none' };
    const length = 16 + data.readUInt16BE(14);
    if (data.length < length) return { kind: 'incomplete' };
    const command = data[12]! & 0x0f;
    const family = data[13]! >> 4;
    if (command === 0 || (family !== 1 && family !== 2)) return { kind: 'header', version: 'v2', addresses: null, length };
    const size = family === 1 ? 4 : 16;
    const text = (offset: number): string => ipFromBytes(data.subarray(offset, offset + size));
    return {
      kind: 'header',
      version: 'v2',
      addresses: { sourceAddress: text(16), destinationAddress: text(16 + size), sourcePort: data.readUInt16BE(16 + 2 * size), destinationPort: data.readUInt16BE(18 + 2 * size) },
      length,
    };
  }
  const prefix = 'PROXY ';
  const head = data.subarray(0, Math.min(data.length, prefix.length)).toString('latin1');
  if (!prefix.startsWith(head)) return { kind: 'none' };
  const end = data.indexOf('\r\n');
  if (end < 0) return data.length > 107 ? { kind: 'invalid', reason: 'PROXY v1 line longer than 107 bytes' } : { kind: 'incomplete' };
  const parts = data.subarray(0, end).toString('latin1').split(' ');
  if (parts[1] === 'UNKNOWN') return { kind: 'header', version: 'v1', addresses: null, length: end + 2 };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return { kind: 'invalid', reason: 'malformed PROXY v1 line' };
  return {
    kind: 'header',
    version: 'v1',
    addresses: { sourceAddress: parts[2]!, destinationAddress: parts[3]!, sourcePort: Number(parts[4]), destinationPort: Number(parts[5]) },
    length: end + 2,
  };
}
