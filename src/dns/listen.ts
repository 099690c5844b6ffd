/**
 * Listen and upstream addresses: expanding wildcards to concrete addresses, and reading the host's
 * resolvers from resolv.conf.
 *
 * Why wildcards are expanded: a UDP socket bound to 0.0.0.0 answers from
 * whatever address the kernel picks, and glibc drops replies that come from
 * another address than it asked (it connects its socket). Node has no
 * IP_PKTINFO, so we bind one socket per local address instead, as NSD does
 * with `ip-address:` lines.
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { parseIp } from '../lib/ip.js';
import { DNS_PORT, scopedAddress } from '../lib/socket-address.js';
import type { SocketAddress } from '../lib/socket-address.js';

export { parseSocketAddress } from '../lib/socket-address.js';
export type { SocketAddress } from '../lib/socket-address.js';

/** 0.0.0.0 and :: become every local address of that family; the rest stay as they are. */
export function expandWildcards(addresses: readonly SocketAddress[]): SocketAddress[] {
  const out: SocketAddress[] = [];
  const push = (candidate: SocketAddress): void => {
    if (!out.some((o) => o.address === candidate.address && o.port === candidate.port)) out.push(candidate);
  };
  for (const entry of addresses) {
    if (entry.address !== '0.0.0.0' && entry.address !== '::') {
      push(entry);
      continue;
    }
    const family = entry.address === '::' ? 'IPv6' : 'IPv4';
    for (const infos of Object.values(networkInterfaces())) {
      for (const info of infos ?? []) {
        // Link-local IPv6 needs a scope on every reply; leave it out.
        if (info.family === family && !info.address.startsWith('fe80:')) push({ address: parseIp(info.address)?.text ?? info.address, port: entry.port });
      }
    }
  }
  return out;
}

/** The `nameserver` lines of a resolv.conf, minus the addresses we serve on ourselves. */
export function resolversFromResolvConf(path: string, ours: readonly SocketAddress[]): SocketAddress[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const upstreams: SocketAddress[] = [];
  for (const line of text.split('\n')) {
    const match = /^\s*nameserver\s+(\S+)/.exec(line);
    if (match === null) continue;
    // A link-local resolver keeps its zone (fe80::1%eth0): glibc reads it so, and so must we.
    const address = scopedAddress(match[1]!);
    if (address === undefined) continue;
    // Forwarding to ourselves would loop.
    if (ours.some((o) => o.port === DNS_PORT && (o.address === address || o.address === '0.0.0.0' || o.address === '::'))) continue;
    upstreams.push({ address, port: DNS_PORT });
  }
  return upstreams;
}
