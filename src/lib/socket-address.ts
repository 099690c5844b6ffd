/** Socket addresses as users write them: "ADDR:PORT", "[IPV6]:PORT" or "ADDR". */
import { MeshplaneError } from '../errors.js';
import { parseIp } from './ip.js';

export interface SocketAddress {
  readonly address: string;
  readonly port: number;
}

export const DNS_PORT = 53;

/** "127.0.0.1:53", "[::1]:53", "127.0.0.1" (port 53), "::1" (port 53). */
export function parseSocketAddress(text: string, defaultPort = DNS_PORT): SocketAddress {
  let host = text;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed !== null) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else if (text.split(':').length === 2) {
    [host, portText] = text.split(':') as [string, string];
  }
  const address = scopedAddress(host);
  const port = portText === undefined ? defaultPort : Number(portText);
  if (address === undefined || !Number.isInteger(port) || port < 0 || port > 65535 || (portText !== undefined && !/^\d+$/.test(portText))) {
    throw new MeshplaneError('CLI_ERR_ADDRESS', `"${text}" is not an address: expected ADDR, ADDR:PORT or [IPV6]:PORT, e.g. 127.0.0.1:53, [::1]:53 or [fe80::1%eth0]:53`);
  }
  return { address, port };
}

/**
 * An IP address in canonical text. A link-local IPv6 address keeps its zone
 * ("fe80::1%eth0"): without it the kernel cannot tell which link is meant.
 * A zone on any other address is refused (undefined), as is anything else.
 */
export function scopedAddress(text: string): string | undefined {
  const [bare, zone, ...rest] = text.split('%');
  const address = parseIp(bare!);
  if (address === undefined || rest.length > 0) return undefined;
  if (zone === undefined) return address.text;
  const linkLocal = address.family === 6 && address.value >> 118n === 0x3fan;
  return linkLocal && /^[A-Za-z0-9_.-]{1,15}$/.test(zone) ? `${address.text}%${zone}` : undefined;
}

