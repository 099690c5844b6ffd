/**
 * IP address and network helpers shared by config validation, DNS views and
 * the PKI (name constraints). Addresses are handled as bigint so IPv4 and
 * IPv6 go through the same code.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface IpAddress {
  readonly family: 4 | 6;
  readonly value: bigint;
  /** Canonical text: dotted quad, or lowercase compressed IPv6 (RFC 5952). */
  readonly text: string;
}

export interface IpNetwork {
  readonly family: 4 | 6;
  readonly base: bigint;
  readonly prefix: number;
  readonly text: string;
}

export function parseIp(text: string): IpAddress | undefined {
  if (isIPv4(text)) {
    // Plain numbers first (BigInt arithmetic is slow on 10,000-host inventories).
    const octets = text.split('.').map(Number);
    const value = BigInt(octets.reduce((acc, octet) => acc * 256 + octet, 0));
    return { family: 4, value, text: octets.join('.') };
  }
  if (isIPv6(text) && !text.includes('%')) {
    const value = ipv6ToBigint(text);
    return { family: 6, value, text: formatIpv6(value) };
  }
  return undefined;
}

export function parseNetwork(text: string): IpNetwork | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIp(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (address === undefined || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  const bits = address.family === 4 ? 32 : 128;
  if (prefix > bits) return undefined;
  const base = address.value & networkMask(bits, prefix);
  const baseText = address.family === 4 ? formatIpv4(base) : formatIpv6(base);
  return { family: address.family, base, prefix, text: `${baseText}/${prefix}` };
}

export function networkContains(network: IpNetwork, address: IpAddress): boolean {
  if (network.family !== address.family) return false;
  const bits = network.family === 4 ? 32 : 128;
  return (address.value & networkMask(bits, network.prefix)) === network.base;
}

function networkMask(bits: number, prefix: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return prefix === 0 ? 0n : all ^ ((1n << BigInt(bits - prefix)) - 1n);
}

function formatIpv4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 255n)).join('.');
}

function ipv6ToBigint(input: string): bigint {
  let text = input;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    // Embedded IPv4 such as ::ffff:192.0.2.1 becomes two hex groups.
    const v4 = parseIp(text.slice(lastColon + 1))?.value ?? 0n;
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [left = '', right] = text.split('::');
  const leftGroups = left === '' ? [] : left.split(':');
  const rightGroups = right === undefined || right === '' ? [] : right.split(':');
  const zeros = right === undefined ? [] : new Array<string>(8 - leftGroups.length - rightGroups.length).fill('0');
  return [...leftGroups, ...zeros, ...rightGroups].reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}

function formatIpv6(value: bigint): string {
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  // Longest run of two or more zero groups becomes "::" (RFC 5952).
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const before = hex.slice(0, bestStart).join(':');
  const after = hex.slice(bestStart + bestLength).join(':');
  return `${before}::${after}`;
}

/** True for 127.0.0.0/8 and ::1. */
export function isLoopback(address: IpAddress): boolean {
  return address.family === 4 ? address.value >> 24n === 127n : address.value === 1n;
}

/** Network-order bytes of an address (4 or 16), as DNS RDATA and PROXY v2 carry them. */
export function ipToBytes(address: IpAddress): Buffer {
  const size = address.family === 4 ? 4 : 16;
  const bytes = Buffer.alloc(size);
  let value = address.value;
  for (let i = size - 1; i >= 0; i--) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return bytes;
}

/** Canonical text of 4 or 16 network-order bytes. */
export function ipFromBytes(bytes: Uint8Array): string {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return bytes.length === 4 ? formatIpv4(value) : formatIpv6(value);
}

/**
 * Who counts as one client for per-source caps (DNS TCP, the gateway's
 * listeners): an IPv4 address (also when IPv4-mapped), or an IPv6 /64, the
 * smallest block a site is usually given, so one host cannot dodge a cap by
 * rotating through its addresses.
 */
export function sourceKey(address: string): string {
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return address.slice(7);
  if (isIPv4(address)) return address;
  const parsed = parseIp(address.split('%')[0]!);
  if (parsed === undefined || parsed.family !== 6) return address;
  const prefix = parsed.value >> 64n;
  const groups: string[] = [];
  for (let shift = 48n; shift >= 0n; shift -= 16n) groups.push(((prefix >> shift) & 0xffffn).toString(16));
  return `${groups.join(':')}::/64`;
}
