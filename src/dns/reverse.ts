/**
 * Reverse names (RFC 1035 3.5, RFC 3596 2.5): the in-addr.arpa / ip6.arpa
 * name a PTR query for an address asks about. Built from the address's
 * bytes, so every text form of one address gives the same name.
 */
import { ipToBytes, parseIp } from '../lib/ip.js';

/** `4.3.2.1.in-addr.arpa` for 1.2.3.4; nibbles, lowest first, under ip6.arpa for IPv6. Lowercase, no trailing dot. */
export function reverseName(address: string): string {
  const parsed = parseIp(address);
  if (parsed === undefined) throw new RangeError(`not an IP address: ${address}`);
  const bytes = ipToBytes(parsed);
  if (parsed.family === 4) return `${[...bytes].reverse().join('.')}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = bytes.length - 1; i >= 0; i--) nibbles.push((bytes[i]! & 0xf).toString(16), (bytes[i]! >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
}
